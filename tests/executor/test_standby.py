"""Warm standbys on the node: fetched only once the assigned replicas run, never evicting the
weights of an assigned replica (or of a standby already held): one that would need their space is
skipped and reported; the agent reports every standby's state to the API."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx

from gridplace.executor.agent import Agent, AgentConfig
from gridplace.executor.cache import Prewarmer, WeightCache
from gridplace.executor.client import ApiClient
from gridplace.executor.manifest import Manifest, WeightSource, WorkloadEntry
from gridplace.executor.reconcile import Reconciler
from gridplace.executor.standby import StandbyKeeper
from gridplace.executor.state import StateFile
from gridplace.hal.fake import FakeBackend, load_fleet
from gridplace.hal.inventory import NodeOptions
from gridplace.specs.plan import Prewarm
from tests.executor.fakes import Clock, FakeRuntime, config, launcher, ports
from tests.executor.test_agent_client import FLEET, FakeApi, assignment


def weights(tmp_path: Path, name: str, size: int = 1000) -> WeightSource:
    data = (name.encode() * size)[:size]
    (tmp_path / name).write_bytes(data)
    return WeightSource(
        source=str(tmp_path / name), sha256=hashlib.sha256(data).hexdigest(), size_bytes=size
    )


def standby(workload: str, level: str = "disk", node: str = "n1") -> Prewarm:
    return Prewarm.model_validate(
        {"workload": workload, "node": node, "gpus": [1], "precision": "fp8", "level": level,
         "weightsGiB": 1.0, "costPerHour": 0.0}
    )  # fmt: skip


class Node:
    """A cache of 2,500 bytes, a synchronous pre-warmer and weights of 1,000 bytes each."""

    def __init__(self, tmp_path: Path, names: tuple[str, ...] = ("chat", "s1", "s2")) -> None:
        self.clock = Clock()
        self.cache = WeightCache(tmp_path / "cache", 2500, clock=self.clock)
        self.prewarmer = Prewarmer(self.cache, background=False)
        self.sources = {name: weights(tmp_path, name) for name in names}
        self.keeper = StandbyKeeper(lambda workload, _: self.sources.get(workload), self.prewarmer)

    def held(self) -> set[str]:
        by_sha = {s.sha256: name for name, s in self.sources.items()}
        return {by_sha[e.sha256] for e in self.cache.entries()}

    def states(self, entries: list[Prewarm], running: bool = True) -> list[tuple[str, str]]:
        pinned = [self.sources["chat"].sha256]
        items = self.keeper.step(entries, running, pinned)
        return [(item["workload"], item["state"]) for item in items]


def test_standbys_wait_for_the_assigned_replicas_then_fetch(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.cache.fetch(node.sources["chat"])
    assert node.states([standby("s1")], running=False) == [("s1", "waiting")]
    assert node.held() == {"chat"}
    assert node.states([standby("s1")]) == [("s1", "ready")]
    assert node.held() == {"chat", "s1"}


def test_a_full_cache_skips_the_standby_and_keeps_the_assigned_weights(tmp_path: Path) -> None:
    node = Node(tmp_path, ("chat", "s1", "s2", "old"))
    for name in ("chat", "old"):
        node.cache.fetch(node.sources[name])
        node.clock.advance(10)
    # "old" is nobody's: s1 may take its place; "chat" is assigned here: it stays.
    assert node.states([standby("s1")]) == [("s1", "ready")]
    assert node.held() == {"chat", "s1"}
    # s2 would need the space of the assigned replica's weights or of s1: skipped, reported.
    node.clock.advance(10)
    node.cache.get(node.sources["s1"])  # s1 the most recent: chat would go first under LRU
    items = node.keeper.step([standby("s1"), standby("s2")], True, [node.sources["chat"].sha256])
    assert [(i["workload"], i["state"]) for i in items] == [("s1", "ready"), ("s2", "skipped")]
    assert "1000 bytes do not fit" in items[1]["message"]
    assert node.held() == {"chat", "s1"}


def test_vram_standbys_are_held_on_disk_and_unknown_weights_are_unavailable(
    tmp_path: Path,
) -> None:
    node = Node(tmp_path)
    items = node.keeper.step([standby("s1", "vram"), standby("nobody")], True, [])
    assert [(i["workload"], i["level"], i["state"]) for i in items] == [
        ("s1", "vram", "ready"),
        ("nobody", "disk", "unavailable"),
    ]
    assert "held on disk" in items[0]["message"]


def test_a_failed_standby_fetch_is_the_standbys_not_the_nodes(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.sources["s1"] = WeightSource(source=str(tmp_path / "missing"), sha256="1" * 64)
    items = node.keeper.step([standby("s1")], True, [])
    assert items[0]["state"] == "failed" and "missing" in items[0]["message"]


class StandbyApi(FakeApi):
    """The fake API of the agent tests, whose assignments answer lists standbys too."""

    def __init__(self, prewarm: list[dict[str, Any]]) -> None:
        super().__init__()
        self.prewarm = prewarm

    def __call__(self, request: httpx.Request) -> httpx.Response:
        response = super().__call__(request)
        if request.url.path.endswith("/assignments") and response.status_code == 200:
            body = {**response.json(), "prewarm": self.prewarm}
            return httpx.Response(200, json=body, headers=response.headers)
        return response


def test_the_agent_reports_its_standbys_after_its_replicas_run(tmp_path: Path) -> None:
    sources = {"chat": weights(tmp_path, "chat"), "s1": weights(tmp_path, "s1")}
    manifest = Manifest(
        workloads={name: WorkloadEntry(weights=source) for name, source in sources.items()}
    )
    cache = WeightCache(tmp_path / "cache", 10_000)
    prewarmer = Prewarmer(cache, background=False)
    api = StandbyApi([standby("s1").to_yaml_dict()])
    api.assignments = [assignment([0])]
    clock = Clock()
    backend = FakeBackend(load_fleet(FLEET), clock=clock)
    backend.open()
    reconciler = Reconciler(
        StateFile(tmp_path / "s.db"), FakeRuntime(), launcher(manifest), config(tmp_path),
        prewarmer, clock=clock, port_allocator=ports(),  # type: ignore[arg-type]
    )  # fmt: skip
    agent = Agent(
        AgentConfig("n1", 1.0, NodeOptions(region="eu-west", provider="p1", price_per_hour=0.5)),
        ApiClient("http://api", "n1", "gpn.x.y", transport=httpx.MockTransport(api)),
        backend, reconciler, clock=clock,
        standbys=StandbyKeeper(manifest.weights_for, prewarmer),
    )  # fmt: skip
    agent.run_once()  # the replica starts; its standby waits
    first = api.reports[-1]["standbys"]
    assert [(s["workload"], s["state"].value) for s in first] == [("s1", "waiting")]
    assert cache.get(sources["s1"]) is None
    agent.run_once()
    agent.run_once()
    last = api.reports[-1]
    assert [r["phase"].value for r in last["replicas"]] == ["running"]
    assert [(s["workload"], s["state"].value) for s in last["standbys"]] == [("s1", "ready")]
    assert cache.get(sources["s1"]) is not None
