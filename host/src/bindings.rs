//! Host bindings generated from `wit/scenario.wit`: the one seam between host and guests.
//!
//! Every import is async (a session waiting on the network or a delay parks its fiber and holds
//! no OS thread) and trappable (a host invariant or quota breach can end the guest).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "scenario",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "chaperon:scenario/websocket.connection": crate::websocket::WsConnection,
    },
});

pub use chaperon::scenario::http;
pub use chaperon::scenario::session;
pub use chaperon::scenario::types::RequestError;
pub use chaperon::scenario::websocket;

/// The WIT package and version this host implements; guests built against another version are
/// refused at load with this in the message.
pub const WIT_PACKAGE: &str = "chaperon:scenario";
/// See [`WIT_PACKAGE`].
pub const WIT_VERSION: &str = "0.1.0";
