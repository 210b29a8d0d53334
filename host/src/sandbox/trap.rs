//! Trap classification: what a wasmtime error out of a guest call means for the session.

use super::SandboxCtx;
use crate::outcome::{SessionEnd, TrapKind};
use crate::util::first_line;
use crate::util::ledger::Overflow;

impl SandboxCtx {
    /// The session's end reason for a wasmtime error out of a guest call.
    pub fn classify(&self, e: &wasmtime::Error) -> SessionEnd {
        let detail = || self.output.last_line();
        let linear = || SessionEnd::MemoryLimit(self.limiter.refusal());
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) if self.cpu.exceeded => SessionEnd::CpuBudget,
            Some(wasmtime::Trap::Interrupt) => SessionEnd::Interrupted,
            Some(_) if self.limiter.hit => linear(),
            Some(t) => SessionEnd::Trap {
                kind: trap_kind(*t),
                detail: detail(),
            },
            None if self.limiter.hit => linear(),
            None => match e.downcast_ref::<Overflow>() {
                Some(o) => SessionEnd::MemoryLimit(o.to_string()),
                None => SessionEnd::ResourceLimit(first_line(&format!("{e:#}"))),
            },
        }
    }

    /// The end reason when instantiation itself failed.
    pub fn instantiate_error(&self, e: &wasmtime::Error) -> SessionEnd {
        let text = format!("{e:#}");
        if text.contains("maximum concurrent") || text.contains("pool") {
            return SessionEnd::LoadError(format!("instance pool full: {}", first_line(&text)));
        }
        match self.classify(e) {
            SessionEnd::ResourceLimit(m) => SessionEnd::LoadError(m),
            other => other,
        }
    }
}

fn trap_kind(t: wasmtime::Trap) -> TrapKind {
    match t {
        wasmtime::Trap::UnreachableCodeReached => TrapKind::Unreachable,
        wasmtime::Trap::StackOverflow => TrapKind::StackOverflow,
        wasmtime::Trap::MemoryOutOfBounds => TrapKind::MemoryOutOfBounds,
        other => TrapKind::Other(other.to_string()),
    }
}
