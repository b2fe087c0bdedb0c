"""A small OpenAI-compatible inference server stub, run as a real process by the agent's
``command`` driver in tests.

Serves ``/health``, ``/v1/models``, ``POST /v1/completions`` (answers after ``--delay-s``),
``/metrics`` (vLLM's in-flight gauges, so the agent can drain it) and ``POST /drain`` (new
completions get 503 from then on). ``--startup-delay-s`` keeps it unhealthy (connection refused)
for a while, like a server loading weights. With ``STUB_REGISTRY`` set, it writes
``<registry>/<pid>.json`` (pid, port, workload, replica id) so tests can count live servers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class State:
    def __init__(self, model: str, delay_s: float) -> None:
        self.model = model
        self.delay_s = delay_s
        self.inflight = 0
        self.draining = False
        self.lock = threading.Lock()


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"status": "ok"})
            elif self.path == "/v1/models":
                self._send(
                    200, {"object": "list", "data": [{"id": state.model, "object": "model"}]}
                )
            elif self.path == "/metrics":
                with state.lock:
                    running = state.inflight
                text = (
                    "# TYPE vllm:num_requests_running gauge\n"
                    f'vllm:num_requests_running{{model_name="{state.model}"}} {running}.0\n'
                    f'vllm:num_requests_waiting{{model_name="{state.model}"}} 0.0\n'
                )
                self._send(200, text, "text/plain")
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path == "/drain":
                state.draining = True
                self._send(200, {"draining": True})
                return
            if self.path != "/v1/completions":
                self._send(404, {"error": "not found"})
                return
            if state.draining:
                self._send(503, {"error": "draining"})
                return
            with state.lock:
                state.inflight += 1
            try:
                request = json.loads(raw or b"{}")
                time.sleep(float(request.get("delay_s", state.delay_s)))
                self._send(
                    200,
                    {
                        "object": "text_completion",
                        "model": state.model,
                        "choices": [{"index": 0, "text": " ok", "finish_reason": "stop"}],
                        "pid": os.getpid(),
                    },
                )
            finally:
                with state.lock:
                    state.inflight -= 1

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="stub")
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--startup-delay-s", type=float, default=0.0)
    args = parser.parse_args()
    registry = os.environ.get("STUB_REGISTRY")
    if registry:
        record = {
            "pid": os.getpid(),
            "port": args.port,
            "model": args.model,
            "replica": os.environ.get("GRIDPLACE_REPLICA_ID"),
        }
        Path(registry, f"{os.getpid()}.json").write_text(json.dumps(record))
    time.sleep(args.startup_delay_s)
    server = ThreadingHTTPServer(
        (args.host, args.port), make_handler(State(args.model, args.delay_s))
    )
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
