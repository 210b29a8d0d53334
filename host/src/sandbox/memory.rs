//! The memory cap of one instance.

/// Caps linear memory and table growth; remembers a refusal so a resulting trap is reported as
/// `memory-limit` rather than as an anonymous `unreachable`.
pub struct MemoryLimiter {
    max_bytes: usize,
    pub hit: bool,
    /// Whether the refusal was a table's growth rather than linear memory's.
    pub table_hit: bool,
}

/// Table elements one table may grow to.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    /// A limiter allowing `max_bytes` of linear memory.
    pub fn new(max_bytes: usize) -> Self {
        MemoryLimiter {
            max_bytes,
            hit: false,
            table_hit: false,
        }
    }

    /// What the refusal was, for the session's end reason.
    pub fn refusal(&self) -> String {
        if self.table_hit {
            format!("a table would grow past {MAX_TABLE_ELEMENTS} elements")
        } else {
            format!(
                "linear memory would grow past the {} MiB cap ([limits] memory_mb)",
                self.max_bytes >> 20
            )
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.max_bytes;
        self.hit |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= MAX_TABLE_ELEMENTS;
        self.hit |= !ok;
        self.table_hit |= !ok;
        Ok(ok)
    }
}
