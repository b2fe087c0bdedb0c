"""Prometheus text the way vLLM (V1, through ``prometheus_client``) and llama-server write it, from
raw observations: the bucket bounds, labels, ``_created`` samples and HELP/TYPE lines are theirs."""

from __future__ import annotations

from collections.abc import Sequence

VLLM_LABELS = 'engine="0",model_name="chat"'
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)
TTFT_BUCKETS += (7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0)
ITL_BUCKETS += (7.5, 10.0, 20.0, 40.0, 80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0)
E2E_BUCKETS += (60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


def _histogram(name: str, bounds: Sequence[float], values: Sequence[float]) -> list[str]:
    lines = [f"# HELP {name} Histogram of {name}.", f"# TYPE {name} histogram"]
    lines.append(f"{name}_sum{{{VLLM_LABELS}}} {float(sum(values))!r}")
    for bound in bounds:
        count = sum(1 for v in values if v <= bound)
        lines.append(f'{name}_bucket{{engine="0",le="{bound}",model_name="chat"}} {float(count)}')
    lines.append(f'{name}_bucket{{engine="0",le="+Inf",model_name="chat"}} {float(len(values))}')
    lines.append(f"{name}_count{{{VLLM_LABELS}}} {float(len(values))}")
    lines.append(f"{name}_created{{{VLLM_LABELS}}} 1.7e+09")
    return lines


def _counter(name: str, value: float, labels: str = VLLM_LABELS) -> list[str]:
    base = name.removesuffix("_total")
    return [
        f"# HELP {name} Number of {base}.",
        f"# TYPE {name} counter",
        f"{name}{{{labels}}} {float(value)}",
        f"{base}_created{{{labels}}} 1.7e+09",
    ]


def vllm_text(
    ttft_s: Sequence[float] = (),
    itl_s: Sequence[float] = (),
    e2e_s: Sequence[float] = (),
    prompt_tokens: int = 0,
    generation_tokens: int = 0,
    stopped: int = 0,
    length_capped: int = 0,
    running: int = 0,
    itl_name: str = "vllm:inter_token_latency_seconds",
) -> str:
    lines = [
        "# HELP vllm:num_requests_running Number of requests in model execution batches.",
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{{{VLLM_LABELS}}} {float(running)}",
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
        "# TYPE vllm:num_requests_waiting gauge",
        f"vllm:num_requests_waiting{{{VLLM_LABELS}}} 0.0",
    ]
    lines += _counter("vllm:prompt_tokens_total", prompt_tokens)
    lines += _counter("vllm:generation_tokens_total", generation_tokens)
    lines += [
        "# HELP vllm:request_success_total Count of successfully processed requests.",
        "# TYPE vllm:request_success_total counter",
    ]
    for reason, count in (("abort", 0), ("length", length_capped), ("stop", stopped)):
        labels = f'engine="0",finished_reason="{reason}",model_name="chat"'
        lines.append(f"vllm:request_success_total{{{labels}}} {float(count)}")
    lines += _histogram("vllm:time_to_first_token_seconds", TTFT_BUCKETS, ttft_s)
    lines += _histogram(itl_name, ITL_BUCKETS, itl_s)
    lines += _histogram("vllm:e2e_request_latency_seconds", E2E_BUCKETS, e2e_s)
    return "\n".join(lines) + "\n"


def llama_text(
    prompt_tokens: int,
    prompt_s: float,
    predicted: int,
    predicted_s: float,
    decodes: int,
    busy_per_decode: float,
    processing: int = 0,
) -> str:
    """llama-server's ``/metrics`` (``server_task_result_metrics::to_metrics``)."""
    counters = [
        ("prompt_tokens_total", "Number of prompt tokens processed, excluding cached tokens",
         prompt_tokens),
        ("prompt_tokens_cached_total", "Number of prompt tokens reused from the cache", 0),
        ("prompt_seconds_total", "Total time spent processing prompts", prompt_s),
        ("tokens_predicted_total", "Number of generation tokens processed", predicted),
        ("tokens_predicted_seconds_total", "Total time spent generating tokens", predicted_s),
        ("n_decode_total", "Total number of llama_decode() calls", decodes),
        ("n_tokens_max", "Largest observed sequence length (prompt + generation)", 64),
    ]  # fmt: skip
    gauges = [
        ("prompt_tokens_seconds", "Average prompt throughput in tokens/s", 0),
        ("predicted_tokens_seconds", "Average generation throughput in tokens/s", 0),
        ("requests_processing", "Number of requests processing", processing),
        ("requests_deferred", "Number of requests deferred", 0),
        ("n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call",
         busy_per_decode),
    ]  # fmt: skip
    lines = []
    for kind, items in (("counter", counters), ("gauge", gauges)):
        for name, help_text, value in items:
            lines += [
                f"# HELP llamacpp:{name} {help_text}",
                f"# TYPE llamacpp:{name} {kind}",
                f"llamacpp:{name} {value:g}",
            ]
    return "\n".join(lines) + "\n"
