"""WebSocket actions of ``Session``: one default connection and any number of named ones."""

from __future__ import annotations

import json as _json
from typing import Any, Optional, Sequence

from . import _host
from .errors import Failed, JsonError, request_error, variant_case

#: Close code sent by ``ws_close``: normal closure.
NORMAL_CLOSURE = 1000


class Message:
    """A received message: ``kind`` is ``"text"``, ``"binary"`` or ``"close"``; ``value`` is the
    text, the bytes, or the ``(code, reason)`` of a close."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: Any) -> None:
        self.kind = kind
        self.value = value

    @classmethod
    def from_host(cls, raw: Any) -> "Message":
        kind, value = variant_case(raw)
        if kind == "close":
            value = tuple(value)
        return cls(kind, value)

    def as_text(self) -> Optional[str]:
        """The text of a text message, else ``None``."""
        return self.value if self.kind == "text" else None

    def json(self) -> Any:
        """The text of a text message parsed as JSON."""
        if self.kind != "text":
            raise JsonError(f"a {self.kind} message is not JSON text")
        try:
            return _json.loads(self.value)
        except ValueError as e:
            raise JsonError(f"message: {e}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and (self.kind, self.value) == (other.kind, other.value)

    def __repr__(self) -> str:
        return f"Message({self.kind!r}, {self.value!r})"


def _not_connected(name: str) -> Failed:
    which = "default" if name == "" else repr(name)
    return Failed(f"no open {which} WebSocket connection (call ws_connect first)")


class WebSocketActions:
    """The WebSocket methods of ``Session``. Each call is exactly one host call."""

    _connections: dict

    def _connection(self, name: str) -> Any:
        conn = self._connections.get(name)
        if conn is None:
            raise _not_connected(name)
        return conn

    def ws_connect(
        self,
        path: str,
        name: str = "",
        headers: Sequence[tuple[str, str]] = (),
        protocols: Sequence[str] = (),
        timeout_ms: Optional[int] = None,
        metric_name: Optional[str] = None,
    ) -> None:
        """Opens the WebSocket connection ``name`` (default ``""``) to ``path`` (resolved
        against ``base_url``, ``http`` → ``ws``), replacing an open one of that name.
        Metric ``ws_connect {path}``, or ``ws_connect {metric_name}`` when given."""
        old = self._connections.pop(name, None)
        if old is not None:
            old.__exit__(None, None, None)  # drop it first: it counts against the cap
        options = _host.websocket.ConnectOptions(
            metric_name=metric_name,
            headers=list(headers),
            protocols=list(protocols),
            timeout_ms=timeout_ms,
        )
        try:
            conn = _host.websocket.Connection.connect(path, options)
        except _host.Err as e:
            raise request_error(e.value) from None
        self._connections[name] = conn

    def ws_send(self, text: str, name: str = "") -> None:
        """Sends a text message on the connection ``name`` (default ``""``). Metric ``ws_send``."""
        conn = self._connection(name)
        try:
            conn.send_text(text)
        except _host.Err as e:
            raise request_error(e.value) from None

    def ws_send_binary(self, data: bytes, name: str = "") -> None:
        """Sends a binary message. Metric ``ws_send``."""
        conn = self._connection(name)
        try:
            conn.send_binary(bytes(data))
        except _host.Err as e:
            raise request_error(e.value) from None

    def ws_send_json(self, value: Any, name: str = "") -> None:
        """Sends ``value`` as a JSON text message."""
        try:
            text = _json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise JsonError(str(e)) from None
        self.ws_send(text, name)

    def ws_recv(self, timeout_ms: Optional[int] = None, name: str = "") -> Message:
        """The next message, waiting at most ``timeout_ms`` (None: the load test's
        receive timeout). Metric ``ws_recv``."""
        conn = self._connection(name)
        try:
            return Message.from_host(conn.recv(_host.timeout_ms(timeout_ms)))
        except _host.Err as e:
            raise request_error(e.value) from None

    def ws_await_recv(self, expected: str, timeout_ms: Optional[int] = None, name: str = "") -> None:
        """Receives until the text message ``expected`` arrives, dropping others; the timeout
        covers the whole wait (None: the load test's receive timeout). Metric ``ws_await_recv``."""
        conn = self._connection(name)
        try:
            conn.await_recv(_host.websocket.Message_Text(expected), _host.timeout_ms(timeout_ms))
        except _host.Err as e:
            raise request_error(e.value) from None

    def ws_close(self, name: str = "") -> None:
        """Closes the connection ``name`` (code 1000). Closing a connection the peer already
        closed is not an error."""
        conn = self._connections.pop(name, None)
        if conn is None:
            raise _not_connected(name)
        try:
            conn.close(NORMAL_CLOSURE, "")
        except _host.Err as e:
            err = request_error(e.value)
            if err.kind != "closed":
                raise err from None
        finally:
            conn.__exit__(None, None, None)
