"""Loading gridplace documents from files and directories into a validated ``SpecBundle``.

The loader reads files, directories (recursively, ``*.yaml``/``*.yml``) and multi-document YAML,
validates every document against its kind, resolves catalog references (a GPU by id or reported
name, a model by id or Hugging Face repo) to catalog ids, and checks what spans documents
(duplicate names, unknown references). It collects every problem before raising one ``SpecError``
whose issues name file, document, line and field. It never writes anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gridplace.specs.catalog import Catalog, builtin_catalog, unknown_message
from gridplace.specs.common import API_VERSION
from gridplace.specs.errors import SpecError, SpecIssue
from gridplace.specs.gpu import GPUModel
from gridplace.specs.model_arch import ModelArchitecture
from gridplace.specs.node import Node
from gridplace.specs.observation import Observations
from gridplace.specs.plan import PlacementPlan
from gridplace.specs.probes import LatencyProbes
from gridplace.specs.profile import PerformanceProfile
from gridplace.specs.workload import InferenceWorkload
from gridplace.specs.yamlsafe import (
    MAX_FILE_BYTES,
    FieldPath,
    ParsedDocument,
    dotted_path,
    parse_yaml_text,
)

KINDS: dict[str, type[BaseModel]] = {
    "Node": Node,
    "InferenceWorkload": InferenceWorkload,
    "LatencyProbes": LatencyProbes,
    "PlacementPlan": PlacementPlan,
    "GPUModel": GPUModel,
    "ModelArchitecture": ModelArchitecture,
    "PerformanceProfile": PerformanceProfile,
    "Observations": Observations,
}
YAML_SUFFIXES = (".yaml", ".yml")
MAX_FILES = 10_000
MAX_TOTAL_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class LoadedDocument:
    """One validated document and where it came from."""

    kind: str
    obj: Any
    file: str
    parsed: ParsedDocument

    def issue(self, message: str, path: FieldPath = ()) -> SpecIssue:
        return SpecIssue(
            message=message,
            file=self.file,
            document=self.parsed.index,
            line=self.parsed.line_of(path),
            field=dotted_path(path) or None,
        )


@dataclass(frozen=True)
class SpecBundle:
    """Every document of a load, validated and resolved against the (extended) catalog."""

    catalog: Catalog
    nodes: list[Node] = field(default_factory=list)
    workloads: list[InferenceWorkload] = field(default_factory=list)
    probes: list[LatencyProbes] = field(default_factory=list)
    plans: list[PlacementPlan] = field(default_factory=list)
    profiles: list[PerformanceProfile] = field(default_factory=list)
    gpu_models: list[GPUModel] = field(default_factory=list)
    model_architectures: list[ModelArchitecture] = field(default_factory=list)
    origins: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    inputs: InputFiles | None = None  # the files read and skipped, when loaded from files

    def origin(self, kind: str, name: str) -> str:
        """'file (document N)' where a document was defined, for messages."""
        file, index = self.origins.get((kind, name), ("<unknown>", 0))
        return f"{file} (document {index})"


@dataclass
class InputFiles:
    """What a load read and what it skipped, for messages (nothing is skipped silently)."""

    documents: dict[str, int] = field(default_factory=dict)  # file -> documents read
    skipped: dict[str, str] = field(default_factory=dict)  # file -> why it was not read

    def describe(self) -> str:
        """'read a.yaml (3 documents), b.yaml (empty); skipped notes.txt (not .yaml/.yml)'."""
        read = [
            f"{file} ({count} document{'s' * (count != 1)})" if count else f"{file} (empty)"
            for file, count in self.documents.items()
        ]
        skipped = [f"{file} ({why})" for file, why in self.skipped.items()]
        text = f"read {_first(read)}" if read else "read no file"
        return text + (f"; skipped {_first(skipped)}" if skipped else "")


def _first(items: list[str], shown: int = 10) -> str:
    """The first ``shown`` items, and how many more (a directory may hold thousands)."""
    more = len(items) - shown
    return ", ".join(items[:shown]) + (f" and {more} more" if more > 0 else "")


def collect_files(paths: Iterable[str | Path], found: InputFiles | None = None) -> list[Path]:
    """The YAML files named by ``paths``: files as given, directories recursively, sorted; each
    file once however often it is named. ``found`` records what was skipped and why."""
    found = found if found is not None else InputFiles()
    files: list[Path] = []
    seen: set[Path] = set()
    issues: list[SpecIssue] = []

    def add(path: Path, named: bool) -> None:
        if not path.is_file():  # a FIFO would block the read; a socket or device is no spec
            found.skipped[str(path)] = "not a regular file"
        elif not named and path.suffix not in YAML_SUFFIXES:
            found.skipped[str(path)] = "not .yaml/.yml"
        elif path.resolve() not in seen:
            seen.add(path.resolve())
            files.append(path)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if not child.is_dir():
                    add(child, named=False)
        elif path.exists():
            add(path, named=True)
        else:
            issues.append(SpecIssue("no such file or directory", file=str(path)))
    if issues:
        raise SpecError(issues)
    if len(files) > MAX_FILES:
        raise SpecError.single(f"{len(files)} files; at most {MAX_FILES} are read at once")
    return files


def _read_text(path: Path, budget: list[int]) -> str:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise SpecError.single(f"cannot read: {error.strerror}", file=str(path)) from error
    if size > MAX_FILE_BYTES:
        raise SpecError.single(
            f"{size / 2**20:.1f} MiB is larger than the {MAX_FILE_BYTES // 2**20} MiB limit "
            "for one file",
            file=str(path),
        )
    budget[0] -= size
    if budget[0] < 0:
        raise SpecError.single(
            f"input is larger than {MAX_TOTAL_BYTES // 2**20} MiB in all", file=str(path)
        )
    try:
        return path.read_text("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError.single(f"not UTF-8 text (byte {error.start})", file=str(path)) from error
    except OSError as error:
        raise SpecError.single(f"cannot read: {error.strerror}", file=str(path)) from error


def parse_document(parsed: ParsedDocument, file: str) -> LoadedDocument:
    """Validate one parsed YAML document against its kind; raises SpecError with every issue."""
    data = parsed.data
    where = {"file": file, "document": parsed.index}
    if not isinstance(data, dict):
        raise SpecError.single(
            f"a document must be a mapping with apiVersion and kind, got {type(data).__name__}",
            line=parsed.line_of(()),
            **where,
        )
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise SpecError.single(
            f"kind {kind!r} is not one of: {', '.join(KINDS)}",
            field="kind",
            line=parsed.line_of(("kind",)),
            **where,
        )
    if data.get("apiVersion") != API_VERSION:
        raise SpecError.single(
            f"apiVersion must be {API_VERSION!r}, got {data.get('apiVersion')!r}",
            field="apiVersion",
            line=parsed.line_of(("apiVersion",)),
            **where,
        )
    try:
        obj = KINDS[kind].model_validate(data)
    except ValidationError as error:
        raise SpecError(_issues_from_validation(error, data, parsed, file)) from error
    return LoadedDocument(kind=kind, obj=obj, file=file, parsed=parsed)


def _issues_from_validation(
    error: ValidationError, data: Any, parsed: ParsedDocument, file: str
) -> list[SpecIssue]:
    errors = error.errors(include_url=False)
    # A union (model: catalog id | inline architecture) reports a mismatch for every branch; drop
    # "should be a string" for a mapping when the mapping branch said something more useful.
    if len(errors) > 1:
        errors = [
            e for e in errors if not (e["type"] == "string_type" and isinstance(e["input"], dict))
        ] or errors
    issues: list[SpecIssue] = []
    for item in errors:
        path = _data_path(data, item["loc"])
        issues.append(
            SpecIssue(
                message=_describe(item),
                file=file,
                document=parsed.index,
                line=parsed.line_of(path),
                field=dotted_path(path) or None,
            )
        )
    return issues


def _data_path(data: Any, loc: Sequence[str | int]) -> FieldPath:
    """The part of pydantic's ``loc`` that exists in the data (drops union-branch tags)."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if _has(current, part):
            current = current[part]
            path.append(part)
        elif isinstance(current, dict) and isinstance(part, str) and part[:1].islower():
            path.append(part)  # a missing field: name it, stop descending
            current = None
    return tuple(path)


def _has(container: Any, part: str | int) -> bool:
    if isinstance(container, dict):
        return part in container
    return isinstance(container, list) and isinstance(part, int) and 0 <= part < len(container)


def _describe(item: Any) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        return "unknown field (fields are camelCase; check the spelling)"
    if kind == "missing":
        return "required field is missing"
    message = str(item["msg"])
    value = item.get("input")
    if isinstance(value, str | int | float | bool) and kind not in (
        "value_error",
        "assertion_error",
    ):
        shown = repr(value)
        message += f", got {shown if len(shown) <= 60 else shown[:57] + '...'}"
    return message.removeprefix("Value error, ")


def load_documents(
    paths: Iterable[str | Path], found: InputFiles | None = None
) -> list[LoadedDocument]:
    """Every document under ``paths``, validated against its kind (no cross-document checks);
    ``found`` records each file read (with its document count) and each one skipped."""
    found = found if found is not None else InputFiles()
    documents: list[LoadedDocument] = []
    issues: list[SpecIssue] = []
    budget = [MAX_TOTAL_BYTES]
    for path in collect_files(paths, found):
        try:
            parsed_documents = parse_yaml_text(_read_text(path, budget), str(path))
        except SpecError as error:
            issues.extend(error.issues)
            continue
        found.documents[str(path)] = sum(p.data is not None for p in parsed_documents)
        for parsed in parsed_documents:
            if parsed.data is None:  # an empty document (e.g. a trailing '---')
                continue
            try:
                documents.append(parse_document(parsed, str(path)))
            except SpecError as error:
                issues.extend(error.issues)
    if issues:
        raise SpecError(issues)
    return documents


def load_bundle(paths: Iterable[str | Path], catalog: Catalog | None = None) -> SpecBundle:
    """Load, validate and resolve; raises SpecError listing every problem found."""
    found = InputFiles()
    bundle = build_bundle(load_documents(paths, found), catalog)
    return replace(bundle, inputs=found)


def build_bundle(documents: list[LoadedDocument], catalog: Catalog | None = None) -> SpecBundle:
    """Cross-document checks and catalog resolution over already validated documents."""
    issues: list[SpecIssue] = []
    seen: dict[tuple[str, str], LoadedDocument] = {}
    for doc in documents:
        key = (doc.kind, doc.obj.metadata.name)
        if key in seen:
            first = seen[key]
            issues.append(
                doc.issue(
                    f"{doc.kind} {key[1]!r} is defined twice (first in {first.file}, "
                    f"document {first.parsed.index})",
                    ("metadata", "name"),
                )
            )
        else:
            seen[key] = doc
    by_kind: dict[str, list[LoadedDocument]] = {kind: [] for kind in KINDS}
    for doc in seen.values():
        by_kind[doc.kind].append(doc)

    base = catalog or builtin_catalog()
    extended = base.extended(
        gpus=[d.obj for d in by_kind["GPUModel"]],
        models=[d.obj for d in by_kind["ModelArchitecture"]],
    )
    nodes = [_resolve_node(d, extended, issues) for d in by_kind["Node"]]
    workloads = [_resolve_workload(d, extended, issues) for d in by_kind["InferenceWorkload"]]
    profiles = [_resolve_profile(d, extended, issues) for d in by_kind["PerformanceProfile"]]
    if issues:
        raise SpecError(issues)
    return SpecBundle(
        catalog=extended,
        nodes=nodes,
        workloads=workloads,
        probes=[d.obj for d in by_kind["LatencyProbes"]],
        plans=[d.obj for d in by_kind["PlacementPlan"]],
        profiles=profiles,
        gpu_models=[d.obj for d in by_kind["GPUModel"]],
        model_architectures=[d.obj for d in by_kind["ModelArchitecture"]],
        origins={key: (doc.file, doc.parsed.index) for key, doc in seen.items()},
    )


def _resolve_node(doc: LoadedDocument, catalog: Catalog, issues: list[SpecIssue]) -> Node:
    node: Node = doc.obj
    groups = []
    for position, group in enumerate(node.spec.gpus):
        gpu_id = catalog.gpu_id(group.model)
        if gpu_id is None:
            near = catalog.gpu_near_matches(group.model)
            issues.append(
                doc.issue(
                    unknown_message("GPU", group.model, near),
                    ("spec", "gpus", position, "model"),
                )
            )
            gpu_id = group.model
        groups.append(group.model_copy(update={"model": gpu_id}))
    spec = node.spec.model_copy(update={"gpus": groups})
    return node.model_copy(update={"spec": spec})


def _resolve_workload(
    doc: LoadedDocument, catalog: Catalog, issues: list[SpecIssue]
) -> InferenceWorkload:
    workload: InferenceWorkload = doc.obj
    reference = workload.spec.model
    if not isinstance(reference, str):
        return workload  # an inline architecture
    model_id = catalog.model_id(reference)
    if model_id is None:
        near = catalog.model_near_matches(reference)
        issues.append(doc.issue(unknown_message("model", reference, near), ("spec", "model")))
        return workload
    spec = workload.spec.model_copy(update={"model": model_id})
    return workload.model_copy(update={"spec": spec})


def _resolve_profile(
    doc: LoadedDocument, catalog: Catalog, issues: list[SpecIssue]
) -> PerformanceProfile:
    profile: PerformanceProfile = doc.obj
    model_id = catalog.model_id(profile.spec.model)
    gpu_id = catalog.gpu_id(profile.spec.gpu)
    if model_id is None:
        near = catalog.model_near_matches(profile.spec.model)
        issues.append(
            doc.issue(unknown_message("model", profile.spec.model, near), ("spec", "model"))
        )
    if gpu_id is None:
        near = catalog.gpu_near_matches(profile.spec.gpu)
        issues.append(doc.issue(unknown_message("GPU", profile.spec.gpu, near), ("spec", "gpu")))
    if model_id is None or gpu_id is None:
        return profile
    spec = profile.spec.model_copy(update={"model": model_id, "gpu": gpu_id})
    return profile.model_copy(update={"spec": spec})
