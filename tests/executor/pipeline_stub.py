"""Stand-ins for llama.cpp's ``rpc-server`` and ``llama-server --rpc``, run as real processes by
the agents in the pipeline loopback test; each checks its command line as the agent renders it.

``pipeline_stub.py rpc-server --host H --port P``: listens on H:P (TCP, as rpc-server does).
``pipeline_stub.py llama-server -m FILE --host H --port P --n-gpu-layers 999 --rpc A,B
--tensor-split X,Y,Z --metrics --alias NAME``: refuses to start (exit 2) unless the GGUF file
exists, every ``--rpc`` address accepts a connection and ``--tensor-split`` has one count per
stage; then serves ``/health`` on H:P. Each writes its argv to
``$STUB_RECORD_DIR/<role>-<pid>.json``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def fail(message: str) -> None:
    print(f"pipeline stub: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def record(role: str, argv: list[str]) -> None:
    directory = os.environ.get("STUB_RECORD_DIR")
    if directory:
        path = Path(directory) / f"{role}-{os.getpid()}.json"
        path.write_text(json.dumps({"role": role, "pid": os.getpid(), "argv": argv}))


def options(argv: list[str], flags: set[str], switches: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    words = iter(argv)
    for word in words:
        if word in switches:
            found[word] = ""
        elif word in flags:
            found[word] = next(words, "")
        else:
            fail(f"unexpected argument {word!r} in {argv}")
    missing = (flags | switches) - set(found)
    if missing:
        fail(f"missing {sorted(missing)} in {argv}")
    return found


def rpc_server(argv: list[str]) -> None:
    found = options(argv, {"--host", "--port"}, set())
    record("rpc-server", argv)
    listener = socket.create_server((found["--host"], int(found["--port"])))
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=lambda c=connection: c.recv(1) and None, daemon=True).start()


def llama_server(argv: list[str]) -> None:
    flags = {"-m", "--host", "--port", "--n-gpu-layers", "--rpc", "--tensor-split", "--alias"}
    found = options(argv, flags, {"--metrics"})
    if not Path(found["-m"]).is_file():
        fail(f"no GGUF file at {found['-m']}")
    workers = found["--rpc"].split(",")
    split = found["--tensor-split"].split(",")
    if len(split) != len(workers) + 1 or not all(n.isdigit() and int(n) > 0 for n in split):
        fail(f"--tensor-split {found['--tensor-split']} does not match {len(workers)} workers")
    for worker in workers:
        host, _, port = worker.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except OSError as error:
            fail(f"RPC worker {worker} does not answer: {error}")
    record("llama-server", argv)

    class Health(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            status = 200 if self.path == "/health" else 404
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    ThreadingHTTPServer((found["--host"], int(found["--port"])), Health).serve_forever()


if __name__ == "__main__":
    role, rest = sys.argv[1], sys.argv[2:]
    {"rpc-server": rpc_server, "llama-server": llama_server}[role](rest)
