// Unit tests of the JavaScript SDK outside wasm: esbuild bundles src/index.js with a fake
// "chaperon:host" that records every call.
//
//   node --test guest-sdk/js/test/     (after scripts/build-polyglot installed the tools)
//
// CHAPERON_JS_TOOLS names the tools directory (default: target/polyglot/tools/js).

import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const tools = resolve(process.env.CHAPERON_JS_TOOLS ?? join(here, "../../../target/polyglot/tools/js"));
const esbuild = createRequire(join(tools, "package.json"))("esbuild");

const fakeHost = `
export const calls = [];
export const config = {};
const hostError = (payload) => Object.assign(new Error("host error"), { payload });
let token = 0;
class Connection {
  static connect(url, options) {
    calls.push(["connect", url, options.timeoutMs]);
    if (url.startsWith("ws://127.0.0.1:1/")) throw hostError({ tag: "refused" });
    return new Connection();
  }
  sendText(t) { calls.push(["sendText", t]); }
  awaitRecv(m, timeout) { calls.push(["awaitRecv", m.tag, m.val, timeout]); }
  close(code) { calls.push(["close", code]); throw hostError({ tag: "closed" }); }
}
export const session = {
  info: () => ({ id: "s-0", parentId: null, scenario: "t", vu: 3, iteration: 0 }),
  config(path) {
    const k = path.join(".");
    if (!(k in config)) throw hostError({ tag: "missing", val: "no config value at \`" + k + "\`" });
    return config[k];
  },
  traceBegin(name) { calls.push(["traceBegin", name]); return ++token; },
  traceEnd(t, ok) { calls.push(["traceEnd", t, ok]); },
  log(level, msg) { calls.push(["log", level, msg]); },
  check(name, passed) { calls.push(["check", name, passed]); },
  delay(ms) { calls.push(["delay", ms]); },
};
export const http = {
  send(req) { calls.push(["send", req]); return { status: 200, headers: [["Content-Type", "text/plain"]], body: new Uint8Array([104, 195, 169]), bodyTruncated: false, expected: true, timings: {}, bytesSent: 1, bytesReceived: 3 }; },
};
export const websocket = { Connection };
export const engine = "fake";
export const none = undefined;
`;

const dir = mkdtempSync(join(tmpdir(), "chaperon-js-test-"));
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
const outfile = join(dir, "sdk.mjs");
await esbuild.build({
  stdin: { contents: `export * from "chaperon"; export * as fake from "chaperon:host";`, resolveDir: here },
  bundle: true,
  format: "esm",
  platform: "neutral",
  outfile,
  logLevel: "error",
  plugins: [{
    name: "fake-host",
    setup(b) {
      b.onResolve({ filter: /^chaperon$/ }, () => ({ path: join(here, "../src/index.js") }));
      b.onResolve({ filter: /^chaperon:host$/ }, () => ({ path: "fake-host", namespace: "fake" }));
      b.onLoad({ filter: /.*/, namespace: "fake" }, () => ({ contents: fakeHost, loader: "js" }));
    },
  }],
});
const sdk = await import(pathToFileURL(outfile).href);
const { fake } = sdk;
const reset = (config = {}) => {
  fake.calls.length = 0;
  for (const k of Object.keys(fake.config)) delete fake.config[k];
  Object.assign(fake.config, config);
};

test("pingpong makes one host call per action", () => {
  reset({ "ping_pong.iterations": "3" });
  class PingPong extends sdk.Scenario {
    run(s) {
      s.wsConnect("/ping/pong");
      s.repeatTraced("ping_pong", s.config("ping_pong.iterations"), (s) => {
        s.wsSend("ping");
        s.wsAwaitRecv("pong");
      });
      s.wsClose();
    }
  }
  sdk.exportScenario(PingPong).run();
  const kinds = fake.calls.map((c) => c[0]);
  assert.equal(kinds.filter((k) => k === "sendText").length, 3);
  assert.equal(kinds.filter((k) => k === "awaitRecv").length, 3);
  assert.deepEqual(fake.calls.filter((c) => c[0] === "traceBegin"), Array(3).fill(["traceBegin", "call ping_pong"]));
  assert.deepEqual(fake.calls.find((c) => c[0] === "awaitRecv"), ["awaitRecv", "text", "pong", undefined]);
  assert.equal(kinds.at(-1), "close", "a peer-closed close is not an error");
});

test("any thrown value becomes the failed scenario-error", () => {
  reset();
  const e = sdk.exportScenario({ run() { null.x = 1; } });
  assert.throws(() => e.run(), (err) => err.tag === "failed" && err.val.startsWith("TypeError: "));
  assert.throws(() => sdk.exportScenario({ run() { throw "plain"; } }).run(), { tag: "failed", val: "plain" });
  assert.throws(() => sdk.exportScenario({ run(s) { s.config("a.b"); } }).run(),
    { tag: "failed", val: "no config value at `a.b`" });
  assert.throws(() => sdk.exportScenario({ run(s) { s.wsConnect("ws://127.0.0.1:1/x"); } }).run(),
    { tag: "failed", val: "request failed: connection refused" });
});

test("abort is reported even when caught", () => {
  reset();
  const e = sdk.exportScenario({ run(s) { try { throw s.abort("enough"); } catch { /* swallowed */ } } });
  assert.throws(() => e.run(), { tag: "aborted", val: "enough" });
});

test("caught errors have SDK types; traced failures and retries", () => {
  reset();
  const s = new sdk.Session();
  assert.throws(() => s.wsConnect("ws://127.0.0.1:1/x"), (e) => e instanceof sdk.RequestError && e.kind === "refused");
  assert.throws(() => s.config("nope"), sdk.StateError);
  assert.equal(s.configOr("nope", 5), 5);
  assert.throws(() => s.callTraced("login", () => { throw new sdk.Failed("no"); }), sdk.Failed);
  const begun = fake.calls.filter((c) => c[0] === "traceBegin");
  assert.deepEqual(begun, [["traceBegin", "call login"]]);
  assert.equal(fake.calls.find((c) => c[0] === "traceEnd")[2], false, "a throw is a failed sample");
  let n = 0;
  assert.equal(s.retryOnError(2, 7, () => { if (++n < 3) throw new sdk.Failed("not yet"); return "ok"; }), "ok");
  assert.deepEqual(fake.calls.filter((c) => c[0] === "delay"), [["delay", 7], ["delay", 7]]);
});

test("requests and responses", () => {
  reset();
  const s = new sdk.Session();
  const res = s.send(sdk.Request.get("/items/1").metricName("/items/:id").query("q", 1));
  const req = fake.calls[0][1];
  assert.equal(req.method, "get");
  assert.equal(req.options.metricName, "/items/:id");
  assert.equal(req.options.timeoutMs, undefined);
  assert.deepEqual(req.query, [["q", "1"]]);
  assert.equal(res.ok, true);
  assert.equal(res.header("content-type"), "text/plain");
  assert.equal(sdk.utf8Decode(new Uint8Array([104, 195, 169, 0xff])), "hé\ufffd");
  s.postJson("/items", { name: "apple", vu: s.vu() });
  assert.deepEqual(fake.calls[1][1].body, { tag: "json", val: '{"name":"apple","vu":3}' });
});
