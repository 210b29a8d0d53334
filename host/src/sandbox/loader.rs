//! Loading scenario components: read, check, compile, link.
//!
//! Every way a file can be wrong gets one line that names the problem and the fix; nothing here
//! panics on hostile bytes. The checks run in order of cost: file → magic → layer (core module or
//! component) → structure (wasmparser) → world (imports and exports) → compile (wasmtime).

use super::engine::ComponentShape;
use crate::util::first_line;
use crate::wit::{WIT_PACKAGE, WIT_VERSION};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use wasmparser::{KnownCustom, Parser, Payload};

/// Components larger than this are refused before parsing (a Python component is ~18 MB).
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// The exports every scenario must have.
pub const REQUIRED_EXPORTS: [&str; 4] = ["init", "run", "teardown", "invoke"];

/// The interfaces of our package a scenario may import.
const OUR_INTERFACES: [&str; 4] = ["types", "session", "http", "websocket"];

/// WASI 0.2 interfaces linked (empty: they grant nothing) so Python and JavaScript guests link.
const WASI_INTERFACES: [&str; 27] = [
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// Why a component cannot be used. Each message is one line naming the fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "cannot read {path}: {reason}; check the path (example scenarios are built by scripts/build-guests)"
    )]
    Read { path: String, reason: String },
    #[error("{path} is {size} bytes, more than the {max}-byte limit for a scenario component")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error(
        "{path} is not a WebAssembly file (it does not start with \\0asm); pass a .wasm component built with `cargo build --target wasm32-wasip2`"
    )]
    NotWasm { path: String },
    #[error(
        "{path} is a core module, not a component; build with --target wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule { path: String },
    #[error("{path} is not a valid component (truncated or corrupt: {reason}); rebuild it")]
    Invalid { path: String, reason: String },
    #[error(
        "{path} is a component of another world: it {what}; build it against wit/ (world {WIT_PACKAGE}/scenario@{WIT_VERSION})"
    )]
    OtherWorld { path: String, what: String },
    #[error(
        "{path} imports {found}, but this host implements {WIT_PACKAGE}@{WIT_VERSION}; rebuild it against this host's wit/ or use a matching host version"
    )]
    Version { path: String, found: String },
    #[error(
        "{path} imports what this host does not provide: {imports}; scenarios may import only {WIT_PACKAGE}@{WIT_VERSION} and WASI 0.2"
    )]
    UnknownImports { path: String, imports: String },
    #[error(
        "{path} has too many {what}: {n}, more than the {max} a scenario instance may have; build it from fewer modules"
    )]
    TooComplex {
        path: String,
        what: &'static str,
        n: u32,
        max: u32,
    },
    #[error("cannot compile {path}: {reason}")]
    Compile { path: String, reason: String },
    #[error(
        "cannot compile {path}: compile timeout after {after} (a compile bomb, or a very \
         large component: raise [limits] compile_timeout if you trust it)"
    )]
    CompileTimeout { path: String, after: String },
    #[error("cannot link {path}: {reason}")]
    Link { path: String, reason: String },
}

/// What a cheap pass over the bytes tells, before any compilation.
#[derive(Clone, Debug)]
pub struct Preflight {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub shape: ComponentShape,
    /// `name version` of each tool in the producers sections (language, SDK, processed-by).
    pub producers: Vec<String>,
}

/// Reads `path` and checks everything that can be checked without compiling it.
pub fn preflight(path: &Path) -> Result<Preflight, LoadError> {
    let shown = path.display().to_string();
    let bytes = read_capped(path)?;
    if !bytes.starts_with(b"\0asm") {
        return Err(LoadError::NotWasm { path: shown });
    }
    if Parser::is_core_wasm(&bytes) {
        return Err(LoadError::CoreModule { path: shown });
    }
    let scan = scan(&bytes).map_err(|reason| LoadError::Invalid {
        path: shown.clone(),
        reason,
    })?;
    check_shape(&shown, &scan.shape)?;
    check_world(&shown, &scan.imports, &scan.exports)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Preflight {
        path: path.to_path_buf(),
        bytes,
        sha256,
        imports: scan.imports,
        exports: scan.exports,
        shape: scan.shape,
        producers: scan.producers.into_iter().collect(),
    })
}

fn read_capped(path: &Path) -> Result<Vec<u8>, LoadError> {
    let shown = path.display().to_string();
    let read_err = |e: std::io::Error| LoadError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.is_dir() {
        return Err(LoadError::Read {
            path: shown,
            reason: "it is a directory".into(),
        });
    }
    if meta.len() > MAX_COMPONENT_BYTES {
        return Err(LoadError::TooLarge {
            path: shown,
            size: meta.len(),
            max: MAX_COMPONENT_BYTES,
        });
    }
    std::fs::read(path).map_err(read_err)
}

/// Most core instances, memories and tables one scenario instance may have. The pool reserves
/// this much for every slot, so a component declaring 100 memories would reserve 100 memory
/// caps per session; real guests (Rust, Python, JavaScript) stay far below.
pub const MAX_SHAPE: ComponentShape = ComponentShape {
    core_instances: 256,
    memories: 16,
    tables: 64,
};

fn check_shape(path: &str, shape: &ComponentShape) -> Result<(), LoadError> {
    let over = [
        (
            "core instances",
            shape.core_instances,
            MAX_SHAPE.core_instances,
        ),
        ("memories", shape.memories, MAX_SHAPE.memories),
        ("tables", shape.tables, MAX_SHAPE.tables),
    ];
    match over.into_iter().find(|(_, n, max)| n > max) {
        Some((what, n, max)) => Err(LoadError::TooComplex {
            path: path.into(),
            what,
            n,
            max,
        }),
        None => Ok(()),
    }
}

#[derive(Default)]
struct Scan {
    imports: Vec<String>,
    exports: Vec<String>,
    shape: ComponentShape,
    producers: BTreeSet<String>,
}

/// One pass over all payloads (nested modules included): top-level imports and exports, the
/// pool shape, and producers.
fn scan(bytes: &[u8]) -> Result<Scan, String> {
    let mut s = Scan::default();
    let (mut instances, mut memories, mut tables) = (0u32, 0u32, 0u32);
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::InstanceSection(r) => instances += r.count(),
            Payload::MemorySection(r) => memories += r.count(),
            Payload::TableSection(r) => tables += r.count(),
            Payload::ComponentImportSection(r) if depth == 0 => {
                for import in r {
                    let import = import.map_err(|e| e.to_string())?;
                    // Type imports (`use types.{json}` in a world) need no implementation.
                    if !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                        s.imports.push(import.name.0.to_owned());
                    }
                }
            }
            Payload::ComponentExportSection(r) if depth == 0 => {
                for export in r {
                    s.exports
                        .push(export.map_err(|e| e.to_string())?.name.0.to_owned());
                }
            }
            Payload::CustomSection(r) => {
                if let KnownCustom::Producers(p) = r.as_known() {
                    collect_producers(p, &mut s.producers);
                }
            }
            _ => {}
        }
    }
    s.shape = ComponentShape {
        core_instances: instances.max(1),
        memories: memories.max(1),
        tables: tables.max(1),
    };
    Ok(s)
}

fn collect_producers(reader: wasmparser::ProducersSectionReader<'_>, out: &mut BTreeSet<String>) {
    for field in reader.into_iter().flatten() {
        for value in field.values.into_iter().flatten() {
            out.insert(format!("{}: {} {}", field.name, value.name, value.version));
        }
    }
}

/// Checks the component against our world by name: exports, our package version, and that
/// every import is one the host links.
fn check_world(path: &str, imports: &[String], exports: &[String]) -> Result<(), LoadError> {
    let missing: Vec<&str> = REQUIRED_EXPORTS
        .iter()
        .copied()
        .filter(|e| !exports.iter().any(|x| x == e))
        .collect();
    if !missing.is_empty() {
        let what = format!("does not export {}", missing.join(", "));
        return Err(LoadError::OtherWorld {
            path: path.into(),
            what,
        });
    }
    if let Some(found) = imports.iter().find(|i| is_our_package_other_version(i)) {
        return Err(LoadError::Version {
            path: path.into(),
            found: found.clone(),
        });
    }
    let unknown: Vec<&str> = imports
        .iter()
        .map(String::as_str)
        .filter(|i| !is_known_import(i))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(LoadError::UnknownImports {
            path: path.into(),
            imports: unknown.join(", "),
        })
    }
}

fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (name, None),
    }
}

fn is_our_package_other_version(import: &str) -> bool {
    let (name, version) = split_version(import);
    name.starts_with(&format!("{WIT_PACKAGE}/")) && version != Some(WIT_VERSION)
}

fn is_known_import(import: &str) -> bool {
    let (name, version) = split_version(import);
    if let Some(iface) = name.strip_prefix(&format!("{WIT_PACKAGE}/")) {
        return version == Some(WIT_VERSION) && OUR_INTERFACES.contains(&iface);
    }
    WASI_INTERFACES.contains(&name) && version.is_some_and(|v| v.starts_with("0.2."))
}

/// The toolchain that built a component: from its producers section when that names one,
/// else from the name an interpreter-based toolchain embeds in its runtime.
pub fn toolchain(p: &Preflight) -> Option<&'static str> {
    let produced = |tool: &str| p.producers.iter().any(|x| x.contains(tool));
    let embeds = |name: &[u8]| p.bytes.windows(name.len()).any(|w| w == name);
    if produced("ComponentizeJS") {
        Some("JavaScript (componentize-js, StarlingMonkey)")
    } else if produced("component-init-transform") && embeds(b"componentize-py") {
        Some("Python (componentize-py)")
    } else if embeds(b"componentize-qjs") {
        Some("JavaScript (componentize-qjs, QuickJS)")
    } else if produced("wit-bindgen-rust") {
        Some("Rust (wit-bindgen)")
    } else {
        None
    }
}

/// Compiles a checked component on a blocking thread (compilation is CPU-bound and may take
/// seconds for interpreter-based guests); the on-disk cache makes later runs load in ~1 ms.
/// Past `timeout` the compile is abandoned (it keeps its blocking thread until it ends; the
/// process does not wait for it at exit).
pub async fn compile(
    engine: &wasmtime::Engine,
    pre: &Preflight,
    timeout: std::time::Duration,
) -> Result<wasmtime::component::Component, LoadError> {
    let (engine, bytes) = (engine.clone(), pre.bytes.clone());
    let path = pre.path.display().to_string();
    let compiling = tokio::task::spawn_blocking(move || {
        wasmtime::component::Component::from_binary(&engine, &bytes)
    });
    let Ok(compiled) = tokio::time::timeout(timeout, compiling).await else {
        return Err(LoadError::CompileTimeout {
            path,
            after: humantime::format_duration(timeout).to_string(),
        });
    };
    match compiled {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(LoadError::Compile {
            path,
            reason: first_line(&format!("{e:#}")),
        }),
        Err(e) => Err(LoadError::Compile {
            path,
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_imports() {
        assert!(is_known_import("chaperon:scenario/session@0.1.0"));
        assert!(is_known_import("wasi:io/poll@0.2.6"));
        assert!(!is_known_import("wasi:http/types@0.2.6"));
        assert!(!is_known_import("wasi:io/poll@0.3.0"));
        assert!(is_our_package_other_version(
            "chaperon:scenario/session@0.2.0"
        ));
    }

    #[test]
    fn world_check_names_missing_exports() {
        let err = check_world("x.wasm", &[], &["run".into()]).unwrap_err();
        assert!(
            err.to_string()
                .contains("does not export init, teardown, invoke")
        );
    }
}
