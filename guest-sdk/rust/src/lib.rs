//! # chaperon-sdk: write chaperon load-test scenarios in Rust
//!
//! A scenario is a WebAssembly component: a `cdylib` crate with a type implementing
//! [`Scenario`], exported with [`export_scenario!`]. Each virtual user is one instance of the
//! component; the host calls [`Scenario::init`], [`Scenario::run`] and [`Scenario::teardown`]
//! on it, each with the virtual user's [`Session`].
//!
//! Scenario code reads like Elixir [Chaperon](https://github.com/polleverywhere/chaperon):
//! its `session |> action(...)` pipelines become `s.action(...)?` statements.
//!
//! ```no_run
//! use chaperon_sdk::prelude::*;
//!
//! struct PingPong;
//!
//! impl Scenario for PingPong {
//!     fn run(s: &mut Session) -> Result {
//!         let iterations: u32 = s.config("ping_pong.iterations")?;
//!         s.ws_connect("/ping/pong")?;
//!         s.repeat_traced("ping_pong", iterations, ping_pong)?;
//!         s.log_info(format!("PingPong finished after {iterations} iterations"));
//!         s.ws_close()
//!     }
//! }
//!
//! fn ping_pong(s: &mut Session) -> Result {
//!     s.ws_send("ping")?;
//!     s.ws_await_recv("pong")
//! }
//!
//! export_scenario!(PingPong);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the component is
//! `target/wasm32-wasip2/release/<crate>.wasm`. The crate needs
//! `[lib] crate-type = ["cdylib"]`.
//!
//! | Chaperon (Elixir)                               | chaperon-sdk (Rust)                               |
//! |-------------------------------------------------|---------------------------------------------------|
//! | `config(session, [:ping_pong, :iterations])`    | `s.config::<u32>("ping_pong.iterations")?`        |
//! | `config(session, key, default)`                 | `s.config_or("key", default)`                     |
//! | `assign(session, token: t)`, `session.assigned` | `s.assign("token", t)?`, `s.assigned("token")?`   |
//! | `get(session, "/", params: %{q: 1})`            | `s.send(Request::get("/").query("q", "1"))?`      |
//! | `post(session, "/x", json: %{a: 1})`            | `s.post_json("/x", &json!({ "a": 1 }))?`          |
//! | `ws_connect` / `ws_send` / `ws_await_recv`      | `s.ws_connect(..)?` / `s.ws_send(..)?` / `s.ws_await_recv(..)?` |
//! | `ws_send(session, msg, name: :chat)`            | `s.ws_send_to("chat", msg)?`                      |
//! | `call_traced(session, :login)`                  | `s.call_traced("login", login)?`                  |
//! | `repeat_traced(session, :ping_pong, 10)`        | `s.repeat_traced("ping_pong", 10, ping_pong)?`    |
//! | `loop(session, :browse, seconds(30))`           | `s.loop_for("browse", 30_000, browse)?`           |
//! | `retry_on_error(session, :f, [], retries: 3)`   | `s.retry_on_error(2, 1_000, f)?` (retries *after* the first try) |
//! | `delay(session, 100)`, `random_delay(s, 500)`   | `s.delay(100)`, `s.random_delay(500)`             |
//! | `async(session, :poll)`, `await(session, :poll)` | `s.spawn("poll", args)?`, `s.await_task("poll")?` |
//! | `cc_spread(session, :f, 100, seconds(10))`      | `s.cc_spread("f", 100, 10_000, "")?`              |
//! | `log_info(session, "msg")`                      | `s.log_info("msg")`                               |
//! | `abort(session, "why")`                         | `return Err(s.abort("why"))`                      |
//!
//! ## Errors
//!
//! Every fallible call returns [`Result`], whose error is [`Error`]. An `Err` returned from a
//! scenario function ends the session as *failed* with the error's text as the reason;
//! `Err(s.abort(..))` ends it as *aborted*. An HTTP response with an unexpected status is not
//! an error: check [`Response::ok`] or the `status`, and count it with [`Session::check`].
//!
//! ## Metrics
//!
//! HTTP requests and WebSocket actions are timed by the host. Traced control flow
//! ([`Session::call_traced`], [`Session::repeat_traced`], [`Session::loop_for`]) records
//! `call {name}`; [`Session::time`] and [`Session::record`] record custom metrics.

#![warn(missing_docs)]

mod error;
mod http;
mod session;
mod websocket;

#[cfg(test)]
mod tests;

/// Bindings generated from `wit/scenario.wit`. Use the re-exports at the crate root instead.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs)]
pub mod wit {
    wit_bindgen::generate!({
        world: "scenario",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "chaperon_sdk::wit",
        additional_derives: [PartialEq, Eq],
    });
}

pub use error::{Error, Result, describe_request_error};
pub use http::Request;
pub use session::Session;

#[doc(inline)]
pub use wit::chaperon::scenario::http::{Body, Method, Response, StatusRange, Timings};
#[doc(inline)]
pub use wit::chaperon::scenario::session::SessionInfo;
#[doc(inline)]
pub use wit::chaperon::scenario::types::RequestError;
#[doc(inline)]
pub use wit::chaperon::scenario::websocket::{ConnectOptions, Message};

pub use serde;
pub use serde_json;
pub use serde_json::{Value, json};

/// Everything a scenario usually needs: `use chaperon_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Body, Error, Message, Method, Request, Response, Result, Scenario, Session, Value,
        export_scenario, json,
    };
}

/// A load-test scenario: what one virtual user does.
///
/// Only [`run`](Scenario::run) is required. The functions take no `self`: per-user state
/// lives in the [`Session`] (assigns, config) or in the scenario's own statics, which are
/// never shared between virtual users (each has its own instance).
pub trait Scenario {
    /// Runs once before `run`; the default does nothing.
    fn init(s: &mut Session) -> Result {
        let _ = s;
        Ok(())
    }

    /// The scenario body.
    fn run(s: &mut Session) -> Result;

    /// Runs once after `run`, also after `run` failed; the default does nothing.
    fn teardown(s: &mut Session) -> Result {
        let _ = s;
        Ok(())
    }

    /// Runs the function `function` with JSON `args` for async children
    /// ([`Session::spawn`], [`Session::cc_spread`]) and load-test setup/teardown functions,
    /// on a fresh instance; returns its JSON result.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # struct Shop;
    /// # impl Scenario for Shop { fn run(s: &mut Session) -> Result { Ok(()) }
    /// fn invoke(s: &mut Session, function: &str, args: Value) -> Result<Value> {
    ///     match function {
    ///         "browse" => {
    ///             let res = s.get(args["path"].as_str().unwrap_or("/"))?;
    ///             Ok(json!({ "status": res.status }))
    ///         }
    ///         _ => Err(format!("unknown function {function}").into()),
    ///     }
    /// }
    /// # }
    /// ```
    fn invoke(s: &mut Session, function: &str, args: Value) -> Result<Value> {
        let _ = (s, args);
        Err(Error::Failed(format!("unknown function {function}")))
    }
}

/// Exports a [`Scenario`] implementation as the component's entry points.
///
/// Use it once per crate, at the top level:
///
/// ```no_run
/// use chaperon_sdk::prelude::*;
///
/// struct Smoke;
///
/// impl Scenario for Smoke {
///     fn run(s: &mut Session) -> Result {
///         s.get("/")?;
///         Ok(())
///     }
/// }
///
/// export_scenario!(Smoke);
/// ```
#[macro_export]
macro_rules! export_scenario {
    ($scenario:ty) => {
        #[allow(unsafe_code)]
        const _: () = {
            type __ChaperonScenarioExport = $crate::__Export<$scenario>;
    $crate::wit::export!(__ChaperonScenarioExport with_types_in $crate::wit);
        };
    };
}

/// Implements the generated `Guest` trait for a [`Scenario`]; used by [`export_scenario!`].
#[doc(hidden)]
pub struct __Export<T>(core::marker::PhantomData<T>);

type HostResult<T = ()> = core::result::Result<T, wit::ScenarioError>;

impl<T: Scenario> wit::Guest for __Export<T> {
    fn init() -> HostResult {
        session::with_session(|s| {
            let result = T::init(s);
            s.finish(result)
        })
    }

    fn run() -> HostResult {
        session::with_session(|s| {
            let result = T::run(s);
            s.finish(result)
        })
    }

    fn teardown() -> HostResult {
        session::with_session(|s| {
            let result = T::teardown(s);
            s.finish(result)
        })
    }

    fn invoke(function: String, args: wit::Json) -> HostResult<wit::Json> {
        session::with_session(|s| {
            let result = parse_args(&args)
                .and_then(|args| T::invoke(s, &function, args))
                .and_then(|value| Ok(serde_json::to_string(&value)?));
            s.finish(result)
        })
    }
}

/// The `args` of `invoke`; empty text counts as `null`.
fn parse_args(args: &str) -> Result<Value> {
    if args.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(args).map_err(|e| Error::Json(format!("invoke args: {e}")))
}
