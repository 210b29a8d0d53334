"""Exercises the SDK's edges for tests and measurements (not an example to copy).

``probe.mode`` picks what ``run`` does:

- ``idle``: waits ``probe.delay_ms`` (default 1000) in one ``delay``; for memory per session.
- ``raise``: a plain Python error escapes ``run`` (must end as guest-error, never a trap).
- ``fail`` / ``abort`` / ``abort-caught``: ``Failed``, ``s.abort`` raised, ``s.abort`` swallowed.
- ``missing-config`` / ``refused``: an SDK error escapes (state error, connection refused).
- ``caught``: catches those errors, checks their types and kinds, times a failing traced call
  and a retry, and completes.
"""

from chaperon import Failed, RequestError, Scenario, Session, StateError, export


class Probe(Scenario):
    def run(self, s: Session) -> None:
        mode = s.config_or("probe.mode", "idle")
        if mode == "idle":
            s.delay(s.config_or("probe.delay_ms", 1000))
        elif mode == "raise":
            {}["no such key"]
        elif mode == "fail":
            raise Failed("told to fail")
        elif mode == "abort":
            raise s.abort("told to abort")
        elif mode == "abort-caught":
            try:
                raise s.abort("aborted even though caught")
            except Exception:
                pass
        elif mode == "missing-config":
            s.config("probe.nothing")
        elif mode == "refused":
            s.ws_connect("ws://127.0.0.1:1/refused")
        elif mode == "caught":
            caught(s)
        else:
            raise Failed(f"unknown probe.mode {mode}")


def caught(s: Session) -> None:
    try:
        s.ws_connect("ws://127.0.0.1:1/refused")
        s.check("refused is a RequestError", False)
    except RequestError as e:
        s.check("refused is a RequestError", e.kind == "refused")
    try:
        s.config("probe.nothing")
        s.check("missing config is a StateError", False)
    except StateError:
        s.check("missing config is a StateError", True)

    def boom(s: Session) -> None:
        raise Failed("boom")

    try:
        s.call_traced("probe_fails", boom)
    except Failed:
        pass
    attempts = []

    def flaky(s: Session) -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise Failed("not yet")
        return "done"

    s.check("retry_on_error retries", s.retry_on_error(2, 1, flaky) == "done" and len(attempts) == 3)
    s.assign("probe.n", 1)
    s.update_assign("probe.n", lambda n: n + 1)
    s.check("assigns round-trip", s.assigned("probe.n") == 2 and s.assigned("probe.none", None) is None)


WitWorld = export(Probe)
