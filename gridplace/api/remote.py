"""The command line's side of the HTTP API, for CI: validate and dry-run against a live grid.

Owns: the token a CI job presents (``GRIDPLACE_TOKEN``, or a file), the three calls ``validate
--api`` and ``diff --api`` make (``POST /v1/validate``, ``POST /v1/plans?dryRun=true``,
``GET /v1/plans/{generation}``), and turning HTTP outcomes into ``RemoteError`` with the server's
message (and, on a 422, its issues as ``SpecIssue``s). The transport is injectable.
Must not: plan or render.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from gridplace.api.models import BASE_GENERATION_HEADER, ValidationResponse
from gridplace.specs import PlacementPlan, SpecIssue
from gridplace.specs.loader import LoadedDocument

M = TypeVar("M", bound=BaseModel)
TOKEN_ENV = "GRIDPLACE_TOKEN"
MAX_TOKEN_FILE_BYTES = 4096
TIMEOUT_S = 30.0
# A dry run solves a plan: wait as long as the server may take to queue and solve one.
PLAN_TIMEOUT_S = 300.0


class RemoteError(Exception):
    """The API could not be reached or refused the request; ``issues`` on a 422."""

    def __init__(self, message: str, issues: list[SpecIssue] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.issues = issues or []


def read_token(token_file: Path | None) -> str:
    """The token from ``token_file`` if given, else from ``GRIDPLACE_TOKEN``."""
    if token_file is not None:
        try:
            with token_file.open("rb") as handle:
                raw = handle.read(MAX_TOKEN_FILE_BYTES + 1)
        except OSError as error:
            raise RemoteError(f"cannot read token file {token_file}: {error.strerror}") from None
        if len(raw) > MAX_TOKEN_FILE_BYTES:
            raise RemoteError(f"token file {token_file} is over {MAX_TOKEN_FILE_BYTES} bytes")
        token = raw.decode("utf-8", errors="replace").strip()
        if not token:
            raise RemoteError(f"token file {token_file} is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise RemoteError(
            f"no token: set {TOKEN_ENV} or pass --token-file (a viewer token will do)"
        )
    return token


def request_body(documents: list[LoadedDocument]) -> list[dict[str, Any]]:
    """Documents as the API takes them: a JSON list of camelCase documents."""
    return [document.obj.to_yaml_dict() for document in documents]


class GridApi:
    """A gridplace server at ``url``, called with ``token``."""

    def __init__(self, url: str, token: str, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
            timeout=httpx.Timeout(TIMEOUT_S, read=PLAN_TIMEOUT_S),
        )

    def __enter__(self) -> GridApi:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise RemoteError(f"{method} {self.url}{path}: {error}") from None
        if response.status_code >= 400:
            raise _refusal(method, f"{self.url}{path}", response)
        return response

    def validate(self, documents: list[LoadedDocument]) -> ValidationResponse:
        """``POST /v1/validate``: whether each workload can be placed, with reasons."""
        response = self._send("POST", "/v1/validate", json=request_body(documents))
        return _parse(ValidationResponse, response)

    def dry_run(self, documents: list[LoadedDocument]) -> tuple[PlacementPlan, int]:
        """The plan these documents would get now, and the generation it was computed from."""
        response = self._send(
            "POST", "/v1/plans", params={"dryRun": "true"}, json=request_body(documents)
        )
        base = response.headers.get(BASE_GENERATION_HEADER, "0")
        if not base.isdigit():
            raise RemoteError(f"{response.url}: {BASE_GENERATION_HEADER} is {base!r}, not a number")
        return _parse(PlacementPlan, response), int(base)

    def plan(self, generation: int) -> PlacementPlan:
        return _parse(PlacementPlan, self._send("GET", f"/v1/plans/{generation}"))


def _parse(model: type[M], response: httpx.Response) -> M:
    """The answer as ``model``; a ``RemoteError`` when it is not one (not a gridplace server?)."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as error:
        raise RemoteError(
            f"{response.request.method} {response.url}: the answer is not a {model.__name__} "
            f"({error.error_count()} problems, e.g. {error.errors()[0]['msg']}); is this a "
            "gridplace API?"
        ) from None


def _refusal(method: str, url: str, response: httpx.Response) -> RemoteError:
    try:
        body = response.json()
        message = str(body.get("message", response.reason_phrase))
        raw_issues = body.get("issues") or []
    except (ValueError, AttributeError):
        message, raw_issues = response.reason_phrase, []
    issues = [
        SpecIssue(
            message=str(item.get("message", "")),
            file=url,
            document=item.get("document"),
            line=item.get("line"),
            field=item.get("field"),
        )
        for item in raw_issues
        if isinstance(item, dict)
    ]
    return RemoteError(f"{method} {url}: HTTP {response.status_code}: {message}", issues)
