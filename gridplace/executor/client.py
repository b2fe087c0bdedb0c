"""The agent's side of the HTTP API contract (``gridplace.api.models`` documents it).

Owns: the calls an agent makes with its node token — register its Node, heartbeat with
telemetry, pull assignments (``If-None-Match`` with the last ETag: 304 while nothing changed),
report state, post engine observations — and turning HTTP outcomes into ``ApiUnavailable`` (try
again) or ``ApiRejected``, and answers it must not act on (assignments naming another node) into
``ApiAnswerRefused``.
Must not: import ``gridplace.api`` (imports flow executor <- api); bodies are plain JSON here.
The transport is injectable (``httpx.MockTransport`` in unit tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from gridplace.executor.errors import ApiAnswerRefused, ApiRejected, ApiUnavailable
from gridplace.executor.pipeline import StagePeer, StageRole, peers_of
from gridplace.specs import Assignment
from gridplace.specs.plan import Prewarm

DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Desired:
    """The latest plan's replicas on this node, and the later pipeline stages it holds."""

    generation: int | None
    plan: str | None
    assignments: list[Assignment]
    prewarm: list[Prewarm] = field(default_factory=list)  # this node's warm standbys
    stages: list[StageRole] = field(default_factory=list)


class ApiClient:
    def __init__(
        self,
        base_url: str,
        node: str,
        token: str,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.node = node
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
            timeout=timeout_s,
        )
        self._etag: str | None = None
        self._desired: Desired | None = None

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ApiUnavailable(f"{method} {path}: {error}") from error
        if response.status_code == 429 or response.status_code >= 500:
            raise ApiUnavailable(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            try:
                message = str(response.json().get("message", response.text))
            except ValueError:
                message = response.text
            raise ApiRejected(
                f"{method} {path}: HTTP {response.status_code}: {message}", response.status_code
            )
        return response

    def register(self, node_document: dict[str, Any]) -> bool:
        """PUT the Node document; True when it was newly registered (201)."""
        response = self._send("PUT", f"/v1/nodes/{self.node}", json=node_document)
        return response.status_code == 201

    def heartbeat(self, healthy: bool, thermal: dict[str, Any] | None, message: str | None) -> None:
        body: dict[str, Any] = {"healthy": healthy}
        if thermal is not None:
            body["thermal"] = thermal
        if message:
            body["message"] = message[:1000]
        # The agent reads nothing back: the server answers 204 from one UPDATE (RFC 7240).
        self._send(
            "POST",
            f"/v1/nodes/{self.node}/telemetry",
            json=body,
            headers={"Prefer": "return=minimal"},
        )

    def assignments(self) -> Desired:
        """The desired replicas; the cached answer when the API says 304 (unchanged)."""
        headers = {"If-None-Match": self._etag} if self._etag and self._desired else {}
        response = self._send("GET", f"/v1/nodes/{self.node}/assignments", headers=headers)
        if response.status_code == 304 and self._desired is not None:
            return self._desired
        data = response.json()
        assignments = [Assignment.model_validate(a) for a in data.get("assignments", [])]
        prewarm = [Prewarm.model_validate(p) for p in data.get("prewarm") or []]
        stages = [
            StageRole(
                str(role["pipeline"]),
                int(role["stage"]),
                Assignment.model_validate(role["assignment"]),
            )
            for role in data.get("stages") or []
        ]
        nodes = {a.node for a in assignments} | {p.node for p in prewarm}
        foreign = sorted(nodes - {self.node})
        foreign += sorted(
            f"{role.pipeline} stage {role.stage}"
            for role in stages
            if not 0 < role.stage < len(role.assignment.stages or [])
            or (role.assignment.stages or [])[role.stage].node != self.node
        )
        if foreign:  # a server bug or an impostor: running another node's replicas is never right
            raise ApiAnswerRefused(
                f"the assignments for node {self.node!r} name node(s) {', '.join(foreign)}; "
                "the whole answer is refused and the last known plan kept"
            )
        desired = Desired(
            generation=data.get("generation"),
            plan=data.get("plan"),
            assignments=assignments,
            prewarm=prewarm,
            stages=stages,
        )
        self._etag = response.headers.get("ETag")
        self._desired = desired
        return desired

    def pipelines(self) -> dict[str, tuple[StagePeer, ...]]:
        """Every stage, as the API judges it now, of the pipelines this node holds a stage of."""
        response = self._send("GET", f"/v1/nodes/{self.node}/pipelines")
        return {
            str(status["pipeline"]): peers_of(status)
            for status in response.json().get("pipelines", [])
        }

    def report(self, report: dict[str, Any]) -> None:
        self._send("PUT", f"/v1/nodes/{self.node}/state", json=report)

    def post_observations(self, document: dict[str, Any]) -> None:
        """POST an ``Observations`` document (camelCase JSON) for this node."""
        self._send("POST", f"/v1/nodes/{self.node}/observations", json=document)
