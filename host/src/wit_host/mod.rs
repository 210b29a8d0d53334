//! The host side of the WIT imports: one file per interface, each implementing its `Host`
//! trait on its own context of the store's [`SessionState`] (`session` on `SessionCtx`, `http`
//! on `HttpCtx`, `websocket` on `WsCtx`), in the manner of wasmtime-wasi's per-interface hosts.
//!
//! Every function is async (a waiting session parks its fiber, holding no thread) and returns
//! the WIT result types: guest-visible failures are the inner `Result`, and the outer
//! `wasmtime::Result` (a trap) is reserved for host invariants and quotas that end the session,
//! such as an unknown resource handle or too many open traced calls.

mod http;
mod session;
mod websocket;

use crate::session::state::{HttpCtx, SessionCtx, SessionState, WsCtx};
use crate::wit::types;
use std::time::Duration;
use wasmtime::component::{HasData, Linker};
use wasmtime::{Engine, Result as Wt};

/// Why the linker could not be built (a host bug, reported as one line).
#[derive(Debug, thiserror::Error)]
#[error("cannot link the scenario world: {0}")]
pub struct LinkError(String);

/// The linker every scenario instance is made with: empty WASI (async) plus our world, each
/// interface bound to its context.
pub fn linker(engine: &Engine) -> Result<Linker<SessionState>, LinkError> {
    let mut linker = Linker::new(engine);
    let err = |e: wasmtime::Error| LinkError(format!("{e:#}"));
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
    types::add_to_linker::<SessionState, Types>(&mut linker, |_| TypesCtx).map_err(err)?;
    crate::wit::session::add_to_linker::<SessionState, Session>(&mut linker, |s| &mut s.session)
        .map_err(err)?;
    crate::wit::http::add_to_linker::<SessionState, Http>(&mut linker, |s| &mut s.http)
        .map_err(err)?;
    crate::wit::websocket::add_to_linker::<SessionState, Ws>(&mut linker, |s| &mut s.ws)
        .map_err(err)?;
    Ok(linker)
}

struct Types;
/// The `types` interface has no functions.
struct TypesCtx;
impl HasData for Types {
    type Data<'a> = TypesCtx;
}
impl types::Host for TypesCtx {}

struct Session;
impl HasData for Session {
    type Data<'a> = &'a mut SessionCtx;
}

struct Http;
impl HasData for Http {
    type Data<'a> = &'a mut HttpCtx;
}

struct Ws;
impl HasData for Ws {
    type Data<'a> = &'a mut WsCtx;
}

/// A WIT timeout: none = the default of the caller's choosing.
fn optional_ms(ms: Option<u32>) -> Option<Duration> {
    ms.map(|ms| Duration::from_millis(u64::from(ms)))
}
