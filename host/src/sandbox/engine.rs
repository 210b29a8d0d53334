//! The wasmtime engine: one per run, shared by every session.
//!
//! Decisions (see docs/design.md):
//! - Trimmed wasmtime features (no component-model-async): host calls stay ~3× cheaper.
//! - Pooling allocator sized from the components being run and the number of session slots,
//!   with every limit set explicitly: pool defaults (1000 of everything) are wrong both ways.
//! - Epoch interruption with a [`EPOCH_TICK`] ticker thread: a spinning guest yields to other
//!   sessions every tick and is ended when it exhausts its CPU budget.
//! - Compiled artifacts are cached on disk by wasmtime's cache, keyed by a hash of the component
//!   bytes and the engine's compilation settings, so a 6 s Python compile is paid once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; also the granularity of CPU budgets and guest yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Largest wasm stack a guest may use. Deep enough for interpreters (Python, JavaScript).
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// Host-side fiber stack per session; must exceed [`MAX_WASM_STACK`] plus host frames.
/// Untouched pages cost no memory, so this is address space, not RSS.
pub const ASYNC_STACK: usize = 1024 * 1024;

/// Bytes of a freed memory slot reset in place rather than decommitted (see `pooling`).
const KEEP_RESIDENT: usize = 1 << 20;

/// Address space reserved per linear memory beyond the memory cap, so small growths do not move.
const MEMORY_GUARD: u64 = 64 * 1024;

/// How many core instances, memories and tables one instance of a component needs; the pool is
/// sized from the largest of the components in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComponentShape {
    pub core_instances: u32,
    pub memories: u32,
    pub tables: u32,
}

impl ComponentShape {
    /// The element-wise maximum, for sizing one pool for several components.
    pub fn max(self, other: ComponentShape) -> ComponentShape {
        ComponentShape {
            core_instances: self.core_instances.max(other.core_instances),
            memories: self.memories.max(other.memories),
            tables: self.tables.max(other.tables),
        }
    }
}

impl Default for ComponentShape {
    fn default() -> Self {
        ComponentShape {
            core_instances: 1,
            memories: 1,
            tables: 1,
        }
    }
}

/// What the engine must hold.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Instances alive at once (sessions plus async children).
    pub slots: u32,
    /// Per-memory cap in bytes.
    pub memory_bytes: u64,
    /// The largest component shape.
    pub shape: ComponentShape,
    /// Where compiled artifacts are cached; `None` disables the cache.
    pub cache_dir: Option<std::path::PathBuf>,
}

/// Elements of each pooled table.
const TABLE_ELEMENTS: usize = 100_000;

/// Address space one instance slot reserves: its memories with their guards, its tables, its
/// async stack.
pub fn slot_bytes(memory_bytes: u64, shape: &ComponentShape) -> u64 {
    let memories = u64::from(shape.memories.max(1));
    let tables = u64::from(shape.tables.max(1)) * (TABLE_ELEMENTS as u64) * 8;
    memories.saturating_mul(memory_bytes.saturating_add(MEMORY_GUARD))
        + tables
        + u64::try_from(ASYNC_STACK).unwrap_or(u64::MAX)
}

/// Errors building the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot configure the wasm engine: {0}")]
    Config(String),
    #[error("cannot use the compile cache at {dir}: {reason} (pass --no-cache to run without it)")]
    Cache { dir: String, reason: String },
}

/// Builds the engine for a run.
pub fn build_engine(settings: &EngineSettings) -> Result<Engine, EngineError> {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK)
        .async_stack_zeroing(false)
        .memory_reservation(settings.memory_bytes)
        .memory_guard_size(MEMORY_GUARD)
        .memory_reservation_for_growth(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(settings)));
    if let Some(dir) = &settings.cache_dir {
        config.cache(Some(cache(dir)?));
    }
    Engine::new(&config).map_err(|e| EngineError::Config(format!("{e:#}")))
}

fn pooling(s: &EngineSettings) -> PoolingAllocationConfig {
    let slots = s.slots.max(1);
    let mut p = PoolingAllocationConfig::default();
    p.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(s.shape.core_instances))
        .total_memories(slots.saturating_mul(s.shape.memories))
        .total_tables(slots.saturating_mul(s.shape.tables))
        .total_stacks(slots)
        .max_core_instances_per_component(s.shape.core_instances)
        .max_memories_per_component(s.shape.memories)
        .max_tables_per_component(s.shape.tables)
        .max_memories_per_module(1)
        .max_tables_per_module(s.shape.tables.max(1))
        .max_memory_size(usize::try_from(s.memory_bytes).unwrap_or(usize::MAX))
        .table_elements(TABLE_ELEMENTS)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20)
        .max_unused_warm_slots(slots.min(1000))
        // Reset a freed slot by scanning for the pages it dirtied and zeroing just those
        // (PAGEMAP_SCAN, Linux >= 6.7) instead of madvise: madvise in a multi-threaded process
        // costs a TLB shootdown on every core, which dominated session start cost.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT / 16);
    p
}

fn cache(dir: &std::path::Path) -> Result<wasmtime::Cache, EngineError> {
    let err = |reason: String| EngineError::Cache {
        dir: dir.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let mut config = wasmtime::CacheConfig::new();
    config.with_directory(dir);
    wasmtime::Cache::new(config).map_err(|e| err(format!("{e:#}")))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on its own thread (a tokio task could starve
/// behind spinning guests, which is exactly when the tick matters). Stops when dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    epoch: Arc<AtomicU64>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub fn start(engine: &Engine) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(AtomicU64::new(0));
        let (engine, stop2, epoch2) = (engine.clone(), stop.clone(), epoch.clone());
        let thread = std::thread::Builder::new()
            .name("chaperon-epoch".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                    epoch2.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
            epoch,
        })
    }

    /// A mirror of the engine's epoch that sessions read to charge CPU time.
    pub fn epoch(&self) -> Arc<AtomicU64> {
        self.epoch.clone()
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
