"""Port of Chaperon's ``Scenario.WS.PingPong`` (tutorial part 1): connect a WebSocket, then time
``ping_pong.iterations`` round trips of "ping" → "pong" under the metric ``call ping_pong``.

The Python twin of example-scenarios/pingpong (Rust): the same actions, metrics and counts."""

from chaperon import Scenario, Session, export


class PingPong(Scenario):
    def run(self, s: Session) -> None:
        # Like `config(session, [:ping_pong, :iterations])`: an error names the missing key.
        iterations = s.config("ping_pong.iterations")

        s.ws_connect("/ping/pong")
        # One `call ping_pong` sample per iteration.
        s.repeat_traced("ping_pong", iterations, ping_pong)
        s.log_info(f"PingPong finished after {iterations} iterations")
        s.ws_close()


def ping_pong(s: Session) -> None:
    s.ws_send("ping")
    # Wait until "pong" arrives on the connection (other messages are dropped).
    s.ws_await_recv("pong")


WitWorld = export(PingPong)
