"""Observation windows from engine metrics: two scrapes of ``/metrics`` -> one window.

Owns: scraping each serving replica's ``/metrics`` at every agent loop (``Observer``; a window
closes every ``window_s``, 60 s by default), parsing Prometheus text (``prometheus_client``'s
parser, samples summed over label sets), the built-in metric names of vLLM and llama-server (a
command driver's come from its manifest, ``EngineMetrics``), and the difference of two scrapes:
counter deltas (a counter that went down means the engine restarted: the later value is the
delta), latency quantiles interpolated from histogram bucket deltas like Prometheus's
``histogram_quantile``, the mean running batch.
Must not: talk to the API (the agent posts the windows) or fail the agent: a replica whose
``/metrics`` cannot be read is logged and skipped, its window starts again at the next good scrape.

llama-server has no latency histograms and no request counter, so its windows carry the busy
seconds and token counts it does have, and means derived from them:
- ``prefillSeconds`` = delta of ``llamacpp:prompt_seconds_total``: wall time of prompt batches.
  Prefill per token = prefillSeconds / promptTokens (tokens taken from the prompt cache are not
  in either).
- ``decodeSeconds`` = delta of ``llamacpp:tokens_predicted_seconds_total``: each request's
  generation time, added when the request *finishes* and summed over requests, so parallel slots
  count the same wall second once each; ``itl.meanMs`` = decodeSeconds / outputTokens is the mean
  time between a request's tokens, not the engine's step time. A request still generating at the
  window's end counts in the window it finishes in.
- ``meanRunningBatch`` = busy slots per decode call over the window: the server exports the running
  ratio g = busy slots / decode calls since it started, so the window's busy slots are
  g1 * n1 - g0 * n0 over n1 - n0 calls (n = ``llamacpp:n_decode_total``).
- No TTFT, no percentiles, no request count (``requests`` is None).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from gridplace.executor.manifest import DriverKind, EngineMetrics, Manifest
from gridplace.executor.state import Phase, ReplicaRecord
from gridplace.specs import Engine, LatencyQuantiles, ObservationWindow

log = logging.getLogger("gridplace.executor")
DEFAULT_WINDOW_S = 60.0
SCRAPE_TIMEOUT_S = 2.0

MAX_METRICS_BYTES = 4 * 2**20  # a /metrics page larger than this is not read
MAX_LATENCY_MS = 3_600_000.0  # the spec's bound; vLLM's e2e buckets reach beyond it
QUANTILES = {"p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": 0.99}

VLLM_METRICS = EngineMetrics(
    requests=["vllm:request_success_total"],
    prompt_tokens=["vllm:prompt_tokens_total"],
    output_tokens=["vllm:generation_tokens_total"],
    ttft_seconds=["vllm:time_to_first_token_seconds"],
    # vLLM's V1 engine renamed time_per_output_token to inter_token_latency (same buckets).
    itl_seconds=["vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"],
    e2e_seconds=["vllm:e2e_request_latency_seconds"],
    running=["vllm:num_requests_running"],
)
LLAMA_CPP_METRICS = EngineMetrics(
    prompt_tokens=["llamacpp:prompt_tokens_total"],
    output_tokens=["llamacpp:tokens_predicted_total"],
    prefill_seconds=["llamacpp:prompt_seconds_total"],
    decode_seconds=["llamacpp:tokens_predicted_seconds_total"],
    decode_steps=["llamacpp:n_decode_total"],
    busy_slots_per_decode=["llamacpp:n_busy_slots_per_decode"],
)


class MetricsError(ValueError):
    """A ``/metrics`` page that cannot be read as Prometheus text."""


@dataclass(frozen=True)
class Histogram:
    """One histogram summed over its label sets: cumulative counts by upper bound (ascending,
    ``+Inf`` last), and the sum and count of observations."""

    buckets: tuple[tuple[float, float], ...]
    total: float
    count: float


@dataclass(frozen=True)
class Scrape:
    """One read of ``/metrics`` at ``at_s`` (Unix seconds)."""

    at_s: float
    values: Mapping[str, float]  # counter and gauge samples, summed over label sets
    histograms: Mapping[str, Histogram]


def parse_scrape(text: str, at_s: float) -> Scrape:
    """A Prometheus text page -> ``Scrape``; ``MetricsError`` when it is not one."""
    if len(text) > MAX_METRICS_BYTES:
        raise MetricsError(f"/metrics is {len(text)} bytes, over the {MAX_METRICS_BYTES} limit")
    values: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name, value = sample.name, float(sample.value)
                if family.type == "histogram" and name == f"{family.name}_bucket":
                    by_bound = buckets.setdefault(family.name, {})
                    bound = float(sample.labels["le"])
                    by_bound[bound] = by_bound.get(bound, 0.0) + value
                elif family.type == "histogram" and name == f"{family.name}_sum":
                    sums[family.name] = sums.get(family.name, 0.0) + value
                elif not name.endswith("_created"):
                    values[name] = values.get(name, 0.0) + value
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise MetricsError(f"not Prometheus text: {error}") from error
    histograms = {}
    for name, by_bound in buckets.items():
        ordered = tuple(sorted(by_bound.items()))
        if ordered and math.isinf(ordered[-1][0]):
            histograms[name] = Histogram(ordered, sums.get(name, 0.0), ordered[-1][1])
    return Scrape(at_s, values, histograms)


def _first(names: Sequence[str], present: Mapping[str, Any]) -> str | None:
    return next((name for name in names if name in present), None)


def counter_delta(before: Scrape, after: Scrape, names: Sequence[str]) -> float | None:
    """The counter's increase over the window; None when the engine does not export it."""
    name = _first(names, after.values)
    if name is None:
        return None
    end, start = after.values[name], before.values.get(name, 0.0)
    return end - start if end >= start else end  # went down: restarted, counted from zero


def histogram_delta(before: Scrape, after: Scrape, names: Sequence[str]) -> Histogram | None:
    name = _first(names, after.histograms)
    if name is None:
        return None
    end, start = after.histograms[name], before.histograms.get(name)
    if start is None or [b for b, _ in start.buckets] != [b for b, _ in end.buckets]:
        return end  # new, or its buckets changed (a restart with other settings)
    deltas = tuple(
        (b, c1 - c0) for (b, c1), (_, c0) in zip(end.buckets, start.buckets, strict=True)
    )
    if end.count < start.count or any(c < 0 for _, c in deltas):
        return end  # restarted
    return Histogram(deltas, end.total - start.total, end.count - start.count)


def quantile(histogram: Histogram, q: float) -> float | None:
    """The q-quantile by linear interpolation inside the bucket that holds it (Prometheus's
    ``histogram_quantile``: the first bucket starts at 0, a rank in ``+Inf`` gives the highest
    finite bound). None for an empty histogram."""
    total = histogram.buckets[-1][1] if histogram.buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in histogram.buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            if cumulative == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    return lower


def latencies(histogram: Histogram | None) -> LatencyQuantiles | None:
    """ms quantiles and mean of a histogram in seconds; None when nothing was observed."""
    if histogram is None or histogram.count <= 0:
        return None
    values = {key: quantile(histogram, q) for key, q in QUANTILES.items()}
    ms = {key: min(v * 1000, MAX_LATENCY_MS) for key, v in values.items() if v is not None}
    mean = min(max(histogram.total, 0.0) / histogram.count * 1000, MAX_LATENCY_MS)
    return LatencyQuantiles(**ms, mean_ms=mean)


def busy_slots_per_decode(before: Scrape, after: Scrape, metrics: EngineMetrics) -> float | None:
    """llama-server's busy slots per decode call over the window, from its running ratio."""
    ratio, steps = (
        _first(metrics.busy_slots_per_decode, after.values),
        _first(metrics.decode_steps, after.values),
    )
    if ratio is None or steps is None:
        return None
    n1, g1 = after.values[steps], after.values[ratio]
    n0, g0 = before.values.get(steps, 0.0), before.values.get(ratio, 0.0)
    if n1 < n0:
        n0 = g0 = 0.0  # restarted
    if n1 == n0:
        return None
    return max(0.0, (g1 * n1 - g0 * n0) / (n1 - n0))


@dataclass(frozen=True)
class Identity:
    """What the window is about (the spec's identifying fields)."""

    node: str
    workload: str
    model: str
    gpu: str
    precision: str
    engine: Engine
    tensor_parallel: int = 1
    gpu_share: int = 1


def _count(value: float | None) -> int | None:
    return None if value is None else max(0, round(value))


def observation_window(
    identity: Identity,
    before: Scrape,
    after: Scrape,
    metrics: EngineMetrics,
    running_samples: Sequence[float] = (),
) -> ObservationWindow:
    """The window from ``before`` to ``after``. ``running_samples``: the running gauge read at
    each scrape inside the window (its mean is the mean running batch where the engine has no
    busy-slot counter)."""
    prompt = counter_delta(before, after, metrics.prompt_tokens)
    output = counter_delta(before, after, metrics.output_tokens)
    decode_seconds = counter_delta(before, after, metrics.decode_seconds)
    itl = latencies(histogram_delta(before, after, metrics.itl_seconds))
    if itl is None and decode_seconds is not None and output:
        itl = LatencyQuantiles(mean_ms=min(decode_seconds / output * 1000, MAX_LATENCY_MS))
    batch = busy_slots_per_decode(before, after, metrics)
    if batch is None and running_samples:
        batch = sum(running_samples) / len(running_samples)
    return ObservationWindow(
        node=identity.node,
        workload=identity.workload,
        model=identity.model,
        gpu=identity.gpu,
        precision=identity.precision,
        engine=identity.engine,
        tensor_parallel=identity.tensor_parallel,
        gpu_share=identity.gpu_share,
        start_s=before.at_s,
        end_s=after.at_s,
        requests=_count(counter_delta(before, after, metrics.requests)),
        prompt_tokens=_count(prompt) or 0,
        output_tokens=_count(output) or 0,
        ttft=latencies(histogram_delta(before, after, metrics.ttft_seconds)),
        itl=itl,
        e2e=latencies(histogram_delta(before, after, metrics.e2e_seconds)),
        prefill_seconds=counter_delta(before, after, metrics.prefill_seconds),
        decode_seconds=decode_seconds,
        decode_steps=_count(counter_delta(before, after, metrics.decode_steps)),
        mean_running_batch=batch,
    )


def _engine_of(
    kind: DriverKind, metrics: EngineMetrics | None
) -> tuple[Engine, EngineMetrics] | None:
    if kind is DriverKind.VLLM:
        return Engine.VLLM, metrics or VLLM_METRICS
    if kind is DriverKind.LLAMA_CPP:
        return Engine.LLAMA_CPP, metrics or LLAMA_CPP_METRICS
    return (metrics.engine, metrics) if metrics is not None else None


@dataclass
class _Open:
    """A replica's window under way: its first scrape and the running gauge read since."""

    start: Scrape
    running: list[float] = field(default_factory=list)


class Observer:
    """Scrapes the serving replicas at every call of ``sample`` and returns the windows that
    closed. A command-driver replica without a ``metrics`` mapping in the manifest, or a workload
    with no known catalog model, is not observed (logged once)."""

    def __init__(
        self,
        node: str,
        manifest: Manifest,
        default_driver: DriverKind,
        window_s: float = DEFAULT_WINDOW_S,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.manifest = manifest
        self.default_driver = default_driver
        self.window_s = window_s
        self.clock = clock
        self._http = http or httpx.Client(timeout=SCRAPE_TIMEOUT_S)
        self._open: dict[str, _Open] = {}
        self._told: set[str] = set()

    def close(self) -> None:
        self._http.close()

    def _once(self, key: str, message: str, *args: object) -> None:
        if key not in self._told:
            self._told.add(key)
            log.warning(message, *args)

    def fetch(self, endpoint: str) -> str:
        """The ``/metrics`` page, at most ``MAX_METRICS_BYTES``; ``MetricsError`` otherwise."""
        url = f"http://{endpoint}/metrics"
        try:
            with self._http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise MetricsError(f"GET {url}: HTTP {response.status_code}")
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_METRICS_BYTES:
                        raise MetricsError(f"GET {url}: over {MAX_METRICS_BYTES} bytes")
        except httpx.HTTPError as error:
            raise MetricsError(f"GET {url}: {error}") from error
        return body.decode("utf-8", errors="replace")

    def _identity(
        self, record: ReplicaRecord, gpu_models: Sequence[str]
    ) -> tuple[Identity, EngineMetrics] | None:
        spec = record.spec
        model = self.manifest.catalog_model_for(spec.workload)
        if model is None:
            self._once(
                f"model:{spec.workload}",
                "workload %s: no catalog model known (set catalogModel in the manifest); "
                "its replicas are not observed",
                spec.workload,
            )
            return None
        gpus = [gpu_models[g] for g in spec.gpus if g < len(gpu_models)]
        if not gpus:
            return None
        entry = self.manifest.entry(spec.workload)
        found = _engine_of(entry.driver or self.default_driver, entry.metrics)
        if found is None:
            self._once(
                f"metrics:{spec.workload}",
                "workload %s: the command driver has no 'metrics' mapping in the manifest; "
                "its replicas are not observed",
                spec.workload,
            )
            return None
        engine, metrics = found
        identity = Identity(
            self.node, spec.workload, model, gpus[0], spec.precision, engine, spec.tensor_parallel,
            spec.gpu_share,
        )  # fmt: skip
        return identity, metrics

    def sample(
        self, records: Sequence[ReplicaRecord], gpu_models: Sequence[str]
    ) -> list[ObservationWindow]:
        """Scrape every running or draining replica; the windows that closed with this scrape.
        ``gpu_models``: the catalog GPU id of each assignment GPU index."""
        serving = {
            r.replica_id: r
            for r in records
            # A pipeline's windows would be booked on the first stage's GPUs alone: not observed.
            if r.endpoint and r.phase in SERVING and not r.spec.pipeline
        }
        for gone in set(self._open) - set(serving):
            del self._open[gone]
        windows = []
        for replica_id, record in serving.items():
            known = self._identity(record, gpu_models)
            if known is None or record.endpoint is None:
                continue
            identity, metrics = known
            try:
                scrape = parse_scrape(self.fetch(record.endpoint), self.clock())
            except MetricsError as error:
                log.warning("replica %s: metrics not read: %s", replica_id, error)
                self._open.pop(replica_id, None)
                continue
            running = _first(metrics.running, scrape.values)
            opened = self._open.get(replica_id)
            if opened is None:
                self._open[replica_id] = _Open(scrape)
                continue
            if running is not None:
                opened.running.append(scrape.values[running])
            if scrape.at_s - opened.start.at_s < self.window_s:
                continue
            try:
                windows.append(
                    observation_window(identity, opened.start, scrape, metrics, opened.running)
                )
            except ValidationError as error:  # an engine's numbers outside the spec's bounds
                log.warning("replica %s: window not valid: %s", replica_id, error)
            self._open[replica_id] = _Open(scrape)
        return windows


SERVING = (Phase.RUNNING, Phase.DRAINING)
