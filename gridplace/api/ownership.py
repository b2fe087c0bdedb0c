"""Who owns which field of a registered Node: the operator (admin token) or the node's agent.

The agent reports hardware facts (GPUs, interconnect, address) and telemetry (status). Placement
facts are the operator's: region, provider, price, network uplink, reliability, labels, and claims
stronger than the agent's own (``benchmarked`` or ``attested`` set by the operator stay while the
GPUs are the same). When a node token re-registers a node:

- a placement field the agent left at its placeholder (``gridplace agent`` without ``--region``
  sends ``unassigned``) keeps the stored value;
- a placement field the agent set to another value is refused (409) with both values named: the
  operator changes placement with the admin token, never silently through an agent flag.

The admin token replaces the whole document, as before. Must not: touch the store or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gridplace.hal.inventory import (
    PLACEHOLDER_PRICE_PER_HOUR,
    PLACEHOLDER_PROVIDER,
    PLACEHOLDER_REGION,
)
from gridplace.specs import ClaimLevel, Node

DEFAULT_NETWORK_GBPS = 1.0  # what an agent sends when nobody measured the uplink


@dataclass(frozen=True)
class PlacementField:
    """One operator-owned field of ``NodeSpec``: its YAML name and what "not given" looks like."""

    attribute: str
    yaml_name: str
    placeholder: Any


PLACEMENT_FIELDS = (
    PlacementField("region", "spec.region", PLACEHOLDER_REGION),
    PlacementField("provider", "spec.provider", PLACEHOLDER_PROVIDER),
    PlacementField("price_per_hour", "spec.pricePerHour", PLACEHOLDER_PRICE_PER_HOUR),
    PlacementField("network_gbps", "spec.networkGbps", DEFAULT_NETWORK_GBPS),
    PlacementField("reliability", "spec.reliability", None),
)


@dataclass(frozen=True)
class OwnershipConflict:
    """An agent's value for an operator-owned field that differs from the stored one."""

    field: str
    stored: Any
    sent: Any

    def message(self, node: str) -> str:
        return (
            f"node {node!r} is registered with {self.field} {self.stored!r}, but its agent sent "
            f"{self.sent!r}: placement facts are the operator's (change them with the admin "
            "token, or start the agent without that flag)"
        )


def merge_agent_registration(stored: Node, sent: Node) -> tuple[Node, list[OwnershipConflict]]:
    """The node to store when ``stored``'s agent sends ``sent``, and what it may not change."""
    conflicts: list[OwnershipConflict] = []
    spec_update: dict[str, Any] = {}
    for placement in PLACEMENT_FIELDS:
        kept = getattr(stored.spec, placement.attribute)
        value = getattr(sent.spec, placement.attribute)
        if value != kept and value != placement.placeholder:
            conflicts.append(OwnershipConflict(placement.yaml_name, kept, value))
        spec_update[placement.attribute] = kept
    if sent.metadata.labels and sent.metadata.labels != stored.metadata.labels:
        conflicts.append(
            OwnershipConflict("metadata.labels", stored.metadata.labels, sent.metadata.labels)
        )
    if sent.spec.address is None:
        spec_update["address"] = stored.spec.address
    if _keeps_claims(stored, sent):
        spec_update["claims"] = stored.spec.claims
    merged = sent.model_copy(
        update={
            "metadata": sent.metadata.model_copy(update={"labels": stored.metadata.labels}),
            "spec": sent.spec.model_copy(update=spec_update),
        }
    )
    return merged, conflicts


def _keeps_claims(stored: Node, sent: Node) -> bool:
    """Claims the operator raised above ``probed`` hold while the hardware is the same."""
    return (
        stored.spec.claims.rank > max(sent.spec.claims.rank, ClaimLevel.PROBED.rank)
        and stored.spec.gpus == sent.spec.gpus
        and stored.spec.interconnect == sent.spec.interconnect
    )
