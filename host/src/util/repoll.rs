//! Polling a group of futures that wake each other, without a round trip through the runtime.
//!
//! An HTTP/1.1 exchange driven inside the session's task (see `net::http`) is two futures: the
//! request's and hyper's connection state machine. Each wakes the other through hyper's
//! channels (the response head, each body frame, the end of the body). With the task's own
//! waker every such wake reschedules the whole session task, and each extra poll resumes the
//! guest's fiber just to poll again. A [`Repoll`] waker notes a wake that comes while the
//! group is being polled, so the group is polled again on the spot; a wake that comes later
//! (the socket became readable) goes to the task as usual.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Wakes noted while the group is polled; later wakes forwarded to the task.
#[derive(Default)]
struct Flag {
    /// The group is being polled right now.
    polling: AtomicBool,
    /// A wake came since the group's last poll began.
    woken: AtomicBool,
    /// The waker of the task that polls the group.
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            self.task.wake();
        }
    }
}

/// Steps one poll may take: an HTTP exchange takes two or three (send, head, body end).
const MAX_STEPS: usize = 8;

/// A waker for one group of futures that a task polls together (one per connection).
pub struct Repoll {
    flag: Arc<Flag>,
    waker: Waker,
}

impl Default for Repoll {
    fn default() -> Self {
        let flag = Arc::new(Flag::default());
        Repoll {
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

impl Repoll {
    /// Polls the group with `step` until it is ready or went a whole step without a wake from
    /// inside: then it waits for a wake from outside, which reaches `cx`'s task. At most
    /// [`MAX_STEPS`] steps: tokio's cooperative budget makes an exhausted resource wake its
    /// waker and return pending until the task is polled anew, so past a few steps the wake
    /// goes to the task, which yields to the runtime as the budget intends.
    pub fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        mut step: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.flag.task.register(cx.waker());
        let mut inner = Context::from_waker(&self.waker);
        for _ in 0..MAX_STEPS {
            self.flag.polling.store(true, Ordering::SeqCst);
            self.flag.woken.store(false, Ordering::SeqCst);
            let out = step(&mut inner);
            self.flag.polling.store(false, Ordering::SeqCst);
            if out.is_ready() {
                return out;
            }
            // A wake that came while polling (from the group itself, or from another thread
            // just before `polling` was cleared) means there is more to do now.
            if !self.flag.woken.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the wakes that reach the task.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_from_inside_are_polled_again_and_wakes_from_outside_reach_the_task() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let task = Waker::from(count.clone());
        let mut cx = Context::from_waker(&task);
        let repoll = Repoll::default();
        let mut steps = 0;
        let mut stored = None;
        // Each step wakes the group itself, three times, then waits for the outside.
        let r: Poll<()> = repoll.poll(&mut cx, |inner| {
            steps += 1;
            stored = Some(inner.waker().clone());
            if steps < 4 {
                inner.waker().wake_by_ref();
            }
            Poll::Pending
        });
        assert!(r.is_pending());
        assert_eq!(steps, 4, "polled again after each wake from inside");
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "none reached the task");
        if let Some(w) = stored {
            w.wake();
        }
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "a later wake reaches the task"
        );
    }

    #[test]
    fn a_group_that_always_wakes_itself_yields_to_the_task() {
        // Like a tokio resource whose task ran out of cooperative budget.
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let task = Waker::from(count.clone());
        let mut cx = Context::from_waker(&task);
        let mut steps = 0;
        let r: Poll<()> = Repoll::default().poll(&mut cx, |inner| {
            steps += 1;
            inner.waker().wake_by_ref();
            Poll::Pending
        });
        assert!(r.is_pending());
        assert_eq!(steps, MAX_STEPS);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the task is woken to poll again"
        );
    }
}
