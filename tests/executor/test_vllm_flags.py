"""The vLLM driver's command line uses only options ``vllm serve`` defines: every option it renders,
for every precision, tensor-parallel degree, GPU share and a manifest quantization, is in the
option list derived from vLLM's argument definitions (``data/vllm_serve_flags.txt`` names the
source files and commits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridplace.executor.diff import ReplicaSpec
from gridplace.executor.drivers import Target, VllmDriver

FLAGS_FILE = Path(__file__).with_name("data") / "vllm_serve_flags.txt"


def vllm_flags() -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in FLAGS_FILE.read_text().splitlines())
    return {line for line in lines if line}


def rendered_options(argv: tuple[str, ...]) -> list[str]:
    assert argv[:2] == ("vllm", "serve") and not argv[2].startswith("-")  # the model_tag positional
    return [word.split("=", 1)[0] for word in argv[3:] if word.startswith("-")]


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp8", "int8", "int4"])
@pytest.mark.parametrize(("gpus", "share"), [((0,), 1), ((0,), 2), ((0, 1), 1)])
@pytest.mark.parametrize("quantization", [None, "awq"])
def test_every_option_the_vllm_driver_renders_is_one_vllm_serve_defines(
    precision: str, gpus: tuple[int, ...], share: int, quantization: str | None
) -> None:
    spec = ReplicaSpec("chat", gpus, precision, tensor_parallel=len(gpus), gpu_share=share)
    target = Target(
        spec, "r1", "org/model", "127.0.0.1", 8000, {0: "0", 1: "1"}, quantization=quantization
    )
    options = rendered_options(VllmDriver().launch_spec(target).argv)
    assert options, "the driver renders no options"
    unknown = sorted(set(options) - vllm_flags())
    assert not unknown, f"vllm serve has no option(s) {unknown} (see {FLAGS_FILE.name})"


def test_the_option_list_is_read_and_holds_what_serving_needs() -> None:
    flags = vllm_flags()
    assert len(flags) > 150
    assert {"--host", "--port", "--tensor-parallel-size", "--served-model-name"} <= flags
    assert "--gpu-memory-utilisation" not in flags  # a misspelt option would be caught
