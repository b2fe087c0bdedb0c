"""The built-in catalogs of GPUs and model architectures, and lookups by id or by alias.

The catalogs are package data (``data/gpus.yaml``, ``data/models.yaml``), multi-document YAML of
``GPUModel`` and ``ModelArchitecture`` documents, each entry with its sources. A GPU is found by
its id, by a name NVML/amdsmi reports, or by PCI device id; a model by its id or Hugging Face repo.
Users extend or override entries with their own documents (``Catalog.extended``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from gridplace.specs.errors import SpecError, SpecIssue
from gridplace.specs.gpu import GPUModel, GPUModelSpec
from gridplace.specs.model_arch import ModelArchitecture, ModelArchitectureSpec
from gridplace.specs.yamlsafe import parse_yaml_text


def _key(name: str) -> str:
    """Lookups ignore case and surrounding blanks."""
    return name.strip().lower()


@dataclass(frozen=True)
class Catalog:
    """GPU and model entries by id, with alias indexes. Immutable; ``extended`` makes a new one."""

    gpus: dict[str, GPUModelSpec]
    models: dict[str, ModelArchitectureSpec]
    _gpu_aliases: dict[str, str] = field(default_factory=dict, repr=False)
    _model_aliases: dict[str, str] = field(default_factory=dict, repr=False)
    _gpu_pci_ids: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls, gpus: dict[str, GPUModelSpec], models: dict[str, ModelArchitectureSpec]
    ) -> Catalog:
        gpu_aliases: dict[str, str] = {}
        pci_ids: dict[str, str] = {}
        for gpu_id, gpu in gpus.items():
            gpu_aliases[_key(gpu_id)] = gpu_id
            for name in (gpu.display_name, *gpu.reported_names):
                gpu_aliases.setdefault(_key(name), gpu_id)
            for pci_id in gpu.pci_device_ids:
                pci_ids.setdefault(pci_id, gpu_id)
        model_aliases: dict[str, str] = {}
        for model_id, model in models.items():
            model_aliases[_key(model_id)] = model_id
            names = [model.hugging_face_repo] if model.hugging_face_repo else []
            for name in (*names, *model.aliases):
                model_aliases.setdefault(_key(name), model_id)
        return cls(gpus, models, gpu_aliases, model_aliases, pci_ids)

    # -- lookups ---------------------------------------------------------------------------

    def gpu_id(self, reference: str) -> str | None:
        """The catalog id for an id or reported name, or None."""
        return self._gpu_aliases.get(_key(reference))

    def gpu_id_by_pci(self, pci_device_id: str) -> str | None:
        return self._gpu_pci_ids.get(pci_device_id.lower())

    def model_id(self, reference: str) -> str | None:
        """The catalog id for an id or Hugging Face repo name, or None."""
        return self._model_aliases.get(_key(reference))

    def gpu(self, reference: str) -> GPUModelSpec:
        """The GPU entry; raises SpecError listing near matches when unknown."""
        gpu_id = self.gpu_id(reference)
        if gpu_id is None:
            raise SpecError.single(
                unknown_message("GPU", reference, self.gpu_near_matches(reference))
            )
        return self.gpus[gpu_id]

    def model(self, reference: str) -> ModelArchitectureSpec:
        """The model entry; raises SpecError listing near matches when unknown."""
        model_id = self.model_id(reference)
        if model_id is None:
            raise SpecError.single(
                unknown_message("model", reference, self.model_near_matches(reference))
            )
        return self.models[model_id]

    def gpu_near_matches(self, reference: str, limit: int = 5) -> list[str]:
        return _near(reference, self._gpu_aliases, limit)

    def model_near_matches(self, reference: str, limit: int = 5) -> list[str]:
        return _near(reference, self._model_aliases, limit)

    # -- extension -------------------------------------------------------------------------

    def extended(
        self, gpus: Iterable[GPUModel] = (), models: Iterable[ModelArchitecture] = ()
    ) -> Catalog:
        """A catalog with the user's entries added (an entry with an existing id replaces it)."""
        new_gpus = dict(self.gpus)
        new_gpus.update({doc.metadata.name: doc.spec for doc in gpus})
        new_models = dict(self.models)
        new_models.update({doc.metadata.name: doc.spec for doc in models})
        return Catalog.build(new_gpus, new_models)


def unknown_message(what: str, reference: str, near: list[str]) -> str:
    """'unknown GPU 'rtx-4909'; did you mean: rtx-4090, rtx-4080?' (or a pointer to the list)."""
    hint = (
        f"did you mean: {', '.join(near)}?" if near else f"see `gridplace catalog {what.lower()}s`"
    )
    return f"unknown {what} {reference!r}; {hint}"


def _near(reference: str, aliases: dict[str, str], limit: int) -> list[str]:
    """Catalog ids whose id or alias is close to ``reference`` (closest first, no repeats)."""
    matches = difflib.get_close_matches(_key(reference), list(aliases), n=limit * 3, cutoff=0.6)
    ids: list[str] = []
    for match in matches:
        if aliases[match] not in ids:
            ids.append(aliases[match])
    return ids[:limit]


def _read_package_documents(filename: str) -> list[tuple[int, object]]:
    text = resources.files("gridplace.specs").joinpath("data", filename).read_text("utf-8")
    return [
        (doc.index, doc.data) for doc in parse_yaml_text(text, f"gridplace/specs/data/{filename}")
    ]


@cache
def builtin_catalog() -> Catalog:
    """The catalogs shipped as package data, validated (a broken entry is a bug: it raises)."""
    issues: list[SpecIssue] = []
    gpus: dict[str, GPUModelSpec] = {}
    for index, data in _read_package_documents("gpus.yaml"):
        try:
            doc = GPUModel.model_validate(data)
        except ValueError as error:
            issues.append(SpecIssue(str(error), file="gpus.yaml", document=index))
            continue
        gpus[doc.metadata.name] = doc.spec
    models: dict[str, ModelArchitectureSpec] = {}
    for index, data in _read_package_documents("models.yaml"):
        try:
            model_doc = ModelArchitecture.model_validate(data)
        except ValueError as error:
            issues.append(SpecIssue(str(error), file="models.yaml", document=index))
            continue
        models[model_doc.metadata.name] = model_doc.spec
    if issues:
        raise SpecError(issues)
    return Catalog.build(gpus, models)
