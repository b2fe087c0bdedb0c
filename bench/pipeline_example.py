"""A 70B model at 4-bit on single-GPU 24 GB nodes: a pipeline in one region, and the same nodes
spread over three regions 50 ms apart, refused for ITL with the network named.

Reproduce::

    .venv/bin/python bench/pipeline_example.py

The whole model's step times, weights, KV cache and reserve come from the performance model
(``predict``, vLLM, int4, RTX 4090, batch 8, 512-token prompts, 1,024 tokens of context;
prefill of one prompt); a stage
takes its share of layers (``gridplace.planner.pipeline_predict``). Links: 1 ms one way and
10 Gbit/s inside a region, 50 ms and 1 Gbit/s between regions; clients 5 ms away.
"""

from __future__ import annotations

from gridplace.planner.perfmodel import NotSupported, predict
from gridplace.planner.pipeline_predict import (
    Link,
    ModelLoad,
    Refusal,
    StageNode,
    plan_pipeline,
)
from gridplace.specs import Precision
from gridplace.specs.catalog import builtin_catalog

MODEL, GPU, BATCH, PROMPT, CONTEXT = "llama-3.1-70b", "rtx-4090", 8, 512, 1024
ITL_TARGET_MS, CLIENT_RTT_MS = 80.0, 5.0


def _link(a: str, b: str) -> Link:
    return Link(1.0, 10.0) if a == b else Link(50.0, 1.0)


def setup() -> tuple[ModelLoad, float, float, float]:
    spec = builtin_catalog().model(MODEL)
    p = predict(
        MODEL, GPU, Precision.INT4, batch=BATCH, prompt_tokens=PROMPT, context_tokens=CONTEXT
    )
    one = predict(MODEL, GPU, Precision.INT4, batch=1, prompt_tokens=PROMPT, context_tokens=CONTEXT)
    assert not isinstance(p, NotSupported), p.reason
    assert not isinstance(one, NotSupported), one.reason
    load = ModelLoad(spec.layers, p.weights_gib, p.kv_cache_gib, p.reserve_gib, spec.hidden_size, 2)
    return load, p.memory_gib, p.decode.total_ms, one.prefill.total_ms  # one prompt's prefill


def main() -> int:
    load, memory, itl, ttft = setup()
    print(
        f"{MODEL} int4 on {GPU}: weights {load.weights_gib:.1f} GiB + KV "
        f"{load.kv_cache_gib:.2f} GiB > {memory:.0f} GiB per node; ITL target {ITL_TARGET_MS:g} ms"
    )
    for title, regions in (
        ("one region", ["eu-west"] * 4),
        ("three regions", ["eu-west", "us-east", "ap-south"]),
    ):
        nodes = [StageNode(f"n{i}", r, 1, memory, itl, ttft) for i, r in enumerate(regions)]
        result = plan_pipeline(
            load,
            nodes,
            _link,
            itl_target_ms=ITL_TARGET_MS,
            batch=BATCH,
            prompt_tokens=PROMPT,
            client_rtt_ms=CLIENT_RTT_MS,
        )
        if isinstance(result, Refusal):
            print(f"{title}: refused: {result.reason}")
            continue
        stages = ", ".join(f"{s.node}[{s.first},{s.last})" for s in result.stages)
        print(
            f"{title}: {len(result.stages)} stages {stages}; ITL {result.itl_ms:.1f} ms, "
            f"TTFT {result.ttft_ms:.0f} ms, {result.tokens_per_s:.0f} tokens/s"
        )
    print("reproduce: .venv/bin/python bench/pipeline_example.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
