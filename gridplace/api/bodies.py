"""Reading gridplace documents out of a request body: YAML (one or many documents) or JSON (one
document, or a list of them), validated by the specs loader so every error names its field.

Owns: the document-count and list-length limits, which kinds an endpoint accepts, and parsing
off the event loop (``read_documents``: a worker thread, so a large body never stalls other
requests). Must not: touch the store; the size limit is the middleware's (``middleware.py``).
"""

from __future__ import annotations

import json as json_module
from collections.abc import Collection
from email.message import Message
from typing import Any, TypeVar

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from gridplace.api.errors import InvalidRequest
from gridplace.specs import SpecError, SpecIssue
from gridplace.specs.loader import LoadedDocument, parse_document
from gridplace.specs.yamlsafe import MAX_LIST_ITEMS, ParsedDocument, parse_yaml_text

BODY = "request body"
T = TypeVar("T")
# Where each kind is sent instead, for the message when it arrives at the wrong endpoint.
_HOME = {
    "Node": "PUT /v1/nodes/{name}",
    "LatencyProbes": "POST /v1/probes or POST /v1/nodes/{name}/probes",
    "Observations": "POST /v1/nodes/{name}/observations",
    "PlacementPlan": "nowhere: plans are computed by the server",
}


def decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRequest.field(
            None, f"the body is not UTF-8 text (byte {error.start})"
        ) from None


def split_documents(
    text: str, max_documents: int, max_list_items: int = MAX_LIST_ITEMS
) -> list[ParsedDocument]:
    """The body's documents: YAML documents, or the items of a top-level list (JSON arrays)."""
    parsed = [p for p in parse_yaml_text(text, BODY, max_list_items) if p.data is not None]
    if len(parsed) == 1 and isinstance(parsed[0].data, list):
        items = parsed[0].data
        lines = parsed[0].lines
        parsed = [
            ParsedDocument(
                data=item,
                index=position,
                lines={path[1:]: line for path, line in lines.items() if path[:1] == (position,)},
            )
            for position, item in enumerate(items)
        ]
    if not parsed:
        raise InvalidRequest.field(None, "the body holds no document")
    if len(parsed) > max_documents:
        raise InvalidRequest.field(
            "documents", f"{len(parsed)} documents; at most {max_documents} are accepted at once"
        )
    return parsed


def parse_body(
    body: bytes, max_documents: int, kinds: Collection[str], max_list_items: int = MAX_LIST_ITEMS
) -> list[LoadedDocument]:
    """Every document of ``body`` validated; ``SpecError`` (-> 422) lists all problems found.

    A list of the body longer than ``max_list_items`` (or than ``max_documents``, for a JSON array
    of documents) is refused while the YAML is composed, before it is built.
    """
    issues: list[SpecIssue] = []
    documents: list[LoadedDocument] = []
    list_limit = max(max_list_items, max_documents)
    for parsed in split_documents(decode(body), max_documents, list_limit):
        try:
            document = parse_document(parsed, BODY)
        except SpecError as error:
            issues.extend(error.issues)
            continue
        if document.kind not in kinds:
            where = _HOME.get(document.kind)
            issues.append(
                document.issue(
                    f"kind {document.kind} is not accepted here (expected "
                    f"{' or '.join(sorted(kinds))})" + (f"; send it to {where}" if where else ""),
                    ("kind",),
                )
            )
            continue
        documents.append(document)
    if issues:
        raise SpecError(issues)
    return documents


async def read_documents(
    request: Request, max_documents: int, kinds: Collection[str], max_list_items: int
) -> list[LoadedDocument]:
    """``parse_body`` of the request's body, in a worker thread (the event loop keeps serving)."""
    body = await request.body()
    return await run_in_threadpool(parse_body, body, max_documents, kinds, max_list_items)


def reparse(documents: list[dict[str, Any]], source: str) -> list[LoadedDocument]:
    """Documents stored as JSON (a plan's inputs) validated again, for a replan."""
    loaded = []
    for index, data in enumerate(documents):
        loaded.append(parse_document(ParsedDocument(data=data, index=index), source))
    return loaded


def json_body(body: bytes, content_type: str | None, adapter: TypeAdapter[T]) -> T:
    """``body`` validated as FastAPI validates a model body parameter (the same 422 issues, each
    under ``body``; JSON unless the content type says otherwise), for the agents' lean routes.

    A valid body is validated straight from its bytes; an invalid one again, as FastAPI does
    (parsed, then validated), so that its issues read exactly as on every other route."""
    if not body:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing])
    json = not content_type or _is_json(content_type)
    if json:
        try:
            return adapter.validate_json(body)
        except ValidationError:
            pass
    try:
        return adapter.validate_python(_loads(body) if json else body)  # bytes are refused
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
        ) from None


def _loads(body: bytes) -> Any:
    try:
        return json_module.loads(body)
    except json_module.JSONDecodeError as error:
        issue = {"type": "json_invalid", "loc": ("body", error.pos), "msg": "JSON decode error"}
        raise RequestValidationError([issue | {"input": {}, "ctx": {"error": error.msg}}]) from None


def _is_json(content_type: str) -> bool:
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )
