"""Real loopback sockets for the prober tests: a listener, a closed port and a blackhole.

Nothing here sends a packet beyond 127.0.0.1.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager

LOOPBACK = "127.0.0.1"


@contextmanager
def listening_port() -> Iterator[int]:
    """A port that completes handshakes: the kernel accepts into a deep backlog (no accept())."""
    server = socket.socket()
    server.bind((LOOPBACK, 0))
    server.listen(128)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@contextmanager
def closed_port() -> Iterator[int]:
    """A port nothing listens on: connects are refused at once (RST)."""
    probe = socket.socket()
    probe.bind((LOOPBACK, 0))
    port = probe.getsockname()[1]
    probe.close()  # bound, never listened: the port is free again, and closed
    yield port


@contextmanager
def blackholed_port() -> Iterator[int]:
    """A port whose SYNs are silently dropped: a listener with backlog 0 and a full accept
    queue, so Linux drops further SYNs and connects hang until their timeout. This is a true
    blackhole on loopback, without touching routes or sending traffic anywhere else.
    """
    server = socket.socket()
    server.bind((LOOPBACK, 0))
    server.listen(0)
    address = server.getsockname()
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):  # the queue holds backlog + 1 = 1 connection; stop at the first hang
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            filler.connect_ex(address)
            _, writable, _ = select.select([], [filler], [], 0.2)
            if not writable:
                break
        else:
            raise RuntimeError("could not fill the accept queue: no blackhole on this kernel")
        yield address[1]
    finally:
        for filler in fillers:
            filler.close()
        server.close()
