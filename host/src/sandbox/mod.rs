//! The sandbox: everything that knows wasmtime and nothing of HTTP. The engine and its pooling
//! allocator ([`engine`]), component loading and preflight ([`loader`]), and the per-store
//! sandbox context: empty WASI, the CPU meter, the memory limiter, the captured guest output,
//! and trap classification.

pub mod cpu;
pub mod engine;
pub mod loader;
pub mod memory;
pub mod output;
pub mod trap;

use cpu::CpuMeter;
use memory::MemoryLimiter;
use output::GuestOutput;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtx;

/// Bytes one `wasi:random` call may ask for (wasmtime's default is 64 MiB, allocated by the
/// host before the guest's own memory cap applies).
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// WASI handles (streams, pollables) a guest may hold at once; past it the call traps with
/// `resource-limit` instead of growing the host's table (wasmtime allows 1,000,000).
pub const MAX_HANDLES: usize = 4096;

/// A resource table holding at most [`MAX_HANDLES`] handles.
pub fn capped_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_HANDLES);
    table
}

/// What the sandbox keeps per store.
pub struct SandboxCtx {
    /// WASI with nothing granted: no files, environment, arguments, sockets or name lookup.
    pub wasi: WasiCtx,
    /// The WASI resource table.
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub cpu: CpuMeter,
    pub output: GuestOutput,
}

impl SandboxCtx {
    /// A fresh sandbox with `memory_mb` of linear memory and `cpu_budget_ms` of CPU per
    /// entry-point call, charged against `epoch` (and to `tree`, the root's, for a child),
    /// spinning within its tenant's `share` of the worker threads.
    pub fn new(
        memory_mb: u32,
        cpu_budget_ms: u32,
        epoch: Arc<AtomicU64>,
        tree: Option<cpu::CpuTree>,
        share: Option<cpu::CpuShare>,
    ) -> SandboxCtx {
        let output = GuestOutput::default();
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_ip_name_lookup(false)
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let table = capped_table();
        let memory = usize::try_from(u64::from(memory_mb) << 20).unwrap_or(usize::MAX);
        let tick = u64::try_from(engine::EPOCH_TICK.as_millis())
            .unwrap_or(10)
            .max(1);
        let budget = (u64::from(cpu_budget_ms) / tick).max(1);
        SandboxCtx {
            wasi,
            table,
            limiter: MemoryLimiter::new(memory),
            cpu: CpuMeter::new(epoch, budget, tree, share),
            output,
        }
    }
}
