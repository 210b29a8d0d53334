//! Guest stdout and stderr: a bounded per-session buffer (never a trap), so a panic message can
//! be shown in the session's end reason.

use crate::plan::limits::MAX_GUEST_OUTPUT;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Guest stdout and stderr: the last [`MAX_GUEST_OUTPUT`] bytes are kept, older ones dropped
/// (never a trap), so a panic message can be shown in the session's end reason.
#[derive(Clone, Default)]
pub struct GuestOutput(Arc<Mutex<Vec<u8>>>);

impl GuestOutput {
    /// The last meaningful line written (a panic's message, not the backtrace hint that
    /// follows it), escaped for the terminal.
    pub fn last_line(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&buf);
        let line = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("note: "))
            .unwrap_or("");
        crate::util::escape(line)
    }
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let keep = buf.len().min(MAX_GUEST_OUTPUT);
        out.extend_from_slice(buf.get(buf.len() - keep..).unwrap_or_default());
        let excess = out.len().saturating_sub(MAX_GUEST_OUTPUT);
        out.drain(..excess);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
