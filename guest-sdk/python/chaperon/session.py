"""``Session``: the virtual user's handle on the host, with identity, config, assigns, timing,
metrics, logging and control flow. HTTP and WebSocket actions live in ``http.py`` and
``websocket.py``."""

from __future__ import annotations

import json as _json
import time as _time
from typing import Any, Callable, Optional, TypeVar

from . import _host
from .errors import Aborted, JsonError, flow_error, state_error, variant_case
from .http import HttpActions
from .websocket import WebSocketActions

T = TypeVar("T")
_MISSING = object()


def split_path(path: Any) -> list[str]:
    """``"ping_pong.iterations"`` → ``["ping_pong", "iterations"]``; ``""`` → ``[]``.
    A list or tuple of keys is taken as it is."""
    if isinstance(path, (list, tuple)):
        return [str(p) for p in path]
    return [] if path == "" else str(path).split(".")


def to_json(value: Any) -> str:
    try:
        return _json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise JsonError(str(e)) from None


def from_json(what: str, text: str) -> Any:
    try:
        return _json.loads(text)
    except ValueError as e:
        raise JsonError(f"{what}: {e}") from None


class Session(HttpActions, WebSocketActions):
    """One virtual user: everything a scenario does goes through its ``Session``.

    The SDK creates it and passes it to every scenario method. The host keeps the real state
    (config, assigns, metrics, cookies); the ``Session`` only holds the open WebSocket
    connections, so they live from ``init`` through ``run`` to ``teardown``.

    Names follow Elixir Chaperon and the Rust SDK: ``session |> get("/") |> ws_send("x")``
    becomes ``s.get("/"); s.ws_send("x")``.
    """

    def __init__(self) -> None:
        self._connections: dict = {}
        self._aborted: Optional[str] = None

    # ------------------------------------------------------------ identity

    def info(self) -> Any:
        """Who this session is: ``id``, ``parent_id``, ``scenario``, ``vu``, ``iteration``."""
        return _host.session.info()

    def id(self) -> str:
        """Unique id of this session."""
        return _host.session.info().id

    def parent_id(self) -> Optional[str]:
        """Id of the parent session, for async children and spreads."""
        return _host.session.info().parent_id

    def vu(self) -> int:
        """Virtual-user number, 0-based and dense within the scenario."""
        return _host.session.info().vu

    def iteration(self) -> int:
        """Iteration number of this virtual user, 0-based."""
        return _host.session.info().iteration

    def scenario_name(self) -> str:
        """Name of the scenario (the ``[[scenario]] name`` of the load-test file)."""
        return _host.session.info().scenario

    # ------------------------------------------------------------ config and assigns

    def config(self, path: Any) -> Any:
        """The config value at a dotted ``path`` (e.g. ``"ping_pong.iterations"``).
        A missing value raises :class:`StateError`; use ``config_or`` for optional settings."""
        what = f"config {path}"
        try:
            text = _host.session.config(split_path(path))
        except _host.Err as e:
            raise state_error(what, e.value) from None
        return from_json(what, text)

    def config_or(self, path: Any, default: Any) -> Any:
        """The config value at ``path``, or ``default`` when there is none (a lookup error also
        gives ``default``, with a warning in the log)."""
        try:
            text = _host.session.config(split_path(path))
        except _host.Err as e:
            kind, _ = variant_case(e.value)
            if kind != "missing":
                self.log_warn(f"{state_error(f'config {path}', e.value)}; using the default")
            return default
        try:
            return from_json(f"config {path}", text)
        except JsonError as e:
            self.log_warn(f"{e}; using the default")
            return default

    def set_config(self, path: Any, value: Any) -> None:
        """Sets the config value at ``path`` for this session only."""
        try:
            _host.session.set_config(split_path(path), to_json(value))
        except _host.Err as e:
            raise state_error(f"set_config {path}", e.value) from None

    def assign(self, path: Any, value: Any) -> None:
        """Assigns ``value`` at a dotted ``path``, creating intermediate objects (namespaces)."""
        try:
            _host.session.assign(split_path(path), to_json(value))
        except _host.Err as e:
            raise state_error(f"assign {path}", e.value) from None

    def assigned(self, path: Any = "", default: Any = _MISSING) -> Any:
        """The assigned value at ``path``; ``""`` gives all assigns as one object. A missing
        value raises :class:`StateError` unless a ``default`` is given."""
        what = f"assigned {path}"
        try:
            text = _host.session.assigned(split_path(path))
        except _host.Err as e:
            kind, _ = variant_case(e.value)
            if kind == "missing" and default is not _MISSING:
                return default
            raise state_error(what, e.value) from None
        return from_json(what, text)

    def update_assign(self, path: Any, f: Callable[[Any], Any]) -> None:
        """Replaces the value at ``path`` with ``f(old)``; ``old`` is ``None`` when nothing is
        assigned."""
        self.assign(path, f(self.assigned(path, None)))

    def delete_assign(self, path: Any) -> None:
        """Removes the value at ``path``; removing a missing value is not an error."""
        _host.session.delete_assign(split_path(path))

    def setup_data(self) -> Any:
        """The result of the load test's setup function, or ``None``."""
        text = _host.session.setup_data()
        return None if text is None else from_json("setup_data", text)

    def feed(self, dataset: str) -> Any:
        """The next record of a data set named in the load-test file."""
        what = f"feed {dataset}"
        try:
            text = _host.session.feed(dataset)
        except _host.Err as e:
            raise state_error(what, e.value) from None
        return from_json(what, text)

    # ------------------------------------------------------------ time and randomness

    def delay(self, ms: int) -> None:
        """Waits ``ms`` milliseconds (the host parks the session; no thread is held)."""
        _host.session.delay(int(ms))

    def random_delay(self, max_ms: int) -> None:
        """Waits a uniformly random time in ``0..=max_ms`` milliseconds."""
        self.delay(self.random(min(int(max_ms) + 1, 0xFFFFFFFF)))

    def random(self, bound: int) -> int:
        """A uniformly random number in ``[0, bound)`` (0 when ``bound`` is 0)."""
        return _host.session.random(int(bound))

    # ------------------------------------------------------------ control flow

    def call(self, f: Callable[..., T], *args: Any) -> T:
        """Runs ``f(s, *args)`` untraced; Chaperon's ``call``."""
        return f(self, *args)

    def call_traced(self, name: str, f: Callable[..., T], *args: Any) -> T:
        """Runs ``f(s, *args)`` and records its duration under ``call {name}`` (an exception
        counts as a failed call and propagates); Chaperon's ``call_traced``."""
        return self.time(f"call {name}", f, *args)

    def repeat(self, n: int, f: Callable[["Session"], Any]) -> None:
        """Runs ``f(s)`` ``n`` times, untraced; stops at the first exception."""
        for _ in range(int(n)):
            f(self)

    def repeat_traced(self, name: str, n: int, f: Callable[["Session"], Any]) -> None:
        """Runs ``f(s)`` ``n`` times, recording one ``call {name}`` sample per iteration; stops
        at the first exception."""
        metric = f"call {name}"
        for _ in range(int(n)):
            self.time(metric, f)

    def loop_for(self, name: str, duration_ms: int, f: Callable[["Session"], Any]) -> None:
        """Runs ``f(s)`` over and over for ``duration_ms``, one ``call {name}`` sample per
        iteration; Chaperon's ``loop``. The first iteration always runs; the loop stops once
        more than ``duration_ms`` has passed (the last iteration may overrun), or at the first
        exception."""
        metric = f"call {name}"
        start = _time.monotonic()
        while True:
            self.time(metric, f)
            if (_time.monotonic() - start) * 1000.0 > duration_ms:
                return

    def retry_on_error(self, retries: int, delay_ms: int, f: Callable[["Session"], T]) -> T:
        """Runs ``f(s)``, and on an exception runs it again up to ``retries`` more times,
        waiting ``delay_ms`` between attempts; raises the last exception if every attempt
        failed. :class:`Aborted` is raised at once, never retried. ``retries`` counts the
        retries *after* the first attempt: ``retry_on_error(2, ...)`` makes at most 3."""
        attempt = 0
        while True:
            try:
                return f(self)
            except Aborted:
                raise
            except Exception as e:
                if attempt >= retries:
                    raise
                attempt += 1
                self.log_warn(f"retry {attempt}/{retries} after error: {e}")
                self.delay(delay_ms)

    def time(self, metric: str, f: Callable[..., T], *args: Any) -> T:
        """Runs ``f(s, *args)`` and records its duration under ``metric`` (an exception counts
        as a failed sample and propagates); Chaperon's ``time``."""
        token = _host.session.trace_begin(metric)
        ok = False
        try:
            result = f(self, *args)
            ok = True
            return result
        finally:
            _host.session.trace_end(token, ok)

    def check(self, name: str, passed: Any) -> bool:
        """Counts the check ``name`` as passed or failed, and returns ``passed``."""
        passed = bool(passed)
        _host.session.check(name, passed)
        return passed

    def record(self, metric: str, value: int) -> None:
        """Records a custom sample ``value`` under ``metric`` (µs, or whatever unit the name
        implies)."""
        _host.session.record_metric(metric, max(0, min(int(value), 0xFFFFFFFF)))

    def abort(self, reason: str) -> Aborted:
        """Ends the scenario on purpose: returns an :class:`Aborted` to ``raise``. The session
        is reported as aborted with ``reason`` (not as failed), even if the exception is
        caught; ``teardown`` still runs."""
        self._aborted = str(reason)
        return Aborted(str(reason))

    # ------------------------------------------------------------ logging

    def log_debug(self, message: Any) -> None:
        """Logs at debug level; the host prefixes the session id and scenario name."""
        _host.session.log(_host.session.LogLevel.DEBUG, str(message))

    def log_info(self, message: Any) -> None:
        """Logs at info level."""
        _host.session.log(_host.session.LogLevel.INFO, str(message))

    def log_warn(self, message: Any) -> None:
        """Logs at warn level."""
        _host.session.log(_host.session.LogLevel.WARN, str(message))

    def log_error(self, message: Any) -> None:
        """Logs at error level."""
        _host.session.log(_host.session.LogLevel.ERROR, str(message))

    # ------------------------------------------------------------ async children and signals

    def spawn(self, function: str, args: Any = None, task: str = "") -> str:
        """Starts an async child session that runs ``invoke(function, args)`` on a fresh
        instance, registered under ``task`` (default: ``function``); Chaperon's ``async``."""
        try:
            return _host.session.spawn(function, to_json(args), task)
        except _host.Err as e:
            raise flow_error(f"spawn {function}", e.value) from None

    def cc_spread(self, function: str, count: int, interval_ms: int, task: str = "") -> None:
        """Starts ``count`` children running ``function`` (with ``None`` args), evenly spread
        over ``interval_ms``; Chaperon's ``cc_spread``. Wait for them with ``await_task``."""
        self.spread(function, None, count, interval_ms, task)

    def spread(self, function: str, args: Any, count: int, interval_ms: int, task: str = "") -> None:
        """Like ``cc_spread``, passing ``args`` to every child."""
        try:
            _host.session.spread(function, to_json(args), int(count), int(interval_ms), task)
        except _host.Err as e:
            raise flow_error(f"spread {function}", e.value) from None

    def await_task(self, task: str, timeout_ms: Optional[int] = None) -> list:
        """Waits for every child registered under ``task`` (None: until the session's deadline);
        returns their results in order, or raises the first child failure as :class:`FlowError`."""
        return _collect(f"await_task {task}", _host.session.await_task(task, _host.timeout_ms(timeout_ms)))

    def await_all(self, timeout_ms: Optional[int] = None) -> list:
        """Waits for every child of this session."""
        return _collect("await_all", _host.session.await_all(_host.timeout_ms(timeout_ms)))

    def signal(self, task: str, value: Any) -> None:
        """Sends ``value`` to every child registered under ``task``."""
        try:
            _host.session.signal(task, to_json(value))
        except _host.Err as e:
            raise flow_error(f"signal {task}", e.value) from None

    def signal_parent(self, value: Any) -> None:
        """Sends ``value`` to the parent session."""
        try:
            _host.session.signal_parent(to_json(value))
        except _host.Err as e:
            raise flow_error("signal_parent", e.value) from None

    def await_signal(self, expected: Any, timeout_ms: Optional[int] = None) -> Any:
        """Waits for a signal equal to ``expected`` (None: the load test's receive timeout); other
        signals stay queued."""
        try:
            text = _host.session.await_signal(to_json(expected), _host.timeout_ms(timeout_ms))
        except _host.Err as e:
            raise flow_error("await_signal", e.value) from None
        return from_json("signal", text)

    def await_any_signal(self, timeout_ms: Optional[int] = None) -> Any:
        """Waits for any signal and returns it."""
        try:
            text = _host.session.await_signal(None, _host.timeout_ms(timeout_ms))
        except _host.Err as e:
            raise flow_error("await_any_signal", e.value) from None
        return from_json("signal", text)

    def run_scenario(self, name: str, config: Any = None, merge: bool = True) -> Any:
        """Runs the scenario ``name`` of this load test as a nested session and waits for it;
        its assigns are merged back into this session and also returned."""
        try:
            text = _host.session.run_scenario(name, to_json({} if config is None else config), merge)
        except _host.Err as e:
            raise flow_error(f"run_scenario {name}", e.value) from None
        return from_json(f"run_scenario {name}", text)


def _collect(what: str, results: list) -> list:
    out = []
    for r in results:
        if not isinstance(r, _host.Ok):
            raise flow_error(what, r.value)
        out.append(from_json(what, r.value))
    return out
