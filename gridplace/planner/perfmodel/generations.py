"""Engine generations: how an older release of an engine differs from the one ``engines`` and the
efficiency table describe, so that measurements taken on it can be predicted (and judged) and a
node that still runs it is not booked at today's speed.

Owns: the ``EngineGeneration`` record, the built-in generations and how a generation changes an
engine's traits. Must not: time kernels (``roofline``) or fit anything (the figures marked fitted
come from ``bench/calibrate_perfmodel_stack.py``, which prints them with their provenance).

Without a generation a prediction describes the engine as the catalog runs it today (CUDA graphs
for decode, custom all-reduce for small messages, chunked prefill). A generation replaces:

- ``eager``: no CUDA graphs, every op launched from the host (``EngineTraits.eager_op_us``; the
  launch-bound step is max(GPU time, launch time)).
- ``step_overhead_ms``: host time per forward step the GPU waits for (scheduling, input
  preparation, sampling and the driver-to-worker call), not overlapped with the GPU.
- ``sequence_overhead_us``: host time per running sequence per decode step (per-sequence Python
  in the scheduler, input preparation, sampler output and incremental detokenisation). Engines
  of 2023 kept this per-sequence bookkeeping in Python; it is what makes their decode step grow
  with the batch long before the GPU does.
- ``prefill_chunk_tokens``: None keeps the engine's chunk; engines before chunked prefill ran a
  whole batch of prompts in one step.
- ``allreduce_bandwidth_share``: share of the link's all-reduce bandwidth (``hardware.Link``)
  the generation's tensor-parallel all-reduce reaches.
- ``weight_bandwidth_share``: share of today's memory-bound weight-multiply efficiency (the
  table's gemm ``bandwidth``) its kernels reach.

Host time also depends on the host CPU, which the planner does not see: ``Predictor`` takes a
``host_time_factor`` (1.0 = the host the priors were measured on) that scales every host term
(launch, step and sequence overheads) of any engine, with or without a generation.

vllm-2023 (vLLM 0.1-0.2 as run in 2023: eager, Ray workers per GPU, NCCL all-reduce, no chunked
prefill, Python sampler and detokeniser). Fitted on the Splitwise measurements
(github.com/Mutinifni/splitwise-sim ``data/perf_model.csv``, MIT: Llama-2-70B at tp 2/4/8 and
BLOOM-176B at tp 8, fp16, on DGX-A100 and DGX-H100), every row except the power-capped ones and
the three prompt times faster than peak FLOPS, by ``bench/calibrate_perfmodel_stack.py``
(coordinate search minimising the mean |log(predicted / measured)|, eager_op_us held at its
prior; command in that script; the fit starts from today's vLLM figures). What it found (host
factor 1.0 = the host of the 30 us/op eager prior), and why each term is physical:
- decode at tp 4 and 8 is no faster than the host allows: ~30 ms (DGX-H100) and ~45 ms
  (DGX-A100) per step whatever the tp, while the GPU needs 12-28 ms: launch-bound. The same
  software on the two machines differs by their host CPUs: fitted host factors 0.68 (DGX-H100)
  and 1.02 (DGX-A100), a property of the machine, not of the GPU.
- a step costs 14.5 ms of host time (x host factor) on top of its GPU time even when GPU-bound
  (tp 2): the step overhead.
- 336 us (x host factor) per running sequence per decode step: decode grows by ~0.3-0.4 ms per
  sequence up to batch 64 where the GPU time grows by a tenth of that.
- prefill at 4k-32k tokens is ~1.5-2.3x what compute allows at tp 8 and scales badly with tp:
  its all-reduces (two per layer of tokens x hidden x 2 bytes) reach 0.221 of the bandwidth NCCL
  reaches over NVLink today (nccl-tests bus bandwidth). Fitted on one machine alone it comes
  out alike on both (0.213 on DGX-H100 rows, 0.236 on DGX-A100 rows: the leave-one-GPU-out
  folds of the accuracy benchmark), so it belongs to the stack, not to one machine; why that
  stack's all-reduce was this slow the data cannot say.
- weight multiplies: the fit on all rows keeps today's memory-bound efficiency (share 1.0);
  folds fitted on part of the rows find 0.83-1.0.
The figures are held out in ``bench/perfmodel_accuracy.py`` (fitted on one model, judged on the
other; and fitted on one GPU, judged on the other).

vllm-2024 (vLLM's V0 engine of mid-2024, 0.5-0.6, as AMD's ROCm builds ran it: HIP/CUDA graphs
for decode, but every decode step synchronous with the host). Not fitted:
vLLM's multi-step scheduling RFC (vllm-project/vllm#6854, July 2024) measured 5-13 ms of GPU
bubble per decode step while the host copied the sampled tokens back, turned them into Python
objects, prepared the next step's inputs and ran the scheduler, the bubble growing with the running
batch. Booked as 5 ms per step (a small batch) plus the rest over vLLM's default 256 running
sequences (max_num_seqs): (13 - 5) ms / 256 = 31 us per sequence. Today's engine overlaps this work
with the GPU (async scheduling, 1.5 ms per step, ``engines``).

llama.cpp generations carry the engine settings of their release (``options``; see
``llamacpp``): llama.cpp-2024-01 (the builds of llama.cpp's January 2024 benchmark threads: no
CUDA graphs, no flash attention, F16 conversion + cuBLAS prompt path) and llama.cpp-2024-05
(CUDA graphs since April 2024, #6766; flash attention available but off by default; still the
cuBLAS prompt path). Today's llama.cpp is ``llamacpp.TODAY``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gridplace.planner.perfmodel.engines import EngineTraits
from gridplace.specs.common import Engine, EngineOptions, PromptKernels


@dataclass(frozen=True, slots=True)
class EngineGeneration:
    """What one older release of ``engine`` does differently (see the module docstring)."""

    name: str
    engine: Engine
    eager: bool
    step_overhead_ms: float
    sequence_overhead_us: float
    prefill_chunk_tokens: int | None
    allreduce_bandwidth_share: float
    weight_bandwidth_share: float
    options: EngineOptions | None = None  # the release's default engine settings

    def __post_init__(self) -> None:
        for share in (self.allreduce_bandwidth_share, self.weight_bandwidth_share):
            if not 0.0 < share <= 1.0:
                raise ValueError(f"{self.name}: a bandwidth share must be in (0, 1], not {share}")
        if self.step_overhead_ms < 0 or self.sequence_overhead_us < 0:
            raise ValueError(f"{self.name}: overheads must be >= 0")

    def traits(self, base: EngineTraits) -> EngineTraits:
        """``base`` (the engine as it is today) with this generation's host behaviour."""
        if base.engine is not self.engine:
            raise ValueError(f"generation {self.name} is of {self.engine.value}, not {base.engine}")
        return dataclasses.replace(
            base,
            step_overhead_ms=self.step_overhead_ms,
            sequence_overhead_us=self.sequence_overhead_us,
            prefill_chunk_tokens=self.prefill_chunk_tokens or base.prefill_chunk_tokens,
        )


# One step holds a whole batch of prompts: vLLM before chunked prefill (0.4) scheduled prompts
# up to max_num_batched_tokens, which had to cover the longest prompt; 2**20 never binds.
UNCHUNKED_TOKENS = 2**20

VLLM_2023 = EngineGeneration(
    name="vllm-2023",
    engine=Engine.VLLM,
    eager=True,
    # Fitted (bench/calibrate_perfmodel_stack.py, all Splitwise rows; see the module docstring).
    step_overhead_ms=14.5,
    sequence_overhead_us=336.0,
    prefill_chunk_tokens=UNCHUNKED_TOKENS,
    allreduce_bandwidth_share=0.221,
    weight_bandwidth_share=1.0,
)

VLLM_2024 = EngineGeneration(
    name="vllm-2024",
    engine=Engine.VLLM,
    eager=False,
    # vLLM #6854: 5-13 ms of host bubble per decode step (see the module docstring).
    step_overhead_ms=5.0,
    sequence_overhead_us=(13.0 - 5.0) * 1e3 / 256,
    prefill_chunk_tokens=None,
    allreduce_bandwidth_share=1.0,
    weight_bandwidth_share=1.0,
)


def _llama_cpp(name: str, *, cuda_graphs: bool) -> EngineGeneration:
    options = EngineOptions(
        flash_attention=False,
        ubatch_tokens=512,
        cuda_graphs=cuda_graphs,
        prompt_kernels=PromptKernels.CUBLAS,
    )
    return EngineGeneration(
        name=name,
        engine=Engine.LLAMA_CPP,
        eager=not cuda_graphs,
        step_overhead_ms=1.0,
        sequence_overhead_us=0.0,
        prefill_chunk_tokens=None,
        allreduce_bandwidth_share=1.0,
        weight_bandwidth_share=1.0,
        options=options,
    )


LLAMA_CPP_2024_01 = _llama_cpp("llama.cpp-2024-01", cuda_graphs=False)
LLAMA_CPP_2024_05 = _llama_cpp("llama.cpp-2024-05", cuda_graphs=True)

GENERATIONS: dict[str, EngineGeneration] = {
    g.name: g for g in (VLLM_2023, VLLM_2024, LLAMA_CPP_2024_01, LLAMA_CPP_2024_05)
}
