"""Reading gridplace documents out of a request body: YAML (one or many documents) or JSON (one
document, or a list of them), validated by the specs loader so every error names its field.

Owns: the document-count limit and which kinds an endpoint accepts.
Must not: touch the store; the size limit is the middleware's (``middleware.py``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from gridplace.api.errors import InvalidRequest
from gridplace.specs import SpecError, SpecIssue
from gridplace.specs.loader import LoadedDocument, parse_document
from gridplace.specs.yamlsafe import ParsedDocument, parse_yaml_text

BODY = "request body"
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


def split_documents(text: str, max_documents: int) -> list[ParsedDocument]:
    """The body's documents: YAML documents, or the items of a top-level list (JSON arrays)."""
    parsed = [p for p in parse_yaml_text(text, BODY) if p.data is not None]
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


def parse_body(body: bytes, max_documents: int, kinds: Collection[str]) -> list[LoadedDocument]:
    """Every document of ``body`` validated; ``SpecError`` (-> 422) lists all problems found."""
    issues: list[SpecIssue] = []
    documents: list[LoadedDocument] = []
    for parsed in split_documents(decode(body), max_documents):
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


def parse_one(body: bytes, kind: str) -> Any:
    """The single document of ``kind`` in ``body`` (its validated object)."""
    documents = parse_body(body, 1, {kind})
    return documents[0].obj


def reparse(documents: list[dict[str, Any]], source: str) -> list[LoadedDocument]:
    """Documents stored as JSON (a plan's inputs) validated again, for a replan."""
    loaded = []
    for index, data in enumerate(documents):
        loaded.append(parse_document(ParsedDocument(data=data, index=index), source))
    return loaded
