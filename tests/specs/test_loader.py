"""The loader: kinds load and round-trip; bad input is a SpecError naming file, line, field."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gridplace.specs import SpecError, load_bundle, load_documents
from gridplace.specs.common import Precision
from gridplace.specs.yamlsafe import MAX_LIST_ITEMS, parse_yaml_text
from tests.specs import documents

Writer = Callable[[str, str], Path]


@pytest.mark.parametrize("kind", list(documents.ALL))
def test_every_kind_loads_and_round_trips(kind: str, write_yaml: Writer) -> None:
    path = write_yaml("doc.yaml", documents.ALL[kind])
    (loaded,) = load_documents([path])
    assert loaded.kind == kind
    dumped = yaml.safe_dump(loaded.obj.to_yaml_dict(), sort_keys=False)
    (again,) = load_documents([write_yaml("again.yaml", dumped)])
    assert again.obj == loaded.obj


def test_multi_document_files_and_directories_are_read_recursively(write_yaml: Writer) -> None:
    second = documents.NODE.replace("lis-3090-a", "lis-3090-b")
    nodes = write_yaml("grid/a/nodes.yaml", documents.NODE + "---\n" + second)
    write_yaml("grid/b/more.yml", documents.NODE.replace("lis-3090-a", "lis-3090-c"))
    write_yaml("grid/notes.txt", "not yaml, ignored")
    workloads = write_yaml("wl.yaml", documents.WORKLOAD + "---\n")  # trailing empty document
    bundle = load_bundle([nodes.parent.parent, workloads])
    assert sorted(n.name for n in bundle.nodes) == ["lis-3090-a", "lis-3090-b", "lis-3090-c"]
    assert [w.name for w in bundle.workloads] == ["chat-8b"]


def test_catalog_references_resolve_to_ids(write_yaml: Writer) -> None:
    node = documents.NODE.replace("model: rtx-3090", "model: NVIDIA GeForce RTX 3090")
    workload = documents.WORKLOAD.replace("llama-3.1-8b", "meta-llama/Llama-3.1-8B-Instruct")
    bundle = load_bundle([write_yaml("n.yaml", node), write_yaml("w.yaml", workload)])
    assert bundle.nodes[0].spec.gpus[0].model == "rtx-3090"
    assert bundle.workloads[0].spec.model == "llama-3.1-8b"
    profile = load_bundle([write_yaml("p.yaml", documents.PROFILE)]).profiles[0]
    assert (profile.spec.model, profile.spec.gpu) == ("llama-3.1-8b", "rtx-4090")


def test_user_catalog_entries_extend_the_catalog(write_yaml: Writer) -> None:
    node = documents.NODE.replace("model: rtx-3090", "model: rtx-4090-48gb")
    workload = documents.WORKLOAD.replace("model: llama-3.1-8b", "model: tiny-moe")
    bundle = load_bundle(
        [
            write_yaml("gpu.yaml", documents.GPU_MODEL),
            write_yaml("arch.yaml", documents.MODEL_ARCHITECTURE),
            write_yaml("n.yaml", node),
            write_yaml("w.yaml", workload),
        ]
    )
    assert bundle.catalog.gpus["rtx-4090-48gb"].memory_gib == 48
    assert bundle.catalog.models["tiny-moe"].compute_parameters_billion == 3


def test_inline_model_architecture(write_yaml: Writer) -> None:
    inline = documents.MODEL_ARCHITECTURE.split("spec:\n", 1)[1]
    indented = "".join("  " + line + "\n" for line in inline.splitlines())
    workload = documents.WORKLOAD.replace("  model: llama-3.1-8b\n", "  model:\n" + indented)
    bundle = load_bundle([write_yaml("w.yaml", workload)])
    model = bundle.workloads[0].spec.model
    assert not isinstance(model, str)
    assert model.layers == 24


def _error(paths: list[Path]) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_bundle(paths)
    return caught.value


# (case id, document, text to replace, replacement, expected field, words in the message)
REJECTIONS = [
    (
        "unknown-field",
        documents.NODE,
        "  networkGbps: 1",
        "  networkGbps: 1\n  colour: red",
        "spec.colour",
        "unknown field",
    ),
    (
        "wrong-type",
        documents.NODE,
        "pricePerHour: 0.42",
        "pricePerHour: cheap",
        "spec.pricePerHour",
        "valid number",
    ),
    (
        "negative-price",
        documents.NODE,
        "pricePerHour: 0.42",
        "pricePerHour: -1",
        "spec.pricePerHour",
        "greater than or equal to 0",
    ),
    (
        "replicas-min-over-max",
        documents.WORKLOAD,
        "{min: 2, max: 16}",
        "{min: 20, max: 16}",
        "spec.replicas",
        "replicas.min (20) must be <= replicas.max (16)",
    ),
    (
        "shares-do-not-sum",
        documents.WORKLOAD,
        "share: 0.3",
        "share: 0.2",
        "spec.traffic.sources",
        "sum to 0.9",
    ),
    (
        "precision-twice",
        documents.WORKLOAD,
        "[bf16, fp8, int4]",
        "[bf16, fp8, bf16]",
        "spec.precisions",
        "'bf16' is listed twice",
    ),
    (
        "unknown-precision",
        documents.WORKLOAD,
        "[bf16, fp8, int4]",
        "[bf16, fp6]",
        "spec.precisions[1]",
        "fp6",
    ),
    (
        "unknown-gpu",
        documents.NODE,
        "model: rtx-3090",
        "model: rtx-3909",
        "spec.gpus[0].model",
        "did you mean: rtx-3090",
    ),
    (
        "unknown-model",
        documents.WORKLOAD,
        "model: llama-3.1-8b",
        "model: llama-3.1-8bb",
        "spec.model",
        "did you mean: llama-3.1-8b",
    ),
    (
        "bad-name",
        documents.NODE,
        "name: lis-3090-a",
        "name: Lis 3090",
        "metadata.name",
        "should match pattern",
    ),
    (
        "throttle-out-of-range",
        documents.NODE,
        "throttleRatio: 0.18",
        "throttleRatio: 1.5",
        "status.thermal.throttleRatio",
        "less than or equal to 1",
    ),
    (
        "probe-to-itself",
        documents.PROBES,
        "target: fra-a100-1",
        "target: lis-3090-a",
        "spec.samples[0]",
        "source and target are both",
    ),
    (
        "tp-mismatch",
        documents.PLAN,
        "tensorParallel: 1",
        "tensorParallel: 2",
        "spec.assignments[0]",
        "tensorParallel (2) must equal",
    ),
    (
        "kv-heads",
        documents.MODEL_ARCHITECTURE,
        "kvHeads: 4",
        "kvHeads: 5",
        "spec",
        "multiple of kvHeads",
    ),
    (
        "missing-field",
        documents.WORKLOAD,
        "  slo: {ttftMs: 800, itlMs: 60}\n",
        "",
        "spec.slo",
        "required field is missing",
    ),
]


@pytest.mark.parametrize(
    ("document", "old", "new", "field", "words"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
def test_bad_input_names_file_line_and_field(
    document: str, old: str, new: str, field: str, words: str, write_yaml: Writer
) -> None:
    assert old in document
    broken = document.replace(old, new)
    path = write_yaml("broken.yaml", broken)
    error = _error([path])
    matching = [i for i in error.issues if i.field == field]
    assert matching, [str(i) for i in error.issues]
    issue = matching[0]
    assert words in issue.message, issue.message
    assert issue.file == str(path)
    assert issue.document == 0
    assert issue.line is not None
    if new.strip():
        # the reported line holds the field, the changed text, or (for a list item) its dash
        line_text = broken.splitlines()[issue.line - 1]
        last = field.split(".")[-1]
        assert (
            last.split("[")[0] in line_text
            or new.split(":")[0].strip() in line_text
            or (last.endswith("]") and line_text.lstrip().startswith("-"))
        ), line_text


def test_duplicate_names_across_files(write_yaml: Writer) -> None:
    first = write_yaml("a.yaml", documents.NODE)
    second = write_yaml("b.yaml", "# a comment\n" + documents.NODE)
    error = _error([first, second])
    (issue,) = error.issues
    assert "defined twice" in issue.message and str(first) in issue.message
    assert issue.file == str(second) and issue.field == "metadata.name" and issue.line == 4


def test_every_problem_is_reported_not_just_the_first(write_yaml: Writer) -> None:
    a = write_yaml("a.yaml", documents.NODE.replace("pricePerHour: 0.42", "pricePerHour: x"))
    b = write_yaml("b.yaml", documents.WORKLOAD.replace("share: 0.3", "share: 0.1"))
    error = _error([a, b])
    assert {i.file for i in error.issues} == {str(a), str(b)}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("- just\n- a list\n", "must be a mapping"),
        ("apiVersion: gridplace/v1alpha1\nkind: Pod\n", "kind 'Pod' is not one of"),
        (documents.NODE.replace("gridplace/v1alpha1", "v1"), "apiVersion must be"),
        ("a: 1\na: 2\n", "appears twice"),
        ("a: [1,\n", "not valid YAML"),
        ("a: !!python/object:os.system {}\n", "not valid YAML"),
        ("[" * 200 + "]" * 200, "nest"),
    ],
    ids=[
        "not-mapping",
        "unknown-kind",
        "api-version",
        "duplicate-key",
        "syntax",
        "python-tag",
        "deep",
    ],
)
def test_malformed_documents(text: str, words: str, write_yaml: Writer) -> None:
    error = _error([write_yaml("bad.yaml", text)])
    assert any(words in issue.message for issue in error.issues), error.issues


def test_billion_laughs_is_refused_fast(write_yaml: Writer) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghij":
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    path = write_yaml("laughs.yaml", "\n".join(lines) + "\n")
    started = time.perf_counter()
    error = _error([path])
    assert time.perf_counter() - started < 2.0
    assert "aliases" in error.issues[0].message


def test_huge_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:  # sparse: 100 MB on paper, nothing on disk
        handle.truncate(100 * 2**20)
    started = time.perf_counter()
    error = _error([path])
    assert time.perf_counter() - started < 1.0
    assert "limit" in error.issues[0].message and error.issues[0].file == str(path)


def test_missing_path_and_non_utf8(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "no such file" in _error([missing]).issues[0].message
    assert "UTF-8" in _error([binary]).issues[0].message


def test_precision_bytes() -> None:
    assert Precision.INT4.bytes_per_parameter * 4 == Precision.BF16.bytes_per_parameter


def test_burstiness_windows_are_sorted_and_must_be_distinct() -> None:
    from gridplace.specs.workload import Burstiness

    burstiness = Burstiness.model_validate(
        {"windows": [{"windowS": 60, "peakToMean": 1.5}, {"windowS": 10, "peakToMean": 2.0}]}
    )
    assert [w.window_s for w in burstiness.windows] == [10, 60]
    with pytest.raises(ValueError, match="distinct"):
        Burstiness.model_validate(
            {"windows": [{"windowS": 10, "peakToMean": 1.5}, {"windowS": 10, "peakToMean": 2}]}
        )
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Burstiness.model_validate({"windows": [{"windowS": 10, "peakToMean": 0.5}]})


TWO_MILLION_ITEMS = "kind: LatencyProbes\nrtt:\n" + "- 1\n" * 2_000_000


def test_a_long_list_is_refused_while_composing_small_in_memory() -> None:
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        parse_yaml_text(TWO_MILLION_ITEMS, "probes.yaml", max_list_items=1000)
    elapsed_s = time.perf_counter() - started
    peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "list of more than 1,000 items" in caught.value.issues[0].message
    assert caught.value.issues[0].line == 3  # where the list starts
    # Composing all 2 million items first took seconds and hundreds of MB.
    assert elapsed_s < 0.5 and peak_bytes < 16 * 2**20, (elapsed_s, peak_bytes)


def test_a_two_million_item_probe_file_is_refused_at_the_default_limit(
    write_yaml: Writer,
) -> None:
    path = write_yaml("probes.yaml", TWO_MILLION_ITEMS)
    error = _error([path])  # speed and memory: the test above, at a small limit
    assert f"more than {MAX_LIST_ITEMS:,} items" in error.issues[0].message
    assert error.issues[0].field == "rtt"
