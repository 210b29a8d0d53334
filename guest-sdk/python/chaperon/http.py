"""HTTP: the :class:`Request` builder, :class:`Response`, and the ``Session`` HTTP actions."""

from __future__ import annotations

import json as _json
from typing import Any, Iterable, Optional

from . import _host
from .errors import ChaperonError, Failed, JsonError, request_error

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _dumps(value: Any) -> str:
    try:
        return _json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise JsonError(str(e)) from None


def to_body(body: Any) -> Any:
    """text (``str``), bytes, a JSON value (``dict``/``list``), or ``None`` for no body."""
    h = _host.http
    if body is None:
        return h.Body_None_()
    if isinstance(body, str):
        return h.Body_Text(body)
    if isinstance(body, (bytes, bytearray, memoryview)):
        return h.Body_Bytes(bytes(body))
    if isinstance(body, (dict, list, int, float, bool)):
        return h.Body_Json(_dumps(body))
    raise Failed(f"cannot send a {type(body).__name__} as a body (use str, bytes, dict or list)")


class Request:
    """An HTTP request, built step by step and sent with ``Session.send`` or ``Session.batch``.

    ``path`` is resolved against the load test's ``base_url``, or is an absolute URL::

        res = s.send(Request.get("/search").query("q", "rust").metric_name("/search"))
    """

    def __init__(self, method: str, path: str) -> None:
        method = method.upper()
        if method not in _METHODS:
            raise Failed(f"unknown HTTP method {method} (use one of {', '.join(_METHODS)})")
        self.method = method
        self.url = path
        self.headers: list[tuple[str, str]] = []
        self.params: list[tuple[str, str]] = []
        self.body_value: Any = None
        self._metric_name: Optional[str] = None
        self._timeout_ms: Optional[int] = None
        self._expect: list[tuple[int, int]] = []
        self._follow_redirects: Optional[int] = None
        self._basic_auth: Optional[tuple[str, str]] = None
        self._json: Optional[str] = None
        self._form: Optional[list[tuple[str, str]]] = None

    @classmethod
    def get(cls, path: str) -> "Request":
        return cls("GET", path)

    @classmethod
    def head(cls, path: str) -> "Request":
        return cls("HEAD", path)

    @classmethod
    def post(cls, path: str) -> "Request":
        return cls("POST", path)

    @classmethod
    def put(cls, path: str) -> "Request":
        return cls("PUT", path)

    @classmethod
    def patch(cls, path: str) -> "Request":
        return cls("PATCH", path)

    @classmethod
    def delete(cls, path: str) -> "Request":
        return cls("DELETE", path)

    @classmethod
    def options(cls, path: str) -> "Request":
        return cls("OPTIONS", path)

    def header(self, name: str, value: str) -> "Request":
        """Adds a header."""
        self.headers.append((name, str(value)))
        return self

    def query(self, name: str, value: Any) -> "Request":
        """Adds a query parameter (URL-encoded by the host)."""
        self.params.append((name, str(value)))
        return self

    def body(self, body: Any) -> "Request":
        """Sets the body: ``str`` (text), ``bytes``, a ``dict``/``list`` (JSON) or ``None``."""
        self.body_value, self._json, self._form = body, None, None
        return self

    def json(self, value: Any) -> "Request":
        """Sets a JSON body (and ``content-type: application/json`` unless a header sets it)."""
        self.body_value, self._json, self._form = None, _dumps(value), None
        return self

    def form(self, fields: Any) -> "Request":
        """Sets a URL-encoded form body from a ``dict`` or a list of pairs."""
        items = fields.items() if isinstance(fields, dict) else fields
        self.body_value, self._json = None, None
        self._form = [(str(k), str(v)) for k, v in items]
        return self

    def metric_name(self, name: str) -> "Request":
        """Records this request under ``name`` instead of its path, so dynamic paths share one
        histogram: ``Request.get(f"/items/{id}").metric_name("/items/:id")``."""
        self._metric_name = name
        return self

    def timeout_ms(self, ms: int) -> "Request":
        """Timeout of the whole exchange, body included (default: the load test's)."""
        self._timeout_ms = ms
        return self

    def expect_status(self, min: int, max: int) -> "Request":
        """Adds ``min..=max`` to the statuses that count as success (default: 200-399)."""
        self._expect.append((min, max))
        return self

    def follow_redirects(self, max: int) -> "Request":
        """Follows up to ``max`` redirects (default: none)."""
        self._follow_redirects = max
        return self

    def basic_auth(self, user: str, password: str) -> "Request":
        """Uses HTTP basic auth."""
        self._basic_auth = (user, password)
        return self

    def to_host(self) -> Any:
        h = _host.http
        if self._json is not None:
            body = h.Body_Json(self._json)
        elif self._form is not None:
            body = h.Body_Form(self._form)
        else:
            body = to_body(self.body_value)
        options = h.RequestOptions(
            metric_name=self._metric_name,
            timeout_ms=self._timeout_ms,
            expect=[h.StatusRange(min=a, max=b) for a, b in self._expect],
            follow_redirects=self._follow_redirects,
            basic_auth=self._basic_auth,
        )
        return h.Request(
            method=getattr(h.Method, self.method),
            url=self.url,
            headers=list(self.headers),
            query=list(self.params),
            body=body,
            options=options,
        )


class Response:
    """A complete response: ``status``, ``headers`` (list of pairs), ``body`` (bytes),
    ``body_truncated``, ``ok`` (the status is one the request expected), ``timings`` (µs:
    ``dns_us``, ``connect_us``, ``tls_us``, ``ttfb_us``, ``total_us``), ``bytes_sent``,
    ``bytes_received``."""

    __slots__ = ("status", "headers", "body", "body_truncated", "ok", "timings", "bytes_sent", "bytes_received")

    def __init__(self, raw: Any) -> None:
        self.status: int = raw.status
        self.headers: list[tuple[str, str]] = raw.headers
        self.body: bytes = raw.body
        self.body_truncated: bool = raw.body_truncated
        self.ok: bool = raw.expected
        self.timings = raw.timings
        self.bytes_sent: int = raw.bytes_sent
        self.bytes_received: int = raw.bytes_received

    def text(self) -> str:
        """The body as text (invalid UTF-8 is replaced with U+FFFD)."""
        return bytes(self.body).decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        try:
            return _json.loads(self.text())
        except ValueError as e:
            raise JsonError(f"response body: {e}") from None

    def header(self, name: str) -> Optional[str]:
        """The first header named ``name`` (case-insensitive), or ``None``."""
        lower = name.lower()
        for k, v in self.headers:
            if k.lower() == lower:
                return v
        return None

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


class HttpActions:
    """The HTTP methods of ``Session``."""

    def send(self, request: Request) -> Response:
        """Sends a request and reads the whole response. An unexpected status is still a
        response (see ``Response.ok``); only network failures raise :class:`RequestError`."""
        raw = request.to_host()
        try:
            return Response(_host.http.send(raw))
        except _host.Err as e:
            raise request_error(e.value) from None

    def batch(self, requests: Iterable[Request]) -> list:
        """Sends requests in parallel (bounded by the session's connection cap). Returns one
        item per request, in order: a :class:`Response` or the :class:`ChaperonError` it failed
        with (returned, not raised)."""
        results: list = []
        valid = []
        for request in requests:
            try:
                valid.append(request.to_host())
                results.append(None)
            except ChaperonError as e:
                results.append(e)
        sent = iter(_host.http.batch(valid))
        out = []
        for item in results:
            if item is not None:
                out.append(item)
                continue
            r = next(sent, None)
            if r is None:
                out.append(Failed("batch: the host returned too few results"))
            elif isinstance(r, _host.Ok):
                out.append(Response(r.value))
            else:
                out.append(request_error(r.value))
        return out

    def get(self, path: str) -> Response:
        """``GET path``."""
        return self.send(Request.get(path))

    def head(self, path: str) -> Response:
        """``HEAD path``."""
        return self.send(Request.head(path))

    def delete(self, path: str) -> Response:
        """``DELETE path``."""
        return self.send(Request.delete(path))

    def post(self, path: str, body: Any = None) -> Response:
        """``POST path`` with a body: ``str`` (text), ``bytes``, ``dict``/``list`` (JSON) or ``None``."""
        return self.send(Request.post(path).body(body))

    def put(self, path: str, body: Any = None) -> Response:
        """``PUT path`` with a body."""
        return self.send(Request.put(path).body(body))

    def patch(self, path: str, body: Any = None) -> Response:
        """``PATCH path`` with a body."""
        return self.send(Request.patch(path).body(body))

    def post_json(self, path: str, value: Any) -> Response:
        """``POST path`` with ``value`` as a JSON body."""
        return self.send(Request.post(path).json(value))
