//! Host memory a guest makes the host hold, in bytes, charged to its session and its tenant.
//!
//! Linear memory is capped by wasmtime's limiter; this ledger caps what lives outside it:
//! assigns and config, queued signals, buffered response bodies and WebSocket messages. A
//! [`Charge`] is held as long as the bytes are, and gives them back when dropped, so nothing
//! can forget to release.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One cap and what is charged against it.
#[derive(Debug)]
pub struct Account {
    used: AtomicU64,
    cap: u64,
    /// How the cap is named in errors, with the setting that raises it.
    label: Arc<str>,
}

impl Account {
    /// An account of `cap` bytes named `label` (e.g. "the session's 64 MiB host-memory cap
    /// ([limits] host_memory_mb)").
    pub fn new(cap: u64, label: Arc<str>) -> Arc<Account> {
        Arc::new(Account {
            used: AtomicU64::new(0),
            cap,
            label,
        })
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: u64) -> bool {
        let mut now = self.used.load(Ordering::Relaxed);
        loop {
            let next = now.saturating_add(bytes);
            if next > self.cap {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(now, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => now = seen,
            }
        }
    }

    fn give(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Bytes that did not fit, naming what asked and which cap refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} needs {bytes} more bytes of host memory, past {label}")]
pub struct Overflow {
    pub what: String,
    pub bytes: u64,
    pub label: String,
}

/// A session's view of the ledger: its own account and its tenant's.
#[derive(Clone, Debug)]
pub struct HostMemory {
    session: Arc<Account>,
    tenant: Arc<Account>,
}

impl HostMemory {
    pub fn new(session: Arc<Account>, tenant: Arc<Account>) -> HostMemory {
        HostMemory { session, tenant }
    }

    /// A ledger with no caps (host-side work that no guest causes, and unit tests).
    pub fn unlimited() -> HostMemory {
        let account = || Account::new(u64::MAX, "no cap".into());
        HostMemory::new(account(), account())
    }

    /// Bytes this session holds now.
    pub fn session_used(&self) -> u64 {
        self.session.used()
    }

    /// A charge of nothing yet, to [`Charge::resize`] later.
    pub fn empty(&self) -> Charge {
        Charge {
            memory: self.clone(),
            bytes: 0,
        }
    }

    /// Charges `bytes` for `what` to the session and the tenant, or neither.
    pub fn charge(&self, what: &str, bytes: u64) -> Result<Charge, Overflow> {
        let mut c = self.empty();
        c.grow(what, bytes)?;
        Ok(c)
    }

    fn take(&self, what: &str, bytes: u64) -> Result<(), Overflow> {
        let refused = |a: &Account| Overflow {
            what: what.to_owned(),
            bytes,
            label: a.label.to_string(),
        };
        if !self.session.take(bytes) {
            return Err(refused(&self.session));
        }
        if !self.tenant.take(bytes) {
            self.session.give(bytes);
            return Err(refused(&self.tenant));
        }
        Ok(())
    }

    fn give(&self, bytes: u64) {
        self.session.give(bytes);
        self.tenant.give(bytes);
    }
}

/// Bytes held for as long as this value lives.
#[derive(Debug)]
pub struct Charge {
    memory: HostMemory,
    bytes: u64,
}

impl Charge {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Holds `more` bytes besides those already held.
    pub fn grow(&mut self, what: &str, more: u64) -> Result<(), Overflow> {
        self.memory.take(what, more)?;
        self.bytes += more;
        Ok(())
    }

    /// Holds exactly `bytes` from now on (growing may fail; shrinking always succeeds).
    pub fn resize(&mut self, what: &str, bytes: u64) -> Result<(), Overflow> {
        if bytes > self.bytes {
            self.grow(what, bytes - self.bytes)
        } else {
            self.memory.give(self.bytes - bytes);
            self.bytes = bytes;
            Ok(())
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.memory.give(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_fit_both_caps_and_are_given_back_on_drop() {
        let tenant = Account::new(100, "the tenant's cap".into());
        let a = HostMemory::new(Account::new(60, "a's cap".into()), tenant.clone());
        let b = HostMemory::new(Account::new(60, "b's cap".into()), tenant.clone());
        let held = a.charge("assigns", 50).unwrap();
        let e = a.charge("a signal", 20).unwrap_err();
        assert_eq!(e.label, "a's cap");
        assert!(e.to_string().starts_with("a signal needs 20 more bytes"));
        let b1 = b.charge("assigns", 40).unwrap();
        let e = b.charge("a body", 20).unwrap_err();
        assert_eq!(e.label, "the tenant's cap");
        assert_eq!(b.session_used(), 40, "a refused charge takes nothing");
        drop(held);
        assert_eq!(tenant.used(), 40);
        let mut c = b.empty();
        c.resize("assigns", 20).unwrap();
        c.resize("assigns", 5).unwrap();
        assert_eq!(tenant.used(), 45);
        drop((b1, c));
        assert_eq!(tenant.used(), 0);
    }
}
