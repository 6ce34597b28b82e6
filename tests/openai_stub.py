"""A small OpenAI-compatible stub on 127.0.0.1, only for what a real local server cannot be made to do:
rate limiting (429 with Retry-After), a slow first byte, and a stream that breaks mid-way."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class StubBehaviour:
    """What the stub does: mode is ok | ratelimit | fail (answers `status`) | slow | break | endless | garbled
    (log-probabilities without their tokens);
    `key` is required when set."""

    mode: str = "ok"
    reply: str = "stub says hello"
    key: str | None = None
    delay_s: float = 0.0
    retry_after: str = "7"
    status: int = 500
    requests: list[dict] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)  # endless: the client went away


def _handler(behaviour: StubBehaviour):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if behaviour.key and self.headers.get("Authorization") != f"Bearer {behaviour.key}":
                self._json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
                return False
            return True

        def do_GET(self) -> None:
            if not self._authorized():
                return
            if self.path == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": "stub-model", "object": "model",
                                                              "owned_by": "stub-cloud"}]})
            else:
                self._json(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            behaviour.requests.append({"path": self.path, "body": body,
                                       "authorization": self.headers.get("Authorization")})
            if not self._authorized():
                return
            if behaviour.mode == "ratelimit":
                self._json(429, {"error": {"message": "Rate limit reached for requests", "type": "requests"}},
                           {"Retry-After": behaviour.retry_after})
                return
            if behaviour.mode == "fail":
                message = "The model `stub-model` does not exist" if behaviour.status == 404 else "internal error"
                self._json(behaviour.status, {"error": {"message": message}})
                return
            if behaviour.mode == "slow":
                time.sleep(behaviour.delay_s)  # nothing at all until then, not even headers
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            words = behaviour.reply.split(" ")
            if behaviour.mode == "endless":  # a long answer, a word every 20 ms, until the client leaves
                try:
                    while True:
                        event = {"choices": [{"index": 0, "delta": {"content": " more"}, "finish_reason": None}]}
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(0.02)
                except (BrokenPipeError, ConnectionResetError):
                    behaviour.disconnected.set()
                self.close_connection = True
                return
            try:
                for i, word in enumerate(words):
                    if behaviour.mode == "break" and i == 1:
                        self.wfile.flush()
                        self.connection.shutdown(2)  # the remote dies mid-answer
                        return
                    delta = {"content": word if i == 0 else " " + word}
                    event = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    if behaviour.mode == "garbled":
                        event["choices"][0]["logprobs"] = {"content": [{"logprob": -0.5}]}
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                final = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                usage = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": len(words),
                                                  "total_tokens": 5 + len(words)}}
                self.wfile.write(f"data: {json.dumps(final)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a cancel)
            self.close_connection = True

    return Handler


class OpenAIStub:
    """Start with `with OpenAIStub(StubBehaviour(...)) as stub:`; stub.url is its /v1 base URL."""

    def __init__(self, behaviour: StubBehaviour) -> None:
        self.behaviour = behaviour
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(behaviour))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "OpenAIStub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
