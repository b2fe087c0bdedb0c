"""``gridplace calibrate``: a ``PerformanceProfile`` from benchmark results a node already has.

Owns: reading the file (size-limited), the flags, and writing the profile YAML. Must not: parse
the formats or refit (``gridplace.planner.perfmodel.calibration`` and ``profiles`` do).

    gridplace calibrate --llama-bench results.json [--gpu ID] [--model ID] [-o PROFILE.yaml]
    gridplace calibrate --vllm-bench result.json --gpu h100-sxm [--precision fp8] [--tp 2]

llama-bench's ``-o json`` and ``-o jsonl`` both read; the GPU, model and GGUF type come from the
file (``gpu_info``, ``model_type``, ``model_n_params``) unless given. The profile records the
run's engine settings; ``gridplace predict --profile PROFILE.yaml`` then predicts other prompt
lengths and contexts on that GPU with the model's shape moved to the measured level.

Exit codes: 0 written; 1 unreadable, malformed or unmatched file (the message names the field).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from gridplace.api import render
from gridplace.planner.perfmodel.calibration import (
    CalibrationError,
    Identity,
    llama_bench_profile,
    parse_llama_bench,
    vllm_bench_profile,
)
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Precision

EXIT_INVALID = 1
MAX_FILE_BYTES = 64 * 1024 * 1024


def _fail(message: str) -> typer.Exit:
    render.stderr.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(EXIT_INVALID)


def read_limited(path: Path) -> str:
    """The file's text; CalibrationError when missing, too large or not UTF-8."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CalibrationError(f"{path}: {size} bytes; at most {MAX_FILE_BYTES}")
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise CalibrationError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise CalibrationError(f"{path}: not UTF-8 text") from None


def command(
    llama_bench: Annotated[
        Path | None, typer.Option("--llama-bench", help="llama-bench -o json / jsonl output.")
    ] = None,
    vllm_bench: Annotated[
        Path | None, typer.Option("--vllm-bench", help="vLLM serving benchmark --save-result.")
    ] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="GPU catalog id or name.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model catalog id.")] = None,
    precision: Annotated[
        Precision | None, typer.Option("--precision", help="Precision (default: from the file).")
    ] = None,
    tp: Annotated[int, typer.Option("--tp", min=1, max=64, help="Tensor parallel.")] = 1,
    name: Annotated[str | None, typer.Option("--name", help="Profile name.")] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the profile here (else stdout).")
    ] = None,
) -> None:
    """Turn llama-bench or vLLM benchmark results into a PerformanceProfile."""
    if (llama_bench is None) == (vllm_bench is None):
        raise typer.BadParameter("give exactly one of --llama-bench FILE or --vllm-bench FILE")
    identity = Identity(gpu, model, precision, tp, name)
    catalog = builtin_catalog()
    notes: list[str] = []
    try:
        if llama_bench is not None:
            rows = parse_llama_bench(read_limited(llama_bench), str(llama_bench))
            profile, notes = llama_bench_profile(rows, str(llama_bench), catalog, identity)
        else:
            assert vllm_bench is not None
            text = read_limited(vllm_bench)
            profile = vllm_bench_profile(text, str(vllm_bench), catalog, identity)
    except CalibrationError as error:
        raise _fail(str(error)) from None
    text = yaml.safe_dump(profile.to_yaml_dict(), sort_keys=False)
    for note in notes:
        render.stderr.print(f"note: {note}", highlight=False)
    if output is None:
        print(text, end="")
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise _fail(f"cannot write {output}: {error.strerror or error}") from None
    spec = profile.spec
    render.stderr.print(
        f"wrote {output}: {spec.gpu} {spec.model} {spec.precision.value} {spec.engine.value}, "
        f"{len(spec.points)} points",
        highlight=False,
    )
