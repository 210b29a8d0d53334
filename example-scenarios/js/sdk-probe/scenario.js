// Exercises the SDK's edges for tests and measurements (not an example to copy).
//
// `probe.mode` picks what `run` does:
// - "idle": waits `probe.delay_ms` (default 1000) in one `delay`; for memory per session.
// - "raise": a plain JavaScript error escapes `run` (must end as guest-error, never a trap).
// - "fail" / "abort" / "abort-caught": Failed, s.abort thrown, s.abort swallowed.
// - "missing-config" / "refused": an SDK error escapes (state error, connection refused).
// - "caught": catches those errors, checks their types and kinds, times a failing traced call
//   and a retry, and completes.

import { Failed, RequestError, Scenario, StateError } from "chaperon";

export default class Probe extends Scenario {
  run(s) {
    const mode = s.configOr("probe.mode", "idle");
    switch (mode) {
      case "idle":
        s.delay(s.configOr("probe.delay_ms", 1000));
        return;
      case "raise": {
        const nothing = undefined;
        nothing.property = 1; // TypeError
        return;
      }
      case "fail":
        throw new Failed("told to fail");
      case "abort":
        throw s.abort("told to abort");
      case "abort-caught":
        try {
          throw s.abort("aborted even though caught");
        } catch {
          return;
        }
      case "missing-config":
        s.config("probe.nothing");
        return;
      case "refused":
        s.wsConnect("ws://127.0.0.1:1/refused");
        return;
      case "caught":
        caught(s);
        return;
      default:
        throw new Failed(`unknown probe.mode ${mode}`);
    }
  }
}

function caught(s) {
  try {
    s.wsConnect("ws://127.0.0.1:1/refused");
    s.check("refused is a RequestError", false);
  } catch (e) {
    s.check("refused is a RequestError", e instanceof RequestError && e.kind === "refused");
  }
  try {
    s.config("probe.nothing");
    s.check("missing config is a StateError", false);
  } catch (e) {
    s.check("missing config is a StateError", e instanceof StateError);
  }
  try {
    s.callTraced("probe_fails", () => {
      throw new Failed("boom");
    });
  } catch {
    // counted as a failed `call probe_fails`
  }
  let attempts = 0;
  const result = s.retryOnError(2, 1, () => {
    attempts += 1;
    if (attempts < 3) throw new Failed("not yet");
    return "done";
  });
  s.check("retry_on_error retries", result === "done" && attempts === 3);
  s.assign("probe.n", 1);
  s.updateAssign("probe.n", (n) => n + 1);
  s.check("assigns round-trip", s.assigned("probe.n") === 2 && s.assigned("probe.none", null) === null);
}
