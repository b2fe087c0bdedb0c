"""``bench/api_load.py``'s generator processes: the agents' sharding, the merge of their results,
the lean HTTP client they send with, and the CPU accounting of a process tree (no gridplace
server: a few lines of asyncio answer the client)."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections import Counter

import pytest

from tests.bench_scripts import load_bench

load = load_bench("api_load")


def _args(procs: int, connections: int = 64) -> argparse.Namespace:
    return argparse.Namespace(
        procs=procs,
        schedule=5.0,
        duration=60.0,
        connections=connections,
        plan_time_limit=3.0,
        client="streams",
    )


@pytest.mark.parametrize(("agents", "procs"), [(10, 3), (7, 7), (1000, 2), (5, 1)])
def test_every_agent_is_in_one_shard_with_its_own_token(agents: int, procs: int) -> None:
    nodes = load.nodes_for(agents)
    tokens = [f"token-{i}" for i in range(agents)]
    jobs = load.shards("http://x", nodes, tokens, _args(procs), 123.0, plans=2, warmup_s=45.0)
    assert len(jobs) == procs
    pairs = [pair for job in jobs for pair in zip(job.names, job.tokens, strict=True)]
    names = [node["metadata"]["name"] for node in nodes]
    assert sorted(pairs) == sorted(zip(names, tokens, strict=True))  # each once, token kept
    assert max(len(j.names) for j in jobs) - min(len(j.names) for j in jobs) <= 1
    assert all(len(j.throttles) == len(j.names) for j in jobs)
    assert [j.plans for j in jobs] == [2] + [0] * (procs - 1)  # submitted once, not per process
    assert {(j.start_at, j.warmup_s, j.admin_token) for j in jobs} == {
        (123.0, 45.0, load.ADMIN_TOKEN)
    }
    assert len({j.seed for j in jobs}) == procs  # phases differ between processes


def test_throttles_follow_their_agents_across_shards() -> None:
    nodes = load.nodes_for(300)
    tokens = [str(i) for i in range(300)]
    one = load.shards("http://x", nodes, tokens, _args(1), 0.0, plans=0, warmup_s=0.0)[0]
    of = dict(zip(one.names, one.throttles, strict=True))
    for job in load.shards("http://x", nodes, tokens, _args(4), 0.0, plans=0, warmup_s=0.0):
        assert dict(zip(job.names, job.throttles, strict=True)) == {n: of[n] for n in job.names}


def test_connections_are_split_over_the_processes() -> None:
    nodes = load.nodes_for(10)
    tokens = [str(i) for i in range(10)]
    assert [j.connections for j in load.shards("u", nodes, tokens, _args(4, 64), 0, 0, 0)] == [
        16
    ] * 4
    assert [j.connections for j in load.shards("u", nodes, tokens, _args(3, 2), 0, 0, 0)] == [1] * 3


def _part(latencies: list[float], statuses: dict[tuple[str, int], int], window: float) -> object:
    part = load.Results()
    part.latencies_s["telemetry"].extend(latencies)
    part.statuses.update(statuses)
    part.slips_s.extend(x / 10 for x in latencies)
    part.window_s = window
    part.generators.append(load.Generator(cpu_per_s=window / 100, max_rss_mib=50.0))
    return part


def test_merge_keeps_every_latency_status_and_process() -> None:
    fast = _part([0.001] * 98, {("telemetry", 204): 97, ("telemetry", 503): 1}, 60.0)
    slow = _part([0.5, 0.6], {("telemetry", 204): 2}, 61.5)
    merged = load.merge([fast, slow])
    assert len(merged.latencies_s["telemetry"]) == 100
    # The p99 of all 100, not of either part (the fast one alone has 1 ms).
    assert load.percentile_ms(merged.latencies_s["telemetry"], 0.99) == pytest.approx(500.0)
    assert merged.statuses == Counter({("telemetry", 204): 99, ("telemetry", 503): 1})
    assert merged.window_s == 61.5  # side by side: the longest window, not the sum
    assert [g.cpu_per_s for g in merged.generators] == [0.6, 0.615]
    assert len(merged.slips_s) == 100


async def _serve(answers: list[bytes], seen: list[bytes]) -> tuple[asyncio.Server, str]:
    """A server that reads one request per answer in turn; an answer ending the connection
    (b"") closes it without a word."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while answers:
            head = await reader.readuntil(b"\r\n\r\n")
            length = [
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ]
            seen.append(head + (await reader.readexactly(length[0]) if length else b""))
            answer = answers.pop(0)
            if not answer:
                writer.close()
                return
            writer.write(answer)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def test_wire_reads_lengths_chunks_and_etags_and_reopens_a_closed_connection() -> None:
    answers = [
        b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: "7"\r\n\r\n{"a":',
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b'HTTP/1.1 304 Not Modified\r\netag: "7"\r\n\r\n',
        b"",  # the server closed the idle connection: sent again on a new one
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ]
    seen: list[bytes] = []

    async def run() -> list[tuple[int, str | None]]:
        server, url = await _serve(answers, seen)
        async with server:
            wire = load.Wire(url)
            got = [
                await wire.request("GET", "/a", {"If-None-Match": '"6"'}),
                await wire.request("GET", "/b", {}),
                await wire.request("GET", "/c", {}),
                await wire.request("POST", "/d", {"Prefer": "return=minimal"}, b'{"x": 1}'),
            ]
            await wire.close()
            return got

    assert asyncio.run(run()) == [(200, '"7"'), (200, None), (304, '"7"'), (204, None)]
    assert seen[0].startswith(b"GET /a HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b'If-None-Match: "6"' in seen[0]
    assert seen[3] == seen[4]  # the same request, repeated once
    assert seen[4].endswith(b'Content-Length: 8\r\n\r\n{"x": 1}')


def test_wire_answers_zero_when_no_server_answers() -> None:
    async def run() -> tuple[int, str | None]:
        server, url = await _serve([], [])
        server.close()  # nothing listens there any more
        await server.wait_closed()
        answer: tuple[int, str | None] = await load.Wire(url).request("GET", "/", {})
        return answer

    assert asyncio.run(run()) == (0, None)


def test_tree_cpu_counts_a_child_process() -> None:
    before = load.tree_cpu_s(os.getpid())
    busy = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", busy], check=True)  # reaped: its parent's cutime
    assert load.tree_cpu_s(os.getpid()) - before >= 0.25
