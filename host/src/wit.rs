//! Host bindings generated from `wit/scenario.wit`: the one seam between host and guests.
//!
//! Every import is async (a session waiting on the network or a delay parks its fiber and holds
//! no OS thread) and trappable (a host invariant or quota breach can end the guest). The module
//! depends on nothing else in the crate: the WebSocket `connection` resource is the generated
//! placeholder type, and `wit_host::websocket` maps its handles onto the host's connections.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "scenario",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use chaperon::scenario::http;
pub use chaperon::scenario::session;
pub use chaperon::scenario::types;
pub use chaperon::scenario::types::RequestError;
pub use chaperon::scenario::websocket;

/// The WIT package and version this host implements; guests built against another version are
/// refused at load with this in the message.
pub const WIT_PACKAGE: &str = "chaperon:scenario";
/// See [`WIT_PACKAGE`].
pub const WIT_VERSION: &str = "0.1.0";
