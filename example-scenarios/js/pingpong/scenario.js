// Port of Chaperon's `Scenario.WS.PingPong` (tutorial part 1): connect a WebSocket, then time
// `ping_pong.iterations` round trips of "ping" → "pong" under the metric `call ping_pong`.
//
// The JavaScript twin of example-scenarios/pingpong (Rust): the same actions, metrics and counts.

import { Scenario } from "chaperon";

export default class PingPong extends Scenario {
  run(s) {
    // Like `config(session, [:ping_pong, :iterations])`: an error names the missing key.
    const iterations = s.config("ping_pong.iterations");

    s.wsConnect("/ping/pong");
    // One `call ping_pong` sample per iteration.
    s.repeatTraced("ping_pong", iterations, pingPong);
    s.logInfo(`PingPong finished after ${iterations} iterations`);
    s.wsClose();
  }
}

function pingPong(s) {
  s.wsSend("ping");
  // Wait until "pong" arrives on the connection (other messages are dropped).
  s.wsAwaitRecv("pong");
}
