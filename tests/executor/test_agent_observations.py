"""The agent scrapes its running replicas every loop and posts a window per replica every
``window_s``, through ``httpx.MockTransport``: kept while the API is away, dropped when refused,
and a replica whose metrics cannot be read costs nothing but its window."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from gridplace.executor.agent import Agent
from gridplace.executor.manifest import DriverKind, Manifest
from gridplace.executor.observe import MetricsError, Observer
from gridplace.specs import Observations
from tests.executor.fakes import FakeRuntime, launcher
from tests.executor.metrics_text import vllm_text
from tests.executor.test_agent_client import FakeApi, assignment, make_agent

MANIFEST = Manifest.model_validate(
    {
        "workloads": {
            "chat": {
                "catalogModel": "llama-3.1-8b",
                "metrics": {
                    "requests": ["vllm:request_success_total"],
                    "promptTokens": ["vllm:prompt_tokens_total"],
                    "outputTokens": ["vllm:generation_tokens_total"],
                    "ttftSeconds": ["vllm:time_to_first_token_seconds"],
                    "running": ["vllm:num_requests_running"],
                },
            }
        }
    }
)


class ObservedApi(FakeApi):
    def __init__(self) -> None:
        super().__init__()
        self.observations: list[Observations] = []
        self.refuse = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/nodes/n1/observations" and not self.down:
            self.calls.append(f"{request.method} {request.url.path}")
            if self.refuse:
                return httpx.Response(422, json={"message": "no"})
            self.observations.append(Observations.model_validate(json.loads(request.content)))
            return httpx.Response(201, json={})
        return super().__call__(request)


class Engine:
    """Each replica's /metrics: one more completed request every scrape (or a 500)."""

    def __init__(self) -> None:
        self.served = 0
        self.broken = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.broken:
            return httpx.Response(500)
        self.served += 1
        text = vllm_text(ttft_s=[0.05] * self.served, stopped=self.served, running=2)
        return httpx.Response(200, text=text)


def observed_agent(tmp_path: Path, api: FakeApi, engine: Engine) -> Agent:
    agent = make_agent(tmp_path, api, FakeRuntime())
    agent.reconciler.launcher = launcher(MANIFEST)
    agent.observer = Observer(
        "n1",
        MANIFEST,
        DriverKind.COMMAND,
        window_s=60,
        http=httpx.Client(transport=httpx.MockTransport(engine)),
        clock=agent.clock,
    )
    return agent


def loops(agent: Agent, count: int, seconds: float = 30) -> None:
    for _ in range(count):
        agent.clock.advance(seconds)  # type: ignore[attr-defined]
        agent.run_once()


def test_each_running_replica_gets_a_window_every_window_s(tmp_path: Path) -> None:
    api, engine = ObservedApi(), Engine()
    api.assignments = [assignment([1])]
    agent = observed_agent(tmp_path, api, engine)
    loops(agent, 2)  # started, then running: the first scrape opens the window
    assert not api.observations
    loops(agent, 2)  # 60 s later it closes
    assert len(api.observations) == 1
    (window,) = api.observations[0].spec.windows
    assert (window.node, window.workload, window.model) == ("n1", "chat", "llama-3.1-8b")
    assert (window.gpu, window.engine.value, window.precision.value) == ("rtx-4090", "vllm", "fp8")
    assert window.end_s - window.start_s == pytest.approx(60)
    assert window.requests == 2 and window.mean_running_batch == pytest.approx(2)
    assert window.ttft is not None and 40 < (window.ttft.p50_ms or 0) <= 60
    loops(agent, 2)
    assert len(api.observations) == 2


def test_windows_wait_out_an_outage_and_are_dropped_when_refused(tmp_path: Path) -> None:
    api, engine = ObservedApi(), Engine()
    api.assignments = [assignment([0])]
    agent = observed_agent(tmp_path, api, engine)
    loops(agent, 4)
    api.down = True
    loops(agent, 4)  # two windows close while the API is away
    api.down = False
    loops(agent, 1)
    assert [len(o.spec.windows) for o in api.observations] == [1, 2]
    api.refuse = True
    loops(agent, 2)
    api.refuse = False
    loops(agent, 2)
    assert [len(o.spec.windows) for o in api.observations] == [1, 2, 1]


def test_a_replica_whose_metrics_fail_is_skipped_and_the_loop_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api, engine = ObservedApi(), Engine()
    api.assignments = [assignment([0])]
    agent = observed_agent(tmp_path, api, engine)
    engine.broken = True
    loops(agent, 6)
    assert not api.observations and "metrics not read: GET" in caplog.text
    assert api.reports[-1]["replicas"][0]["phase"].value == "running"
    engine.broken = False
    loops(agent, 3)  # the window starts again at the next good scrape
    assert len(api.observations) == 1


def test_an_oversized_metrics_page_is_refused_and_an_unknown_model_is_not_observed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    big = httpx.MockTransport(lambda request: httpx.Response(200, content=b"x 1\n" * 2**20 * 2))
    observer = Observer("n1", MANIFEST, DriverKind.COMMAND, http=httpx.Client(transport=big))
    with pytest.raises(MetricsError, match="over"):
        observer.fetch("127.0.0.1:9")
    api, engine = ObservedApi(), Engine()
    api.assignments = [assignment([0])]
    agent = observed_agent(tmp_path, api, engine)
    assert agent.observer is not None
    agent.observer.manifest = Manifest()  # "chat" is no catalog model, and no mapping names one
    loops(agent, 6)
    assert not api.observations and engine.served == 0
    assert caplog.text.count("no catalog model known") == 1


def test_replicas_sharing_a_gpu_report_their_share(tmp_path: Path) -> None:
    api, engine = ObservedApi(), Engine()
    api.assignments = [{**assignment([0]), "gpuShare": 2}, {**assignment([0]), "gpuShare": 2}]
    agent = observed_agent(tmp_path, api, engine)
    loops(agent, 4)
    windows = [w for o in api.observations for w in o.spec.windows]
    assert len(windows) == 2 and {w.gpu_share for w in windows} == {2}
