"""Issued tokens: node tokens (one node name each) and viewer tokens (read-only, under a label:
a CI runner, a dashboard), issued by the admin, listed, revoked. Only hashes are kept."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from gridplace.api.deps import AdminDep, StateDep
from gridplace.api.errors import NotFound
from gridplace.api.models import TokenInfo, TokenIssued, TokenListResponse
from gridplace.api.routes import AUTH_ERRORS, errors
from gridplace.api.routes.nodes import NodeName
from gridplace.api.security import Role, hash_issued_secret, new_issued_token
from gridplace.api.store import NodeTokenRecord

router = APIRouter(prefix="/v1/admin", tags=["admin"])
TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="The token's public id.")]
ViewerName = Annotated[
    str,
    Path(
        pattern=r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$",
        description="A label for who holds the token (e.g. github-ci).",
    ),
]


def _info(record: NodeTokenRecord) -> TokenInfo:
    return TokenInfo(
        token_id=record.token_id,
        node=record.node,
        role=record.role,
        created_at=record.created_at,
        revoked_at=record.revoked_at,
    )


@router.post(
    "/nodes/{name}/tokens",
    status_code=201,
    response_model=TokenIssued,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS),
)
def issue_token(name: NodeName, _: AdminDep, state: StateDep) -> TokenIssued:
    """A new token for node ``name`` (which need not be registered yet); shown only now."""
    return _issue(state, name, Role.NODE)


@router.post(
    "/viewers/{name}/tokens",
    status_code=201,
    response_model=TokenIssued,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS),
)
def issue_viewer_token(name: ViewerName, _: AdminDep, state: StateDep) -> TokenIssued:
    """A new read-only token labelled ``name``: reads nodes, topology, plans and explanations,
    validates and dry-runs plans, writes nothing (for CI). Shown only now."""
    return _issue(state, name, Role.VIEWER)


def _issue(state: StateDep, name: str, role: Role) -> TokenIssued:
    token_id, secret, token = new_issued_token(role)
    now = state.clock()
    state.store.add_node_token(token_id, name, hash_issued_secret(secret), now, role)
    return TokenIssued(token_id=token_id, node=name, role=role, token=token, created_at=now)


@router.get(
    "/tokens",
    response_model=TokenListResponse,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS),
)
def list_tokens(
    _: AdminDep,
    state: StateDep,
    node: Annotated[str | None, Query(pattern=r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")] = None,
) -> TokenListResponse:
    """Issued tokens (ids and dates, never secrets), optionally for one node."""
    return TokenListResponse(items=[_info(r) for r in state.store.node_tokens(node)])


@router.delete(
    "/tokens/{token_id}",
    status_code=204,
    response_class=Response,
    responses=errors(*AUTH_ERRORS, 404),
)
def revoke_token(token_id: TokenId, _: AdminDep, state: StateDep) -> Response:
    """Revoke an issued token: refused from now on by this server, by the others on the same
    PostgreSQL at once (notified) or within ``sync_interval_s`` at worst."""
    if state.store.revoke_node_token(token_id, state.clock()) is None:
        raise NotFound(f"no token {token_id}")
    return Response(status_code=204)
