"""llama.cpp from its mechanisms, GGUF types, engine options, memory technology, fp8 prefill."""

from __future__ import annotations

import pytest

from gridplace.planner.perfmodel import NotSupported, Prediction, Predictor, predict
from gridplace.planner.perfmodel.compute_units import COMPUTE_UNITS, compute_units
from gridplace.planner.perfmodel.llamacpp import CONSTANTS
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Engine, EngineOptions, KvCacheType, Precision
from gridplace.specs.gpu import GPUModelSpec, MemoryTechnology, memory_technology

LLAMA = Engine.LLAMA_CPP


def _gpu(gpu_id: str, **changes: object) -> GPUModelSpec:
    return builtin_catalog().gpus[gpu_id].model_copy(update=changes)


def _predictor(gpu: GPUModelSpec | str, precision: Precision, **options: object) -> Predictor:
    catalog = builtin_catalog()
    spec = catalog.gpus[gpu] if isinstance(gpu, str) else gpu
    engine_options = EngineOptions.model_validate(options) if options else None
    return Predictor(
        catalog.models["llama-3-8b"], spec, precision, LLAMA, engine_options=engine_options
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Q4_K_M", Precision.Q4_K_M), ("q8_0", Precision.Q8_0), ("F16", Precision.FP16),
     ("IQ4_XS", Precision.IQ4_XS), ("int4", Precision.INT4), ("bf16", Precision.BF16)],
)  # fmt: skip
def test_gguf_names_parse_case_insensitively(name: str, expected: Precision) -> None:
    assert Precision(name) is expected


@pytest.mark.parametrize(
    ("model", "low", "high"), [("llama-3-8b", 4.4, 4.8), ("llama-3-70b", 38.5, 41.5)]
)
def test_q4_k_m_files_take_their_real_size(model: str, low: float, high: float) -> None:
    result = predict(model, "h100-pcie", Precision.Q4_K_M, LLAMA)
    assert isinstance(result, Prediction)
    assert low <= result.weights_gib <= high


def test_old_precision_names_still_work_with_llama_cpp() -> None:
    for precision in (Precision.INT4, Precision.INT8, Precision.FP16):
        assert isinstance(predict("llama-3-8b", "rtx-3090", precision, LLAMA), Prediction)


def test_gguf_types_are_llama_cpp_only() -> None:
    result = predict("llama-3-8b", "h100-sxm", Precision.Q4_K_M, Engine.VLLM)
    assert isinstance(result, NotSupported)
    assert "GGUF" in result.reason


def test_flash_attention_off_costs_more_and_the_gap_grows_with_prompt_length() -> None:
    on = _predictor("rtx-4090", Precision.Q4_K_M, flashAttention=True)
    off = _predictor("rtx-4090", Precision.Q4_K_M, flashAttention=False)
    gaps = [off.prefill_ms(1, n) / on.prefill_ms(1, n) for n in (512, 4096, 16384)]
    assert gaps[0] > 1.0
    assert gaps[0] < gaps[1] < gaps[2]
    assert off.decode_ms(1, 8192) > on.decode_ms(1, 8192)  # non-flash reads KV per query head


def test_geforce_prompt_processing_runs_at_the_fp16_accumulate_rate() -> None:
    # F16 weights: cuBLAS with a 16-bit compute type. Without the FP16-accumulate figure the
    # card would compute at the FP32-accumulate rate the catalog's fp16 is: half.
    with_rate = _predictor("rtx-4090", Precision.FP16)
    without = _predictor(_gpu("rtx-4090", tensor_tflops=_gpu("rtx-4090").tensor_tflops.model_copy(
        update={"fp16_acc16": None})), Precision.FP16)  # fmt: skip
    assert builtin_catalog().gpus["rtx-4090"].tensor_tflops.fp16_acc16 == pytest.approx(330.4)
    assert without.prefill_ms(1, 2048) > 1.6 * with_rate.prefill_ms(1, 2048)


def test_only_geforce_cards_have_a_separate_fp16_accumulate_rate() -> None:
    for gpu_id, spec in builtin_catalog().gpus.items():
        has = spec.tensor_tflops.fp16_acc16 is not None
        assert has == spec.display_name.startswith("GeForce"), gpu_id


def _peak_ms(gpu_id: str, step_ms: float) -> float:
    """A step time in units of the GPU's nameplate bandwidth (larger: a lower share of peak)."""
    return step_ms * builtin_catalog().gpus[gpu_id].memory_bandwidth_gbps


def test_decode_efficiency_depends_on_memory_technology() -> None:
    # The decode kernels stream at most what each SM keeps in flight: HBM parts, with two or more
    # times a GDDR board's bandwidth per SM, reach a much lower share of their nameplate.
    assert memory_technology(_gpu("h100-pcie")) is MemoryTechnology.HBM
    for gddr, hbm in (("rtx-4090", "h100-pcie"), ("rtx-3090", "a100-sxm-80gb")):
        gddr_ms = _peak_ms(gddr, _predictor(gddr, Precision.Q4_K_M).decode_ms(1, 512))
        hbm_ms = _peak_ms(hbm, _predictor(hbm, Precision.Q4_K_M).decode_ms(1, 512))
        assert hbm_ms > 1.3 * gddr_ms, (gddr, hbm)
    # Twice the bandwidth on the same 128 SMs: far less than twice as fast.
    card = _gpu("rtx-4090")
    doubled = _gpu("rtx-4090", memory_bandwidth_gbps=2 * card.memory_bandwidth_gbps,
                   memory_type="HBM3")  # fmt: skip
    speedup = _predictor(card, Precision.Q4_K_M).decode_ms(1, 512) / _predictor(
        doubled, Precision.Q4_K_M
    ).decode_ms(1, 512)
    assert 1.0 < speedup < 1.3


def test_prompt_gemm_tiles_fall_into_waves_over_the_sms() -> None:
    c = CONSTANTS
    assert c.wave_share(4096, 512, 128) == pytest.approx(1.0)  # 128 tiles, one full wave
    assert c.wave_share(4096, 512, 82) == pytest.approx(128 / 164)  # RTX 3090: 1.56 waves
    assert c.wave_share(4096, 300, None) == pytest.approx(300 / 384)  # a part-filled tile column
    assert c.wave_share(1024, 512, 128) == pytest.approx(1.0)  # 32 tiles split 4 ways along K
    assert c.wave_share(4096, 512, None) == pytest.approx(1.0)  # SMs unknown: no wave loss
    assert c.wave_share(4096, 300, 128) == pytest.approx(300 / 384 * 96 / 128)  # 96 tiles
    # At n_ubatch 512 a 3090's GEMMs reach a smaller share of its FP16 peak than a 4090's (Llama 2
    # 7B F16 pp512: 4184 vs 11048 tokens/s in llama.cpp#4766, 2.6x for 2.3x the peak).
    catalog = builtin_catalog()
    share = {}
    for gpu in ("rtx-3090", "rtx-4090"):
        model = catalog.models["llama-2-7b"]
        step = Predictor(model, catalog.gpus[gpu], Precision.FP16, LLAMA).roofline.prefill(1, 512)
        share[gpu] = step.compute_side_ms * (catalog.gpus[gpu].tensor_tflops.fp16_acc16 or 0.0)
    assert share["rtx-3090"] > 1.15 * share["rtx-4090"]


def test_every_catalog_gpu_has_a_compute_unit_count() -> None:
    for gpu_id, spec in builtin_catalog().gpus.items():
        assert compute_units(spec) == COMPUTE_UNITS[gpu_id], gpu_id


def test_cuda_graphs_save_host_time_per_token() -> None:
    graphs = _predictor("rtx-3090", Precision.Q4_0, cudaGraphs=True)
    eager = _predictor("rtx-3090", Precision.Q4_0, cudaGraphs=False)
    saved = eager.decode_ms(1, 64) - graphs.decode_ms(1, 64)
    assert 0.3 < saved < 1.5  # llama.cpp #6766: 0.4-0.9 ms per token on 7B


def test_quantized_prompts_pay_the_f16_conversion_on_the_cublas_path() -> None:
    cublas = _predictor("rtx-3090", Precision.Q4_0, promptKernels="cublas")
    mmq = _predictor("rtx-3090", Precision.Q4_0, promptKernels="mmq")
    f16 = _predictor("rtx-3090", Precision.FP16, promptKernels="cublas")
    assert cublas.prefill_ms(1, 512) > f16.prefill_ms(1, 512) > mmq.prefill_ms(1, 512) * 0.9
    assert cublas.prefill_ms(1, 512) > mmq.prefill_ms(1, 512)


def test_generations_carry_their_defaults_and_options_override_them() -> None:
    catalog = builtin_catalog()
    model, gpu = catalog.models["llama-3-8b"], catalog.gpus["rtx-3090"]
    old = Predictor(model, gpu, Precision.Q4_K_M, LLAMA, generation="llama.cpp-2024-01")
    today = Predictor(model, gpu, Precision.Q4_K_M, LLAMA)
    assert old.decode_ms(1, 64) > today.decode_ms(1, 64)  # no CUDA graphs, non-flash
    assert old.prefill_ms(1, 4096) > today.prefill_ms(1, 4096)
    overridden = Predictor(
        model,
        gpu,
        Precision.Q4_K_M,
        LLAMA,
        engine_options=EngineOptions(generation="llama.cpp-2024-01", cuda_graphs=True),
    )
    assert overridden.decode_ms(1, 64) < old.decode_ms(1, 64)


def test_smaller_kv_cache_type_holds_more_sequences() -> None:
    f16 = _predictor("rtx-3090", Precision.Q4_K_M)
    q8 = _predictor("rtx-3090", Precision.Q4_K_M, kvCacheType=KvCacheType.Q8_0)
    assert q8.max_sequences(8192) > 1.5 * f16.max_sequences(8192)


@pytest.mark.parametrize("gpu", ["rtx-4090", "l40s", "h100-sxm", "h100-pcie"])
@pytest.mark.parametrize("engine", [Engine.VLLM, Engine.SGLANG, Engine.TENSORRT_LLM])
def test_fp8_prefill_is_faster_than_bf16_on_ada_and_hopper(gpu: str, engine: Engine) -> None:
    bf16 = predict("llama-3-8b", gpu, Precision.BF16, engine, prompt_tokens=2048)
    fp8 = predict("llama-3-8b", gpu, Precision.FP8, engine, prompt_tokens=2048)
    assert isinstance(bf16, Prediction) and isinstance(fp8, Prediction)
    assert fp8.ttft_ms < bf16.ttft_ms


@pytest.mark.parametrize("gpu", ["rtx-4090", "a100-sxm-80gb", "h100-sxm"])
def test_weight_only_prefill_runs_near_the_16_bit_rate(gpu: str) -> None:
    # AWQ/GPTQ dequantize in the GEMM's prologue: prefill is the 16-bit GEMM, a little slower.
    bf16 = predict("llama-3-8b", gpu, Precision.BF16, Engine.VLLM, prompt_tokens=2048)
    for precision in (Precision.INT8, Precision.INT4):
        quantized = predict("llama-3-8b", gpu, precision, Engine.VLLM, prompt_tokens=2048)
        assert isinstance(bf16, Prediction) and isinstance(quantized, Prediction)
        assert bf16.ttft_ms <= quantized.ttft_ms <= 1.15 * bf16.ttft_ms


def test_the_planner_predicts_with_the_workloads_engine_options() -> None:
    from gridplace.planner.compile import PredictionQuery
    from gridplace.planner.predictor import make_predictor
    from gridplace.specs.common import Interconnect

    catalog = builtin_catalog()
    predictor = make_predictor()

    def query(options: EngineOptions | None) -> PredictionQuery:
        return PredictionQuery(
            model=catalog.models["llama-3-8b"], model_id="llama-3-8b",
            gpu=catalog.gpus["rtx-4090"], gpu_id="rtx-4090", precision=Precision.Q4_K_M,
            engine=LLAMA, tensor_parallel=1, share=1, interconnect=Interconnect.PCIE,
            throttle_ratio=0.0, ttft_budget_ms=60_000, itl_slo_ms=100, prompt_tokens=8192,
            output_tokens=128, engine_options=options,
        )  # fmt: skip

    unknown = predictor(query(EngineOptions(generation="llama.cpp-1999")))
    assert not unknown.supported and "llama.cpp-1999" in unknown.reason
    flash = predictor(query(EngineOptions(flash_attention=True)))
    no_flash = predictor(query(EngineOptions(flash_attention=False)))
    assert flash.supported and no_flash.supported
    assert no_flash.capacity_rps < flash.capacity_rps  # prefill costs more without flash


def test_hip_builds_on_amd_run_without_cuda_graphs_unless_asked() -> None:
    default = _predictor("rx-7900-xtx", Precision.Q4_K_M)
    graphs = _predictor("rx-7900-xtx", Precision.Q4_K_M, cudaGraphs=True)
    vulkan = _predictor("rx-7900-xtx", Precision.Q4_K_M, backend="vulkan")
    assert default.decode_ms(1, 64) > graphs.decode_ms(1, 64)
    assert default.decode_ms(1, 64) > vulkan.decode_ms(1, 64)  # command buffers: no launches
