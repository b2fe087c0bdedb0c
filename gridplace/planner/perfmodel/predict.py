"""``predict``: TTFT, ITL, VRAM, fit and bound of one replica configuration, and its capacity.

Owns: assembling a prediction from support rules, shape, engine traits, efficiency table,
hardware, roofline, memory plan and profiles; the ``Predictor`` that caches all of that for one
(model, GPU, precision, engine, tp, derate, interconnect) so repeated queries cost microseconds.
Must not: read files other than the efficiency table (package data, cached), or print.

Conventions:
- ``ttft_ms`` is the prefill of ``batch`` prompts of ``prompt_tokens`` each, run together, up to
  the first token: no network RTT and no queueing (``capacity`` adds queueing; the planner adds
  RTT).
- ``itl_ms`` is one decode step of ``batch`` sequences with ``context_tokens`` already cached.
- ``vram_gib`` is per GPU: weights / tp + KV cache of ``batch`` sequences of
  max(prompt, context) tokens + engine reserve. ``fits`` compares it with the GPU's memory.
- ``derate`` is the node's thermal throttle ratio (0..1, ``status.thermal``); it slows compute and
  bandwidth (``hardware.derate_factors``).
- ``interconnect`` is the node's GPU-to-GPU link; None means what the GPU has (its NVLink/xGMI
  peer link if it has one, else PCIe).
- ``eager`` runs without CUDA graphs (vLLM ``enforce_eager``, a common memory-saving choice on
  small cards, and every release before graphs): host launch time can bound the step.
- ``kv_cache_fp8`` stores K and V in one byte per element instead of two.
- ``generation`` is an older release of the engine (``generations``: a name such as
  ``"vllm-2023"`` or an ``EngineGeneration``); None is the engine as the catalog runs it today.
- ``host_time_factor`` scales the engine's host time (step and sequence overheads, eager
  launches) for a host CPU slower (> 1) or faster (< 1) than the one the priors were measured on.
- ``engine_options`` (``specs.EngineOptions``): the engine's settings; unset ones come from the
  ``generation`` (its own or the one the options name), else today's defaults. llama.cpp is timed
  by ``llamacpp`` with them; other engines read ``kvCacheType: fp8`` and ``cudaGraphs: false``.
  Without options, a matching profile's recorded settings are used (its refit assumed them).
"""

from __future__ import annotations

import dataclasses

from gridplace.planner.perfmodel.capacity import (
    Capacity,
    LatencyTargets,
    TrafficShape,
    estimate_capacity,
)
from gridplace.planner.perfmodel.efficiency import EfficiencyTable, builtin_table
from gridplace.planner.perfmodel.engines import ENGINES
from gridplace.planner.perfmodel.errors import InvalidQuery
from gridplace.planner.perfmodel.generations import EngineGeneration
from gridplace.planner.perfmodel.hardware import ColdStart, cold_start, derate_factors, gpu_link
from gridplace.planner.perfmodel.llamacpp import (
    CONSTANTS,
    LlamaCppConstants,
    LlamaCppRoofline,
    LlamaCppSettings,
)
from gridplace.planner.perfmodel.memory import memory_plan
from gridplace.planner.perfmodel.profiles import ProfileBook
from gridplace.planner.perfmodel.query_settings import (
    check_arguments,
    checkpoint_bits,
    engine_generation,
    kv_bytes_per_element,
    llama_cpp_hardware,
    llama_cpp_settings,
)
from gridplace.planner.perfmodel.results import NotSupported, Prediction, Source
from gridplace.planner.perfmodel.roofline import Hardware, Roofline
from gridplace.planner.perfmodel.shape import model_shape
from gridplace.planner.perfmodel.support import (
    matmul_tflops,
    sixteen_bit_tflops,
    unsupported_reason,
)
from gridplace.specs.catalog import Catalog, builtin_catalog
from gridplace.specs.common import (
    WEIGHT_ONLY_PRECISIONS,
    Engine,
    EngineOptions,
    Interconnect,
    KvCacheType,
    Precision,
)
from gridplace.specs.gpu import GPUModelSpec
from gridplace.specs.model_arch import ModelArchitectureSpec


class Predictor:
    """Everything fixed for one (model, GPU, precision, engine, tp, derate, interconnect)."""

    def __init__(
        self,
        model: ModelArchitectureSpec,
        gpu: GPUModelSpec,
        precision: Precision,
        engine: Engine = Engine.VLLM,
        tp: int = 1,
        derate: float = 0.0,
        interconnect: Interconnect | None = None,
        *,
        kv_cache_fp8: bool = False,
        eager: bool = False,
        generation: EngineGeneration | str | None = None,
        host_time_factor: float = 1.0,
        weight_bits_per_parameter: float | None = None,
        engine_options: EngineOptions | None = None,
        llamacpp: LlamaCppConstants | None = None,
        table: EfficiencyTable | None = None,
        profiles: ProfileBook | None = None,
        model_id: str | None = None,
        gpu_id: str | None = None,
    ) -> None:
        check_arguments(tp, derate, host_time_factor)
        self.model, self.gpu = model, gpu
        self.precision, self.engine, self.tp = precision, engine, tp
        self.profile = None
        gpu_name = gpu_id or gpu.display_name
        self.unsupported = unsupported_reason(gpu, gpu_name, model, precision, engine, tp)
        if profiles is not None and self.unsupported is None:
            self.profile = profiles.find(
                model, gpu, precision, engine, model_id=model_id, gpu_id=gpu_id
            )
        if engine_options is None and self.profile is not None:
            engine_options = self.profile.engine_options
        self.engine_options = engine_options
        if generation is None and engine_options is not None:
            generation = engine_options.generation
        self.generation = engine_generation(generation, engine)
        self.host_time_factor = host_time_factor
        self.traits = ENGINES[engine]
        if self.generation is not None:
            self.traits = self.generation.traits(self.traits)
            eager = eager or self.generation.eager
        if engine_options is not None and engine_options.cuda_graphs is not None:
            eager = not engine_options.cuda_graphs
        kv_type = engine_options.kv_cache_type if engine_options is not None else None
        kv_cache_fp8 = kv_cache_fp8 or kv_type is KvCacheType.FP8
        table = table or builtin_table()
        self.shape = model_shape(model)
        kv_bytes = kv_bytes_per_element(kv_type, kv_cache_fp8)
        bits, embedding_bits = checkpoint_bits(precision, engine, weight_bits_per_parameter)
        self.roofline: Roofline | LlamaCppRoofline
        if engine is Engine.LLAMA_CPP:
            settings = llama_cpp_settings(self.generation, engine_options, gpu, eager, kv_type,
                                           kv_cache_fp8)  # fmt: skip
            kv_bytes = settings.kv_cache_type.bytes_per_element
            self.roofline = self._llama_cpp_roofline(
                gpu_id, derate, table, settings, llamacpp, (bits, embedding_bits)
            )
        else:
            self.roofline = self._roofline(
                derate, interconnect, table, eager, (bits, embedding_bits), kv_bytes
            )
        self.memory = memory_plan(
            self.shape,
            gpu.memory_gib,
            tp,
            self.traits,
            weight_bits=bits,
            head_bits=embedding_bits,
            kv_bytes_per_element=kv_bytes,
        )
        self._ttft_factor = self._itl_factor = 1.0
        self._prefill_memo: dict[tuple[int, int], float] = {}
        self._decode_memo: dict[tuple[int, int], float] = {}
        if self.profile is not None:
            self._refit_to_profile(
                derate, interconnect, kv_cache_fp8, eager, weight_bits_per_parameter,
                engine_options, llamacpp, table,
            )  # fmt: skip

    def _hardware(self, derate: float) -> tuple[Hardware, float]:
        """The GPU's rates after throttling, and the compute factor applied."""
        compute_factor, bandwidth_factor = derate_factors(derate)
        hardware = Hardware(
            bandwidth_gbyte_per_s=self.gpu.memory_bandwidth_gbps * bandwidth_factor,
            matmul_tflops=matmul_tflops(self.gpu, self.precision) * compute_factor,
            attention_tflops=sixteen_bit_tflops(self.gpu) * compute_factor,
        )
        return hardware, compute_factor

    def _roofline(
        self,
        derate: float,
        interconnect: Interconnect | None,
        table: EfficiencyTable,
        eager: bool,
        bits: tuple[float, float],  # weights, embedding/head
        kv_bytes: float,
    ) -> Roofline:
        """The roofline of the vLLM-like engines (tensor parallel over ``interconnect``)."""
        gpu, engine = self.gpu, self.engine
        hardware, _ = self._hardware(derate)
        gemm = table.gemm(engine, gpu.architecture, self.precision)
        link = gpu_link(gpu, interconnect)
        if self.generation is not None:
            gemm = gemm.model_copy(
                update={"bandwidth": gemm.bandwidth * self.generation.weight_bandwidth_share}
            )
            link = dataclasses.replace(
                link,
                bandwidth_gbyte_per_s=link.bandwidth_gbyte_per_s
                * self.generation.allreduce_bandwidth_share,
            )
        return Roofline(
            self.shape,
            self.tp,
            hardware,
            gemm,
            table.attention(gpu.architecture),
            table.elementwise(gpu.architecture),
            self.traits,
            link,
            eager=eager,
            host_time_factor=self.host_time_factor,
            weight_bits=bits[0],
            head_bits=bits[1],
            kv_bytes_per_element=kv_bytes,
        )

    def _llama_cpp_roofline(
        self,
        gpu_id: str | None,
        derate: float,
        table: EfficiencyTable,
        settings: LlamaCppSettings,
        llamacpp: LlamaCppConstants | None,
        bits: tuple[float, float],  # weights, embedding/head
    ) -> LlamaCppRoofline:
        """llama.cpp's roofline; its micro-batch also sets the engine's prefill chunk."""
        gpu = self.gpu
        hardware, compute_factor = self._hardware(derate)
        self.traits = dataclasses.replace(
            self.traits,
            prefill_chunk_tokens=settings.ubatch_tokens,
            activation_tokens=settings.ubatch_tokens,
        )
        return LlamaCppRoofline(
            self.shape,
            llama_cpp_hardware(gpu, gpu_id, hardware, compute_factor),
            table.attention(gpu.architecture),
            table.elementwise(gpu.architecture),
            settings,
            llamacpp or CONSTANTS,
            step_overhead_ms=self.traits.step_overhead_ms,
            host_time_factor=self.host_time_factor,
            weight_bits=bits[0],
            head_bits=bits[1],
            quantized=self.precision in WEIGHT_ONLY_PRECISIONS,
        )

    def _refit_to_profile(
        self,
        derate: float,
        interconnect: Interconnect | None,
        kv_cache_fp8: bool,
        eager: bool,
        weight_bits_per_parameter: float | None,
        engine_options: EngineOptions | None,
        llamacpp: LlamaCppConstants | None,
        table: EfficiencyTable,
    ) -> None:
        """Scale prefill and decode to the profile's measurements. The refit compares them with
        the roofline as they were measured: at the profile's tp and engine settings; its
        factors then move this configuration."""
        assert self.profile is not None
        basis = self
        measured_as = self.profile.engine_options
        if self.profile.tensor_parallel != self.tp or measured_as != engine_options:
            basis = Predictor(
                self.model,
                self.gpu,
                self.precision,
                self.engine,
                self.profile.tensor_parallel,
                derate,
                interconnect,
                kv_cache_fp8=kv_cache_fp8,
                eager=eager,
                generation=None if measured_as else self.generation,
                host_time_factor=self.host_time_factor,
                weight_bits_per_parameter=weight_bits_per_parameter,
                engine_options=measured_as,
                llamacpp=llamacpp,
                table=table,
            )
        self._ttft_factor, self._itl_factor = self.profile.refit(
            basis.roofline_prefill_ms, basis.roofline_decode_ms
        )

    # -- the StepModel protocol capacity uses ------------------------------------------------

    @property
    def step_overhead_ms(self) -> float:
        return self.traits.step_overhead_ms * self.host_time_factor * self._ttft_factor

    @property
    def prefill_chunk_tokens(self) -> int:
        """Most prompt tokens the engine prefills in one step (its chunked-prefill budget)."""
        return self.traits.prefill_chunk_tokens

    def roofline_prefill_ms(self, batch: int, prompt_tokens: int) -> float:
        return self.roofline.prefill(batch, prompt_tokens).total_ms

    def roofline_decode_ms(self, batch: int, context_tokens: int) -> float:
        return self.roofline.decode(batch, context_tokens).total_ms

    def prefill_ms(self, batch: int, prompt_tokens: int) -> float:
        key = (batch, prompt_tokens)
        found = self._prefill_memo.get(key)
        if found is None:
            found = self.roofline_prefill_ms(batch, prompt_tokens) * self._ttft_factor
            self._prefill_memo[key] = found
        return found

    def decode_ms(self, batch: int, context_tokens: int) -> float:
        # Memoized: capacity searches ask for the same steps under many TTFT budgets.
        key = (batch, context_tokens)
        found = self._decode_memo.get(key)
        if found is None:
            found = self.roofline_decode_ms(batch, context_tokens) * self._itl_factor
            self._decode_memo[key] = found
        return found

    def max_sequences(self, tokens_per_sequence: int) -> int:
        return self.memory.max_sequences(tokens_per_sequence)

    # -- queries -------------------------------------------------------------------------------

    def predict(
        self, batch: int = 1, prompt_tokens: int = 512, context_tokens: int = 512
    ) -> Prediction | NotSupported:
        """One operating point (see the module conventions)."""
        if batch < 1:
            raise InvalidQuery("batch", batch, "must be >= 1")
        if prompt_tokens < 1:
            raise InvalidQuery("prompt_tokens", prompt_tokens, "must be >= 1")
        if context_tokens < 0:
            raise InvalidQuery("context_tokens", context_tokens, "must be >= 0")
        if self.unsupported is not None:
            return NotSupported(self.unsupported, self.precision, self.engine)
        prefill = self.roofline.prefill(batch, prompt_tokens)
        decode = self.roofline.decode(batch, context_tokens)
        source: Source = "roofline"
        if self.profile is not None:
            source = "profile"
            prefill, decode = prefill.scaled(self._ttft_factor), decode.scaled(self._itl_factor)
            ttft, itl = self.profile.measured(self.tp, batch, prompt_tokens, context_tokens)
            if ttft is not None:
                prefill = prefill.scaled(ttft / prefill.total_ms)
                source = "measured"
            if itl is not None:
                decode = decode.scaled(itl / decode.total_ms)
                source = "measured"
        tokens = max(prompt_tokens, context_tokens)
        vram = self.memory.vram_gib(batch, tokens)
        return Prediction(
            ttft_ms=prefill.total_ms,
            itl_ms=decode.total_ms,
            vram_gib=vram,
            weights_gib=self.memory.weights_gib,
            kv_cache_gib=self.memory.kv_cache_gib(batch, tokens),
            reserve_gib=self.memory.reserve_gib,
            memory_gib=self.memory.memory_gib,
            fits=vram <= self.memory.memory_gib,
            bound=decode.bound,
            max_batch=self.memory.max_sequences(tokens),
            prefill=prefill,
            decode=decode,
            source=source,
            predictor=self,
        )

    def capacity(self, slo: LatencyTargets, traffic: TrafficShape, rtt_ms: float = 0.0) -> Capacity:
        """Requests/s inside ``slo`` for ``traffic``'s request sizes, ``rtt_ms`` from clients."""
        if self.unsupported is not None:
            return Capacity(0.0, 0, 0.0, 0.0, 0.0, "itl", self.unsupported)
        return estimate_capacity(self, slo, traffic, rtt_ms)

    def cold_start(
        self, *, network_gbit_per_s: float, cached: bool, disk_gbyte_per_s: float = 2.0
    ) -> ColdStart:
        """Seconds until this replica serves: download (unless cached), load, engine start."""
        weights_bytes = self.memory.weights_gib * self.tp * 2**30
        return cold_start(
            weights_bytes,
            self.gpu,
            self.tp,
            self.traits.init_s,
            network_gbit_per_s=network_gbit_per_s,
            cached=cached,
            disk_gbyte_per_s=disk_gbyte_per_s,
        )


def predict(
    model: ModelArchitectureSpec | str,
    gpu: GPUModelSpec | str,
    precision: Precision,
    engine: Engine = Engine.VLLM,
    tp: int = 1,
    batch: int = 1,
    prompt_tokens: int = 512,
    context_tokens: int = 512,
    derate: float = 0.0,
    interconnect: Interconnect | None = None,
    *,
    kv_cache_fp8: bool = False,
    generation: EngineGeneration | str | None = None,
    host_time_factor: float = 1.0,
    catalog: Catalog | None = None,
    table: EfficiencyTable | None = None,
    profiles: ProfileBook | None = None,
) -> Prediction | NotSupported:
    """Predict one configuration at one operating point.

    ``model`` and ``gpu`` are specs or catalog references (ids, Hugging Face repos, reported
    names); an unknown reference raises ``SpecError`` listing near matches. For many queries
    against the same configuration build a ``Predictor`` once instead.
    """
    model_id = gpu_id = None
    if isinstance(model, str) or isinstance(gpu, str):
        catalog = catalog or builtin_catalog()
        if isinstance(model, str):
            model_id = catalog.model_id(model)
            model = catalog.model(model)
        if isinstance(gpu, str):
            gpu_id = catalog.gpu_id(gpu)
            gpu = catalog.gpu(gpu)
    predictor = Predictor(
        model,
        gpu,
        precision,
        engine,
        tp,
        derate,
        interconnect,
        kv_cache_fp8=kv_cache_fp8,
        generation=generation,
        host_time_factor=host_time_factor,
        table=table,
        profiles=profiles,
        model_id=model_id,
        gpu_id=gpu_id,
    )
    return predictor.predict(batch, prompt_tokens, context_tokens)
