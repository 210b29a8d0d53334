"""Unit tests of the Python SDK outside wasm: the bindings componentize-py generates from wit/,
with the host functions replaced by fakes that record every call.

    python3 guest-sdk/python/tests/test_sdk.py     (after scripts/build-polyglot installed componentize-py)

COMPONENTIZE_PY names the componentize-py binary (default: target/polyglot/tools/py/bin/componentize-py).
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TOOL = os.environ.get("COMPONENTIZE_PY", os.path.join(ROOT, "target/polyglot/tools/py/bin/componentize-py"))
BINDINGS = tempfile.mkdtemp(prefix="chaperon-py-bindings-")
atexit.register(shutil.rmtree, BINDINGS, True)
subprocess.run([TOOL, "-d", os.path.join(ROOT, "wit"), "-w", "scenario", "bindings", BINDINGS], check=True,
               stdout=subprocess.DEVNULL)
sys.path[:0] = [BINDINGS, os.path.join(ROOT, "guest-sdk/python")]

import chaperon  # noqa: E402
from componentize_py_types import Err  # noqa: E402
from wit_world.imports import session as hs  # noqa: E402
from wit_world.imports import types, websocket  # noqa: E402


class FakeConnection:
    def __init__(self, calls):
        self.calls = calls

    def send_text(self, text):
        self.calls.append(("send_text", text))

    def await_recv(self, expected, timeout_ms):
        self.calls.append(("await_recv", expected.value, timeout_ms))

    def close(self, code, reason):
        self.calls.append(("close", code))
        raise Err(types.RequestError_Closed())

    def __exit__(self, *a):
        self.calls.append(("drop",))


class Fake:
    """Replaces the host functions of the generated modules; records calls."""

    def __init__(self, config=None):
        self.calls = []
        self.config = config or {}
        self.assigns = {}
        self.token = 0

    def install(self):
        calls = self.calls

        def config(path):
            key = ".".join(path)
            if key not in self.config:
                raise Err(hs.StateError_Missing(f"no config value at `{key}`"))
            return self.config[key]

        def trace_begin(name):
            self.token += 1
            calls.append(("trace_begin", name))
            return self.token

        def connect(url, options):
            calls.append(("connect", url))
            if url.startswith("ws://127.0.0.1:1/"):
                raise Err(types.RequestError_Refused())
            return FakeConnection(calls)

        def assign(path, value):
            self.assigns[".".join(path)] = value

        def assigned(path):
            key = ".".join(path)
            if key not in self.assigns:
                raise Err(hs.StateError_Missing(key))
            return self.assigns[key]

        hs.config = config
        hs.trace_begin = trace_begin
        hs.trace_end = lambda token, ok: calls.append(("trace_end", token, ok))
        hs.log = lambda level, msg: calls.append(("log", level.name, msg))
        hs.check = lambda name, passed: calls.append(("check", name, passed))
        hs.delay = lambda ms: calls.append(("delay", ms))
        hs.assign = assign
        hs.assigned = assigned
        websocket.Connection.connect = staticmethod(connect)
        chaperon._session = None
        chaperon._scenario = None
        return self


def world(scenario):
    return chaperon.export(scenario)()


class Tests(unittest.TestCase):
    def test_pingpong_makes_one_host_call_per_action(self):
        fake = Fake({"ping_pong.iterations": "3"}).install()

        class PingPong(chaperon.Scenario):
            def run(self, s):
                n = s.config("ping_pong.iterations")
                s.ws_connect("/ping/pong")
                s.repeat_traced("ping_pong", n, lambda s: (s.ws_send("ping"), s.ws_await_recv("pong")))
                s.ws_close()

        world(PingPong).run()
        kinds = [c[0] for c in fake.calls]
        self.assertEqual(kinds.count("send_text"), 3)
        self.assertEqual(kinds.count("await_recv"), 3)
        self.assertIn(("await_recv", "pong", None), fake.calls, "no timeout given: none, the default")
        self.assertEqual([c for c in fake.calls if c[0] == "trace_begin"], [("trace_begin", "call ping_pong")] * 3)
        self.assertEqual(kinds[-2:], ["close", "drop"], "a peer-closed close is not an error")

    def test_any_exception_becomes_a_failed_scenario_error(self):
        Fake().install()

        class Bad(chaperon.Scenario):
            def run(self, s):
                return {}["missing"]

        with self.assertRaises(Err) as e:
            world(Bad).run()
        self.assertIsInstance(e.exception.value, types.ScenarioError_Failed)
        self.assertIn("KeyError: 'missing' (at test_sdk.py:", e.exception.value.value)

    def test_sdk_errors_keep_their_text(self):
        Fake().install()

        class Missing(chaperon.Scenario):
            def run(self, s):
                s.config("a.b")

        with self.assertRaises(Err) as e:
            world(Missing).run()
        self.assertEqual(e.exception.value, types.ScenarioError_Failed("no config value at `a.b`"))

        class Refused(chaperon.Scenario):
            def run(self, s):
                try:
                    s.ws_connect("ws://127.0.0.1:1/x")
                except chaperon.RequestError as err:
                    s.check("kind", err.kind == "refused")
                    raise

        fake = Fake().install()
        with self.assertRaises(Err) as e:
            world(Refused).run()
        self.assertEqual(e.exception.value.value, "request failed: connection refused")
        self.assertIn(("check", "kind", True), fake.calls)

    def test_abort_is_reported_even_when_caught(self):
        Fake().install()

        class Quitter(chaperon.Scenario):
            def run(self, s):
                try:
                    raise s.abort("enough")
                except chaperon.Aborted:
                    pass

        with self.assertRaises(Err) as e:
            world(Quitter).run()
        self.assertEqual(e.exception.value, types.ScenarioError_Aborted("enough"))

    def test_traced_call_counts_a_failure_and_retry_retries(self):
        fake = Fake().install()
        s = chaperon.Session()
        with self.assertRaises(chaperon.Failed):
            s.call_traced("login", lambda s: (_ for _ in ()).throw(chaperon.Failed("no")))
        self.assertIn(("trace_end", 1, False), fake.calls)
        attempts = []

        def flaky(s):
            attempts.append(1)
            if len(attempts) < 3:
                raise chaperon.Failed("not yet")
            return "ok"

        self.assertEqual(s.retry_on_error(2, 5, flaky), "ok")
        self.assertEqual([c for c in fake.calls if c[0] == "delay"], [("delay", 5), ("delay", 5)])

    def test_config_or_assigns_and_json(self):
        Fake({"x.n": "7", "x.bad": "{"}).install()
        s = chaperon.Session()
        self.assertEqual(s.config_or("x.n", 1), 7)
        self.assertEqual(s.config_or("x.none", 1), 1)
        self.assertEqual(s.config_or("x.bad", 1), 1)
        s.assign("a.b", {"k": [1, 2]})
        self.assertEqual(s.assigned("a.b"), {"k": [1, 2]})
        self.assertIsNone(s.assigned("a.c", None))
        s.update_assign("a.n", lambda old: (old or 0) + 1)
        self.assertEqual(s.assigned("a.n"), 1)

    def test_request_builder(self):
        Fake().install()
        r = chaperon.Request.get("/items/1").metric_name("/items/:id").query("q", 1).header("x", "y").to_host()
        self.assertEqual(r.options.metric_name, "/items/:id")
        self.assertEqual(r.query, [("q", "1")])
        self.assertEqual(type(r.body).__name__, "Body_None_")
        r = chaperon.Request.post("/items").json({"name": "apple", "vu": 0}).to_host()
        self.assertEqual(r.body.value, '{"name":"apple","vu":0}')


if __name__ == "__main__":
    unittest.main(verbosity=1)
