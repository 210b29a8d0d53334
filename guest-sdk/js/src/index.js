// chaperon: write chaperon load-test scenarios in JavaScript.
//
// A scenario is a WebAssembly component built from a module whose default export is a
// `Scenario` subclass (or an object with the same methods):
//
//     import { Scenario } from "chaperon";
//
//     export default class PingPong extends Scenario {
//       run(s) {
//         const iterations = s.config("ping_pong.iterations");
//         s.wsConnect("/ping/pong");
//         s.repeatTraced("ping_pong", iterations, (s) => {
//           s.wsSend("ping");
//           s.wsAwaitRecv("pong");
//         });
//         s.logInfo(`PingPong finished after ${iterations} iterations`);
//         s.wsClose();
//       }
//     }
//
// `guest-sdk/js/build.mjs` bundles it with this SDK and the engine's view of the host
// interfaces ("chaperon:host", see host-*.js) and makes the component with componentize-qjs
// (QuickJS, the default) or componentize-js (StarlingMonkey).
//
// Every exception that escapes a scenario method is returned to the host as the WIT
// `scenario-error` (`failed` with its text, or `aborted`): a JavaScript error never traps the
// instance. Names are the Rust SDK's in camelCase: ws_await_recv → wsAwaitRecv.

import * as host from "chaperon:host";

const { session: hs, http: hh, websocket: hw, none } = host;

/** Which JavaScript engine this component was built with: "quickjs" or "starlingmonkey". */
export const engine = host.engine;

// ---------------------------------------------------------------------------------- errors

/** Base class of every error the SDK throws; `message` is the reason the host reports. */
export class ChaperonError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * An HTTP or WebSocket action failed. `kind` is the WIT case (`refused`, `connect-timeout`,
 * `ws-handshake`, ...), `detail` its payload or undefined. An unexpected HTTP status is not an
 * error: it is a `Response` whose `ok` is false.
 */
export class RequestError extends ChaperonError {
  constructor(kind, detail) {
    super(`request failed: ${describeRequestError(kind, detail)}`);
    this.kind = kind;
    this.detail = detail;
  }
}

/** Config, assigns or data-set lookup failed (missing value, invalid path, exhausted data set). */
export class StateError extends ChaperonError {}

/** An async child, signal or nested scenario failed (capacity, unknown task, timeout, ...). */
export class FlowError extends ChaperonError {}

/** A failure the scenario reports itself: `throw new Failed("text")`. */
export class Failed extends ChaperonError {}

/** The scenario gave up on purpose: `throw s.abort("why")`. */
export class Aborted extends ChaperonError {
  constructor(reason) {
    super(`aborted: ${reason}`);
    this.reason = reason;
  }
}

/** A value could not be converted to or from JSON. */
export class JsonError extends ChaperonError {
  constructor(message) {
    super(`json: ${message}`);
  }
}

const REQUEST_TEXT = {
  refused: "connection refused",
  "connect-timeout": "connect timeout",
  reset: "connection reset",
  timeout: "timeout",
  "too-large": "too large",
  "too-many-connections": "too many connections",
  "host-capacity": "host out of capacity",
  interrupted: "interrupted",
  closed: "connection closed",
};

/** A human-readable description of a network failure, e.g. `connection refused`. */
export function describeRequestError(kind, detail) {
  switch (kind) {
    case "denied": return `denied by the allowlist: ${detail}`;
    case "blocked-ip": return `blocked address: ${detail}`;
    case "dns": return `name resolution failed: ${detail}`;
    case "tls": return `tls: ${detail}`;
    case "protocol": return `protocol error: ${detail}`;
    case "ws-handshake": return `websocket handshake answered with HTTP ${detail}`;
    case "invalid": return `invalid request: ${detail}`;
    default: return REQUEST_TEXT[kind] ?? String(kind);
  }
}

// The WIT error of a failed import: both engines throw an Error whose `payload` is the
// variant `{ tag, val }`.
function payloadOf(e) {
  if (e !== null && typeof e === "object" && e.payload !== undefined && typeof e.payload === "object") {
    return e.payload;
  }
  return undefined;
}

function hostCall(f, toError) {
  try {
    return f();
  } catch (e) {
    const p = payloadOf(e);
    if (p === undefined) throw e;
    throw toError(p);
  }
}

const requestError = (p) => new RequestError(p.tag, p.val);

function stateError(what, p) {
  switch (p.tag) {
    // The host's text is one sentence naming the path ("no config value at `a.b` ...").
    case "missing":
    case "invalid":
    case "exhausted": return new StateError(String(p.val));
    default: return new StateError(`${what}: ${p.tag}: ${p.val}`);
  }
}

function flowError(what, p) {
  const text = {
    capacity: () => `capacity reached: ${p.val}`,
    unknown: () => `unknown task: ${p.val}`,
    "child-failed": () => `child failed: ${p.val}`,
    timeout: () => "timed out",
    "queue-full": () => "signal queue full",
    interrupted: () => "interrupted",
  }[p.tag];
  return new FlowError(`${what}: ${text ? text() : p.tag}`);
}

/**
 * The failure reason for anything thrown out of scenario code: an SDK error's message, or
 * `Type: message (at file:line)` for other errors, or the thrown value itself.
 */
export function describeError(e) {
  if (e instanceof ChaperonError) return e.message;
  if (e instanceof Error) {
    let text = e.message ? `${e.name}: ${e.message}` : e.name;
    const where = firstFrame(e.stack);
    if (where) text += ` (at ${where})`;
    return text;
  }
  const p = payloadOf(e);
  if (p !== undefined) return `host error ${p.tag}${p.val !== undefined ? `: ${p.val}` : ""}`;
  if (typeof e === "string") return e;
  try {
    return `thrown: ${JSON.stringify(e)}`;
  } catch {
    return `thrown: ${String(e)}`;
  }
}

function firstFrame(stack) {
  if (typeof stack !== "string") return "";
  for (const line of stack.split("\n")) {
    const l = line.trim().replace(/^at\s+/, "");
    if (l) return l.length > 200 ? l.slice(0, 200) : l;
  }
  return "";
}

// ---------------------------------------------------------------------------------- values

function toJson(value) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    throw new JsonError(String(e && e.message ? e.message : e));
  }
  // JSON.stringify(undefined) is undefined; the host wants JSON text.
  return text === undefined ? "null" : text;
}

function fromJson(what, text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new JsonError(`${what}: ${e && e.message ? e.message : e}`);
  }
}

/** `"ping_pong.iterations"` → `["ping_pong", "iterations"]`; `""` → `[]`; arrays as they are. */
export function splitPath(path) {
  if (Array.isArray(path)) return path.map(String);
  return path === "" ? [] : String(path).split(".");
}

const isNone = (v) => v === undefined || v === null;
const opt = (v) => (isNone(v) ? none : v);
/** A timeout in ms for the host: unset (undefined/null) is none, the load test's default. */
const optMs = (ms) => (isNone(ms) ? none : ms >>> 0);

/** UTF-8 bytes → string (invalid sequences become U+FFFD); QuickJS has no TextDecoder. */
export function utf8Decode(bytes) {
  if (typeof TextDecoder !== "undefined") return new TextDecoder().decode(bytes);
  let out = "";
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i];
    let cp = 0xfffd;
    let n = 1;
    if (b < 0x80) cp = b;
    else if (b >= 0xc2 && b < 0xe0 && i + 1 < bytes.length && (bytes[i + 1] & 0xc0) === 0x80) {
      cp = ((b & 0x1f) << 6) | (bytes[i + 1] & 0x3f); n = 2;
    } else if (b >= 0xe0 && b < 0xf0 && i + 2 < bytes.length && (bytes[i + 1] & 0xc0) === 0x80 && (bytes[i + 2] & 0xc0) === 0x80) {
      cp = ((b & 0x0f) << 12) | ((bytes[i + 1] & 0x3f) << 6) | (bytes[i + 2] & 0x3f); n = 3;
      if (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000)) { cp = 0xfffd; n = 1; }
    } else if (b >= 0xf0 && b < 0xf5 && i + 3 < bytes.length && (bytes[i + 1] & 0xc0) === 0x80 && (bytes[i + 2] & 0xc0) === 0x80 && (bytes[i + 3] & 0xc0) === 0x80) {
      cp = ((b & 0x07) << 18) | ((bytes[i + 1] & 0x3f) << 12) | ((bytes[i + 2] & 0x3f) << 6) | (bytes[i + 3] & 0x3f); n = 4;
      if (cp < 0x10000 || cp > 0x10ffff) { cp = 0xfffd; n = 1; }
    }
    out += String.fromCodePoint(cp);
    i += n;
  }
  return out;
}

/** string → UTF-8 bytes. */
export function utf8Encode(text) {
  if (typeof TextEncoder !== "undefined") return new TextEncoder().encode(text);
  const out = [];
  for (const ch of String(text)) {
    const cp = ch.codePointAt(0);
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
  return new Uint8Array(out);
}

// ---------------------------------------------------------------------------------- HTTP

const METHODS = ["get", "head", "post", "put", "patch", "delete", "options"];

function toBody(body) {
  if (isNone(body)) return { tag: "none" };
  if (typeof body === "string") return { tag: "text", val: body };
  if (body instanceof Uint8Array) return { tag: "bytes", val: body };
  if (body instanceof ArrayBuffer) return { tag: "bytes", val: new Uint8Array(body) };
  return { tag: "json", val: toJson(body) };
}

/**
 * An HTTP request, built step by step and sent with `s.send` or `s.batch`. `path` is resolved
 * against the load test's `base_url`, or is an absolute URL.
 *
 *     s.send(Request.get("/search").query("q", "rust").metricName("/search"))
 */
export class Request {
  constructor(method, path) {
    const m = String(method).toLowerCase();
    if (!METHODS.includes(m)) {
      throw new Failed(`unknown HTTP method ${method} (use one of ${METHODS.join(", ").toUpperCase()})`);
    }
    this.method = m;
    this.url = String(path);
    this.headers = [];
    this.params = [];
    this.bodyValue = { tag: "none" };
    this.options = { metricName: undefined, timeoutMs: undefined, expect: [], followRedirects: undefined, basicAuth: undefined };
  }

  static get(path) { return new Request("get", path); }
  static head(path) { return new Request("head", path); }
  static post(path) { return new Request("post", path); }
  static put(path) { return new Request("put", path); }
  static patch(path) { return new Request("patch", path); }
  static delete(path) { return new Request("delete", path); }
  static options(path) { return new Request("options", path); }

  /** Adds a header. */
  header(name, value) { this.headers.push([String(name), String(value)]); return this; }
  /** Adds a query parameter (URL-encoded by the host). */
  query(name, value) { this.params.push([String(name), String(value)]); return this; }
  /** Sets the body: a string (text), a Uint8Array (bytes), any other value (JSON), or null. */
  body(body) { this.bodyValue = toBody(body); return this; }
  /** Sets a JSON body (and `content-type: application/json` unless a header sets it). */
  json(value) { this.bodyValue = { tag: "json", val: toJson(value) }; return this; }
  /** Sets a URL-encoded form body from an object or a list of pairs. */
  form(fields) {
    const items = Array.isArray(fields) ? fields : Object.entries(fields);
    this.bodyValue = { tag: "form", val: items.map(([k, v]) => [String(k), String(v)]) };
    return this;
  }
  /** Records the request under `name` instead of its path: `/items/${id}` → "/items/:id". */
  metricName(name) { this.options.metricName = String(name); return this; }
  /** Timeout of the whole exchange, body included (default: the load test's). */
  timeoutMs(ms) { this.options.timeoutMs = ms; return this; }
  /** Adds `min..=max` to the statuses that count as success (default: 200-399). */
  expectStatus(min, max) { this.options.expect.push({ min, max }); return this; }
  /** Follows up to `max` redirects (default: none). */
  followRedirects(max) { this.options.followRedirects = max; return this; }
  /** Uses HTTP basic auth. */
  basicAuth(user, password) { this.options.basicAuth = [String(user), String(password)]; return this; }

  /** The WIT `request` record. */
  toHost() {
    const o = this.options;
    return {
      method: this.method,
      url: this.url,
      headers: this.headers,
      query: this.params,
      body: this.bodyValue,
      options: {
        metricName: opt(o.metricName),
        timeoutMs: opt(o.timeoutMs),
        expect: o.expect,
        followRedirects: opt(o.followRedirects),
        basicAuth: opt(o.basicAuth),
      },
    };
  }
}

/**
 * A complete response: `status`, `headers` (list of pairs), `body` (Uint8Array),
 * `bodyTruncated`, `ok` (the status is one the request expected), `timings` (µs: `dnsUs`,
 * `connectUs`, `tlsUs`, `ttfbUs`, `totalUs`), `bytesSent`, `bytesReceived`.
 */
export class Response {
  constructor(raw) {
    this.status = raw.status;
    this.headers = raw.headers;
    this.body = raw.body instanceof Uint8Array ? raw.body : new Uint8Array(raw.body);
    this.bodyTruncated = raw.bodyTruncated;
    this.ok = raw.expected;
    this.timings = raw.timings;
    this.bytesSent = raw.bytesSent;
    this.bytesReceived = raw.bytesReceived;
  }
  /** The body as text (invalid UTF-8 becomes U+FFFD). */
  text() { return utf8Decode(this.body); }
  /** The body parsed as JSON. */
  json() { return fromJson("response body", this.text()); }
  /** The first header named `name` (case-insensitive), or undefined. */
  header(name) {
    const lower = String(name).toLowerCase();
    const found = this.headers.find(([k]) => k.toLowerCase() === lower);
    return found ? found[1] : undefined;
  }
}

// ---------------------------------------------------------------------------------- WebSocket

/** Close code sent by `wsClose`: normal closure. */
export const NORMAL_CLOSURE = 1000;

/**
 * A received message: `kind` is "text", "binary" or "close"; `value` is the text, the bytes
 * (Uint8Array), or `[code, reason]` of a close.
 */
export class Message {
  constructor(kind, value) { this.kind = kind; this.value = value; }
  static fromHost(raw) { return new Message(raw.tag, raw.val); }
  /** The text of a text message, else undefined. */
  asText() { return this.kind === "text" ? this.value : undefined; }
  /** The text of a text message parsed as JSON. */
  json() {
    if (this.kind !== "text") throw new JsonError(`a ${this.kind} message is not JSON text`);
    return fromJson("message", this.value);
  }
}

function notConnected(name) {
  const which = name === "" ? "default" : JSON.stringify(name);
  return new Failed(`no open ${which} WebSocket connection (call wsConnect first)`);
}

function dispose(resource) {
  if (resource && typeof resource[Symbol.dispose] === "function") resource[Symbol.dispose]();
}

// ---------------------------------------------------------------------------------- Session

const now = () => (typeof performance !== "undefined" && performance.now ? performance.now() : Date.now());

/**
 * One virtual user: everything a scenario does goes through its Session. The SDK creates it
 * and passes it to every scenario method. The host keeps the real state (config, assigns,
 * metrics, cookies); the Session only holds the open WebSocket connections, so they live from
 * `init` through `run` to `teardown`. Every action is exactly one host call.
 */
export class Session {
  constructor() {
    this.connections = new Map();
    this.aborted = undefined;
  }

  // ------------------------------------------------------------ identity

  /** Who this session is: `{ id, parentId, scenario, vu, iteration }`. */
  info() {
    const i = hs.info();
    return { id: i.id, parentId: isNone(i.parentId) ? undefined : i.parentId, scenario: i.scenario, vu: i.vu, iteration: i.iteration };
  }
  /** Unique id of this session. */
  id() { return hs.info().id; }
  /** Id of the parent session (async children and spreads), or undefined. */
  parentId() { return this.info().parentId; }
  /** Virtual-user number, 0-based and dense within the scenario. */
  vu() { return hs.info().vu; }
  /** Iteration number of this virtual user, 0-based. */
  iteration() { return hs.info().iteration; }
  /** Name of the scenario. */
  scenarioName() { return hs.info().scenario; }

  // ------------------------------------------------------------ config and assigns

  /** The config value at a dotted `path`; a missing value throws StateError (see configOr). */
  config(path) {
    const what = `config ${path}`;
    return fromJson(what, hostCall(() => hs.config(splitPath(path)), (p) => stateError(what, p)));
  }

  /** The config value at `path`, or `fallback` when there is none. */
  configOr(path, fallback) {
    let text;
    try {
      text = hs.config(splitPath(path));
    } catch (e) {
      const p = payloadOf(e);
      if (p === undefined) throw e;
      if (p.tag !== "missing") this.logWarn(`${stateError(`config ${path}`, p).message}; using the default`);
      return fallback;
    }
    try {
      return fromJson(`config ${path}`, text);
    } catch (e) {
      this.logWarn(`${e.message}; using the default`);
      return fallback;
    }
  }

  /** Sets the config value at `path` for this session only. */
  setConfig(path, value) {
    hostCall(() => hs.setConfig(splitPath(path), toJson(value)), (p) => stateError(`setConfig ${path}`, p));
  }

  /** Assigns `value` at a dotted `path`, creating intermediate objects (namespaces). */
  assign(path, value) {
    hostCall(() => hs.assign(splitPath(path), toJson(value)), (p) => stateError(`assign ${path}`, p));
  }

  /** The assigned value at `path` ("" gives all assigns); throws StateError when missing
   * unless `fallback` is given. */
  assigned(path = "", ...fallback) {
    const what = `assigned ${path}`;
    let text;
    try {
      text = hs.assigned(splitPath(path));
    } catch (e) {
      const p = payloadOf(e);
      if (p === undefined) throw e;
      if (p.tag === "missing" && fallback.length > 0) return fallback[0];
      throw stateError(what, p);
    }
    return fromJson(what, text);
  }

  /** Replaces the value at `path` with `f(old)`; `old` is undefined when nothing is assigned. */
  updateAssign(path, f) { this.assign(path, f(this.assigned(path, undefined))); }

  /** Removes the value at `path`; removing a missing value is not an error. */
  deleteAssign(path) { hs.deleteAssign(splitPath(path)); }

  /** The result of the load test's setup function, or undefined. */
  setupData() {
    const text = hs.setupData();
    return isNone(text) ? undefined : fromJson("setupData", text);
  }

  /** The next record of a data set named in the load-test file. */
  feed(dataset) {
    const what = `feed ${dataset}`;
    return fromJson(what, hostCall(() => hs.feed(dataset), (p) => stateError(what, p)));
  }

  // ------------------------------------------------------------ time and randomness

  /** Waits `ms` milliseconds (the host parks the session; no thread is held). */
  delay(ms) { hs.delay(ms >>> 0); }
  /** Waits a uniformly random time in 0..=maxMs milliseconds. */
  randomDelay(maxMs) { this.delay(this.random(Math.min((maxMs >>> 0) + 1, 0xffffffff))); }
  /** A uniformly random integer in [0, bound) (0 when bound is 0). */
  random(bound) { return hs.random(bound >>> 0); }

  // ------------------------------------------------------------ control flow

  /** Runs `f(s, ...args)` untraced; Chaperon's `call`. */
  call(f, ...args) { return f(this, ...args); }

  /** Runs `f(s, ...args)`, recording its duration under `call {name}` (a throw counts as a
   * failed call and propagates); Chaperon's `call_traced`. */
  callTraced(name, f, ...args) { return this.time(`call ${name}`, f, ...args); }

  /** Runs `f(s)` `n` times, untraced; stops at the first throw. */
  repeat(n, f) { for (let i = 0; i < n; i++) f(this); }

  /** Runs `f(s)` `n` times, one `call {name}` sample per iteration; stops at the first throw. */
  repeatTraced(name, n, f) {
    const metric = `call ${name}`;
    for (let i = 0; i < n; i++) this.time(metric, f);
  }

  /** Runs `f(s)` over and over for `durationMs`, one `call {name}` sample per iteration;
   * Chaperon's `loop`. The first iteration always runs; the last may overrun. */
  loopFor(name, durationMs, f) {
    const metric = `call ${name}`;
    const start = now();
    for (;;) {
      this.time(metric, f);
      if (now() - start > durationMs) return;
    }
  }

  /** Runs `f(s)`; on a throw runs it again up to `retries` more times, `delayMs` apart, and
   * rethrows the last error. Aborted is rethrown at once. `retryOnError(2, ...)` makes at most
   * 3 attempts. */
  retryOnError(retries, delayMs, f) {
    for (let attempt = 0; ; ) {
      try {
        return f(this);
      } catch (e) {
        if (e instanceof Aborted || attempt >= retries) throw e;
        attempt += 1;
        this.logWarn(`retry ${attempt}/${retries} after error: ${describeError(e)}`);
        this.delay(delayMs);
      }
    }
  }

  /** Runs `f(s, ...args)` and records its duration under `metric` (a throw counts as a failed
   * sample and propagates); Chaperon's `time`. */
  time(metric, f, ...args) {
    const token = hs.traceBegin(metric);
    let ok = false;
    try {
      const result = f(this, ...args);
      ok = true;
      return result;
    } finally {
      hs.traceEnd(token, ok);
    }
  }

  /** Counts the check `name` as passed or failed, and returns `passed` as a boolean. */
  check(name, passed) {
    const b = Boolean(passed);
    hs.check(String(name), b);
    return b;
  }

  /** Records a custom sample `value` under `metric` (µs, or the unit the name implies). */
  record(metric, value) { hs.recordMetric(String(metric), Math.max(0, Math.min(Math.floor(value), 0xffffffff))); }

  /** Ends the scenario on purpose: returns an Aborted to `throw`. The session is reported as
   * aborted with `reason`, even if the error is caught; `teardown` still runs. */
  abort(reason) {
    this.aborted = String(reason);
    return new Aborted(String(reason));
  }

  // ------------------------------------------------------------ logging

  /** Logs at debug level; the host prefixes the session id and scenario name. */
  logDebug(message) { hs.log("debug", String(message)); }
  /** Logs at info level. */
  logInfo(message) { hs.log("info", String(message)); }
  /** Logs at warn level. */
  logWarn(message) { hs.log("warn", String(message)); }
  /** Logs at error level. */
  logError(message) { hs.log("error", String(message)); }

  // ------------------------------------------------------------ async children and signals

  /** Starts an async child that runs `invoke(fn, args)` on a fresh instance, registered under
   * `task` (default: `fn`); Chaperon's `async`. */
  spawn(fn, args = null, task = "") {
    return hostCall(() => hs.spawn(fn, toJson(args), task), (p) => flowError(`spawn ${fn}`, p));
  }
  /** Starts `count` children of `fn` (null args) spread over `intervalMs`; Chaperon's `cc_spread`. */
  ccSpread(fn, count, intervalMs, task = "") { this.spread(fn, null, count, intervalMs, task); }
  /** Like ccSpread, passing `args` to every child. */
  spread(fn, args, count, intervalMs, task = "") {
    hostCall(() => hs.spread(fn, toJson(args), count >>> 0, intervalMs >>> 0, task), (p) => flowError(`spread ${fn}`, p));
  }
  /** Waits for every child under `task` (unset: until the session's deadline); their results, or
   * throws the first child failure as FlowError. */
  awaitTask(task, timeoutMs) { return collect(`awaitTask ${task}`, hs.awaitTask(task, optMs(timeoutMs))); }
  /** Waits for every child of this session. */
  awaitAll(timeoutMs) { return collect("awaitAll", hs.awaitAll(optMs(timeoutMs))); }
  /** Sends `value` to every child under `task`. */
  signal(task, value) { hostCall(() => hs.signal(task, toJson(value)), (p) => flowError(`signal ${task}`, p)); }
  /** Sends `value` to the parent session. */
  signalParent(value) { hostCall(() => hs.signalParent(toJson(value)), (p) => flowError("signalParent", p)); }
  /** Waits for a signal equal to `expected`; other signals stay queued. */
  awaitSignal(expected, timeoutMs) {
    return fromJson("signal", hostCall(() => hs.awaitSignal(toJson(expected), optMs(timeoutMs)), (p) => flowError("awaitSignal", p)));
  }
  /** Waits for any signal and returns it. */
  awaitAnySignal(timeoutMs) {
    return fromJson("signal", hostCall(() => hs.awaitSignal(none, optMs(timeoutMs)), (p) => flowError("awaitAnySignal", p)));
  }
  /** Runs the scenario `name` as a nested session and waits for it; returns its assigns. */
  runScenario(name, config = {}, merge = true) {
    const what = `runScenario ${name}`;
    return fromJson(what, hostCall(() => hs.runScenario(name, toJson(config), merge), (p) => flowError(what, p)));
  }

  // ------------------------------------------------------------ HTTP

  /** Sends a request and reads the whole response. An unexpected status is still a Response
   * (see `ok`); only network failures throw RequestError. */
  send(request) {
    const raw = request.toHost();
    return new Response(hostCall(() => hh.send(raw), requestError));
  }

  /** Sends requests in parallel (bounded by the connection cap). One item per request, in
   * order: a Response or the ChaperonError it failed with (returned, not thrown). */
  batch(requests) {
    const out = [];
    const valid = [];
    for (const r of requests) {
      try {
        valid.push(r.toHost());
        out.push(undefined);
      } catch (e) {
        out.push(e);
      }
    }
    const sent = hh.batch(valid);
    let k = 0;
    return out.map((item) => {
      if (item !== undefined) return item;
      const r = sent[k++];
      if (!r) return new Failed("batch: the host returned too few results");
      return r.tag === "ok" ? new Response(r.val) : requestError(r.val);
    });
  }

  /** GET path. */
  get(path) { return this.send(Request.get(path)); }
  /** HEAD path. */
  head(path) { return this.send(Request.head(path)); }
  /** DELETE path. */
  delete(path) { return this.send(Request.delete(path)); }
  /** POST path with a body: a string (text), Uint8Array (bytes), other values (JSON), or null. */
  post(path, body = null) { return this.send(Request.post(path).body(body)); }
  /** PUT path with a body. */
  put(path, body = null) { return this.send(Request.put(path).body(body)); }
  /** PATCH path with a body. */
  patch(path, body = null) { return this.send(Request.patch(path).body(body)); }
  /** POST path with `value` as a JSON body. */
  postJson(path, value) { return this.send(Request.post(path).json(value)); }

  // ------------------------------------------------------------ WebSocket

  connection(name) {
    const c = this.connections.get(name);
    if (!c) throw notConnected(name);
    return c;
  }

  /** Opens the WebSocket connection `name` (default "") to `path` (resolved against
   * base_url, http → ws), replacing an open one of that name. Metric `ws_connect {path}`.
   * Options: `{ name, headers, protocols, timeoutMs, metricName }` (`metricName` groups
   * connections under `ws_connect {metricName}`). */
  wsConnect(path, { name = "", headers = [], protocols = [], timeoutMs, metricName } = {}) {
    const old = this.connections.get(name);
    if (old) {
      this.connections.delete(name);
      dispose(old); // it counts against the session's connection cap
    }
    const options = { metricName: opt(metricName), headers, protocols, timeoutMs: opt(timeoutMs) };
    const c = hostCall(() => hw.Connection.connect(String(path), options), requestError);
    this.connections.set(name, c);
  }

  /** Sends a text message. Metric `ws_send`. Options: `{ name }`. */
  wsSend(text, { name = "" } = {}) {
    const c = this.connection(name);
    hostCall(() => c.sendText(String(text)), requestError);
  }

  /** Sends a binary message (Uint8Array). Metric `ws_send`. */
  wsSendBinary(data, { name = "" } = {}) {
    const c = this.connection(name);
    hostCall(() => c.sendBinary(data instanceof Uint8Array ? data : new Uint8Array(data)), requestError);
  }

  /** Sends `value` as a JSON text message. */
  wsSendJson(value, options) { this.wsSend(toJson(value), options); }

  /** The next message (a Message), waiting at most `timeoutMs` (unset: the load test's receive timeout).
   * Metric `ws_recv`. Options: `{ name, timeoutMs }`. */
  wsRecv({ name = "", timeoutMs } = {}) {
    const c = this.connection(name);
    return Message.fromHost(hostCall(() => c.recv(optMs(timeoutMs)), requestError));
  }

  /** Receives until the text message `expected` arrives, dropping others; the timeout covers
   * the whole wait. Metric `ws_await_recv`. Options: `{ name, timeoutMs }`. */
  wsAwaitRecv(expected, { name = "", timeoutMs } = {}) {
    const c = this.connection(name);
    hostCall(() => c.awaitRecv({ tag: "text", val: String(expected) }, optMs(timeoutMs)), requestError);
  }

  /** Closes the connection (code 1000). Closing one the peer already closed is not an error.
   * Options: `{ name }`. */
  wsClose({ name = "" } = {}) {
    const c = this.connections.get(name);
    if (!c) throw notConnected(name);
    this.connections.delete(name);
    try {
      hostCall(() => c.close(NORMAL_CLOSURE, ""), requestError);
    } catch (e) {
      if (!(e instanceof RequestError && e.kind === "closed")) throw e;
    } finally {
      dispose(c);
    }
  }
}

function collect(what, results) {
  return results.map((r) => {
    if (r.tag !== "ok") throw flowError(what, r.val);
    return fromJson(what, r.val);
  });
}

// ---------------------------------------------------------------------------------- scenarios

/**
 * A load-test scenario: what one virtual user does. Only `run(s)` is required. One object is
 * made per instance (per virtual user), so fields set on `this` are the virtual user's own.
 */
export class Scenario {
  /** Runs once before `run`; the default does nothing. */
  init(s) {}
  /** The scenario body. */
  run(s) { throw new Failed(`${this.constructor.name} does not define run(s)`); }
  /** Runs once after `run`, also after `run` failed; the default does nothing. */
  teardown(s) {}
  /** Runs `fn` with JSON `args` for async children and load-test setup/teardown functions. */
  invoke(s, fn, args) { throw new Failed(`unknown function ${fn}`); }
}

let theSession;
const sessionOf = () => (theSession ??= new Session());

// Runs `call()` and turns its outcome into what the host expects: the value, or a thrown
// `scenario-error` variant, which both engines return as the WIT `err`. Anything else thrown
// out of an export would trap the instance.
function finish(call) {
  const s = sessionOf();
  let value;
  try {
    value = call();
  } catch (e) {
    const reason = s.aborted;
    s.aborted = undefined;
    if (e instanceof Aborted) throw { tag: "aborted", val: e.reason };
    if (reason !== undefined) throw { tag: "aborted", val: reason };
    throw { tag: "failed", val: describeError(e) };
  }
  const reason = s.aborted;
  s.aborted = undefined;
  if (reason !== undefined) throw { tag: "aborted", val: reason };
  return value;
}

/**
 * The component's entry points for `scenario`: a Scenario subclass, or an object with
 * `run(s)` and optionally `init(s)`, `teardown(s)`, `invoke(s, fn, args)`. The build's
 * generated entry module exports them; scenario modules only `export default` the scenario.
 */
export function exportScenario(scenario) {
  let instance;
  const get = () => {
    if (instance === undefined) {
      instance = typeof scenario === "function" ? new scenario() : scenario;
    }
    return instance;
  };
  const method = (name) => {
    const sc = get();
    const f = typeof sc[name] === "function" ? sc[name] : Scenario.prototype[name];
    return f.bind(sc);
  };
  return {
    init: () => finish(() => { method("init")(sessionOf()); }),
    run: () => finish(() => { method("run")(sessionOf()); }),
    teardown: () => finish(() => { method("teardown")(sessionOf()); }),
    invoke: (fn, args) =>
      finish(() => {
        const value = String(args).trim() === "" ? null : fromJson("invoke args", args);
        return toJson(method("invoke")(sessionOf(), fn, value));
      }),
  };
}
