"""From device records to a ``specs.Node`` (and the derived ``GPUModel`` documents it needs).

Owns: grouping GPUs, the node's interconnect, claims, placeholders for what hardware cannot say
(region, provider, price), and which devices are left out as unhealthy.
Must not: call a vendor library (it takes ``DeviceInfo`` records), or write files.

Placeholders, used when the operator does not say (the CLI prints a note for each on stderr):
  name      this machine's host name, lowercased, with anything outside [a-z0-9.-_] as '-';
  region    "unassigned" (no probe or client traffic is measured against it, so the planner
            gives it no latency advantage; set --region);
  provider  "unassigned" (one failure domain of its own name; set --provider);
  price     0 USD/h (set --price-per-hour; a free node would attract every workload).
Unhealthy devices (lost, failed row remapping) are left out of ``spec.gpus`` and named in
``status.message``; when no device is healthy they are all listed and ``status.healthy`` is false.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gridplace.hal.device import DeviceInfo
from gridplace.hal.errors import HALError, InventoryError
from gridplace.hal.match import Benchmark, CatalogMatch, match_device
from gridplace.specs import (
    Catalog,
    ClaimLevel,
    GPUGroup,
    GPUModel,
    Interconnect,
    Metadata,
    Node,
    NodeSpec,
    NodeStatus,
    ThermalStatus,
    builtin_catalog,
)

PLACEHOLDER_REGION = "unassigned"
PLACEHOLDER_PROVIDER = "unassigned"
PLACEHOLDER_PRICE_PER_HOUR = 0.0


@dataclass(frozen=True)
class NodeOptions:
    """What the operator says about the node; None means "use the placeholder"."""

    name: str | None = None
    region: str | None = None
    provider: str | None = None
    price_per_hour: float | None = None
    network_gbps: float = 1.0
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Inventory:
    """A built node, the derived catalog entries it references, and how it was built."""

    node: Node
    gpu_models: list[GPUModel]
    matches: list[CatalogMatch]
    excluded: list[DeviceInfo]
    placeholders: list[str]

    def documents(self) -> list[dict[str, Any]]:
        """YAML-ready documents: derived GPUModels first (the Node refers to them), then Node."""
        return [model.to_yaml_dict() for model in self.gpu_models] + [self.node.to_yaml_dict()]


def host_node_name() -> str:
    """This machine's host name as a node name ('GPU-Box_7.lan' -> 'gpu-box_7.lan')."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", socket.gethostname().lower()).strip("-._")
    return slug[:63].rstrip("-._") or "node"


def node_interconnect(devices: Sequence[DeviceInfo]) -> tuple[Interconnect, str | None]:
    """NVLink or xGMI when every GPU links to every other (directly or over an NVSwitch); PCIe
    otherwise, with a note when only some pairs are linked (the Node cannot say which)."""
    if len(devices) < 2:
        return Interconnect.PCIE, None
    bus_ids = {d.pci_bus_id for d in devices}
    for kind in (Interconnect.NVLINK, Interconnect.XGMI):
        linked = [{p.peer_pci_bus_id for p in d.peers if p.kind is kind} for d in devices]
        if not any(linked):
            continue
        if all(
            "nvswitch" in peers or (bus_ids - {d.pci_bus_id}) <= peers
            for d, peers in zip(devices, linked, strict=True)
        ):
            return kind, None
        return Interconnect.PCIE, (
            f"{kind.value} links only some GPU pairs; the node is described as PCIe-connected"
        )
    return Interconnect.PCIE, None


def build_inventory(
    devices: Sequence[DeviceInfo],
    options: NodeOptions | None = None,
    catalog: Catalog | None = None,
    thermal: ThermalStatus | None = None,
    benchmarks: Mapping[int, Benchmark] | None = None,
) -> Inventory:
    """The Node for ``devices``; raises ``InventoryError`` when there is none to build.

    ``benchmarks`` maps device index to its micro-benchmark; when every listed GPU has one the
    node's claims are ``benchmarked``, else ``probed``.
    """
    options = options or NodeOptions()
    catalog = catalog or builtin_catalog()
    benchmarks = benchmarks or {}
    if not devices:
        raise InventoryError(["no GPUs were found"])
    healthy = [d for d in devices if d.healthy]
    listed = healthy or list(devices)
    excluded = [d for d in devices if not d.healthy] if healthy else []
    matches: list[CatalogMatch] = []
    reasons: list[str] = []
    for device in listed:
        try:
            matches.append(match_device(device, catalog, benchmarks.get(device.index)))
        except InventoryError as error:
            reasons.extend(error.reasons)
    if reasons:
        raise InventoryError(reasons)
    interconnect, link_note = node_interconnect(listed)
    messages = [f"left out {d.label}: {'; '.join(d.problems) or 'unhealthy'}" for d in excluded]
    messages += [f"{m.device.label}: {note}" for m in matches for note in m.notes]
    messages += [f"{d.label}: {problem}" for d in listed for problem in d.problems]
    if link_note:
        messages.append(link_note)
    placeholders = _placeholders(options)
    claims = ClaimLevel.PROBED
    if benchmarks and all(d.index in benchmarks for d in listed):
        claims = ClaimLevel.BENCHMARKED
    try:
        node = Node(
            metadata=Metadata(name=options.name or host_node_name(), labels=dict(options.labels)),
            spec=NodeSpec(
                region=options.region or PLACEHOLDER_REGION,
                provider=options.provider or PLACEHOLDER_PROVIDER,
                price_per_hour=(
                    options.price_per_hour
                    if options.price_per_hour is not None
                    else PLACEHOLDER_PRICE_PER_HOUR
                ),
                gpus=_groups(matches),
                interconnect=interconnect,
                network_gbps=options.network_gbps,
                claims=claims,
            ),
            status=NodeStatus(
                thermal=thermal,
                healthy=bool(healthy),
                message="; ".join(messages)[:1000] or None,
            ),
        )
    except ValidationError as error:
        raise _option_error(error) from error
    models = {
        m.gpu_id: GPUModel(metadata=Metadata(name=m.gpu_id), spec=m.spec)
        for m in matches
        if m.derived
    }
    return Inventory(node, list(models.values()), matches, excluded, placeholders)


def _groups(matches: Sequence[CatalogMatch]) -> list[GPUGroup]:
    """One group per catalog id and set of overrides, in device order."""
    counts: dict[tuple[Any, ...], int] = {}
    for match in matches:
        key = (
            match.gpu_id,
            match.memory_gib_override,
            match.bandwidth_override_gbps,
            match.pcie_override,
        )
        counts[key] = counts.get(key, 0) + 1
    return [
        GPUGroup(
            model=gpu_id, count=count, memory_gib=memory, memory_bandwidth_gbps=bandwidth, pcie=pcie
        )
        for (gpu_id, memory, bandwidth, pcie), count in counts.items()
    ]


def _placeholders(options: NodeOptions) -> list[str]:
    notes = []
    if options.name is None:
        notes.append(f"name: the host name ({host_node_name()}); set --name")
    if options.region is None:
        notes.append(f"region: {PLACEHOLDER_REGION!r}; set --region")
    if options.provider is None:
        notes.append(f"provider: {PLACEHOLDER_PROVIDER!r}; set --provider")
    if options.price_per_hour is None:
        notes.append(f"price: {PLACEHOLDER_PRICE_PER_HOUR:g} USD/h; set --price-per-hour")
    return notes


def _option_error(error: ValidationError) -> HALError:
    """An option that is not valid in a Node (a name with capitals, a negative price)."""
    problems = [
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
        for item in error.errors(include_url=False)
    ]
    return InventoryError(problems)
