"""The exceptions of scenario code, and how host errors map onto them.

Every SDK call that can fail raises a :class:`ChaperonError`. An exception that escapes a
scenario function ends the session as *failed* with the exception's text as the reason
(:class:`Aborted` ends it as *aborted*). Any other Python exception does the same, with its
type name and the line it came from: the SDK never lets an exception trap the instance.
"""

from __future__ import annotations

import traceback
from typing import Any


class ChaperonError(Exception):
    """Base class of every error the SDK raises; ``str(e)`` is the reason the host reports."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class RequestError(ChaperonError):
    """An HTTP or WebSocket action failed (refused, timeout, denied by the allowlist, ...).

    ``kind`` is the WIT case name (``"refused"``, ``"connect-timeout"``, ``"ws-handshake"``, ...),
    ``detail`` its payload (a text, a status) or ``None``. An unexpected HTTP status is *not* an
    error: it is a :class:`~chaperon.Response` whose ``ok`` is false.
    """

    def __init__(self, kind: str, detail: Any = None) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__("request failed: " + describe_request_error(kind, detail))


class StateError(ChaperonError):
    """Config, assigns or data-set lookup failed (missing value, invalid path, exhausted data set)."""


class FlowError(ChaperonError):
    """An async child, signal or nested scenario failed (capacity, unknown task, timeout, ...)."""


class Failed(ChaperonError):
    """A failure the scenario reports itself: ``raise Failed("text")``."""


class Aborted(ChaperonError):
    """The scenario gave up on purpose: ``raise s.abort("why")``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return "aborted: " + self.reason


class JsonError(ChaperonError):
    """A value could not be converted to or from JSON."""

    def __str__(self) -> str:
        return "json: " + self.message


def _kebab(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i > 0:
            out.append("-")
        out.append(ch.lower())
    return "".join(out)


def variant_case(value: Any) -> tuple[str, Any]:
    """``RequestError_ConnectTimeout()`` → ``("connect-timeout", None)``; the case name and payload."""
    name = type(value).__name__
    case = name.split("_", 1)[1] if "_" in name else name
    case = case.rstrip("_")
    return _kebab(case), getattr(value, "value", None)


_REQUEST_TEXT = {
    "refused": "connection refused",
    "connect-timeout": "connect timeout",
    "reset": "connection reset",
    "timeout": "timeout",
    "too-large": "too large",
    "too-many-connections": "too many connections",
    "host-capacity": "host out of capacity",
    "interrupted": "interrupted",
    "closed": "connection closed",
}


# Kinds that carry a detail, and how to show it.
_REQUEST_DETAIL = {
    "denied": "denied by the allowlist: {}",
    "blocked-ip": "blocked address: {}",
    "dns": "name resolution failed: {}",
    "tls": "tls: {}",
    "protocol": "protocol error: {}",
    "ws-handshake": "websocket handshake answered with HTTP {}",
    "invalid": "invalid request: {}",
}


def describe_request_error(kind: str, detail: Any = None) -> str:
    """A human-readable description of a network failure, e.g. ``connection refused``."""
    template = _REQUEST_DETAIL.get(kind)
    if template is not None:
        return template.format(detail)
    return _REQUEST_TEXT.get(kind, kind)


def request_error(value: Any) -> RequestError:
    kind, detail = variant_case(value)
    return RequestError(kind, detail)


def state_error(what: str, value: Any) -> StateError:
    # The host's text is one sentence naming the path ("no config value at `a.b` ..."), so it
    # is the message as it is.
    kind, detail = variant_case(value)
    if kind in ("missing", "invalid", "exhausted"):
        return StateError(str(detail))
    return StateError(f"{what}: {kind}: {detail}")


_FLOW_TEXT = {
    "capacity": "capacity reached: {}",
    "unknown": "unknown task: {}",
    "child-failed": "child failed: {}",
    "timeout": "timed out",
    "queue-full": "signal queue full",
    "interrupted": "interrupted",
}


def flow_error(what: str, value: Any) -> FlowError:
    kind, detail = variant_case(value)
    return FlowError(f"{what}: " + _FLOW_TEXT.get(kind, kind + ": {}").format(detail))


def describe_exception(e: BaseException) -> str:
    """The failure reason for an exception that escaped scenario code.

    SDK errors give their own text; any other exception gives ``Type: text (file:line in fn)``,
    naming the innermost frame of the traceback so a bug can be found from the report.
    """
    if isinstance(e, ChaperonError):
        return str(e)
    payload = getattr(e, "value", None)
    if type(e).__name__ == "Err" and payload is not None:
        # A raw binding error (the scenario called the generated bindings directly).
        kind, detail = variant_case(payload)
        return f"host error {kind}" + (f": {detail}" if detail is not None else "")
    text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    frames = traceback.extract_tb(e.__traceback__)
    if frames:
        last = frames[-1]
        file = last.filename.rsplit("/", 1)[-1]
        text += f" (at {file}:{last.lineno} in {last.name})"
    return text
