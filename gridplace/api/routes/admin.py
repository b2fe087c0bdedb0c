"""Node tokens: issued by the admin for one node name, listed, revoked. Only hashes are kept."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from gridplace.api.deps import AdminDep, StateDep
from gridplace.api.errors import NotFound
from gridplace.api.models import TokenInfo, TokenIssued, TokenListResponse
from gridplace.api.routes import AUTH_ERRORS, errors
from gridplace.api.routes.nodes import NodeName
from gridplace.api.security import hash_secret, new_node_token
from gridplace.api.store import NodeTokenRecord

router = APIRouter(prefix="/v1/admin", tags=["admin"])
TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="The token's public id.")]


def _info(record: NodeTokenRecord) -> TokenInfo:
    return TokenInfo(
        token_id=record.token_id,
        node=record.node,
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
    token_id, secret, token = new_node_token()
    now = state.clock()
    state.store.add_node_token(token_id, name, hash_secret(secret), now)
    return TokenIssued(token_id=token_id, node=name, token=token, created_at=now)


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
    """Revoke a node token: refused from now on by this server (by others within
    ``token_cache_s``)."""
    if state.store.revoke_node_token(token_id, state.clock()) is None:
        raise NotFound(f"no token {token_id}")
    state.verified.forget_token_id(token_id)
    return Response(status_code=204)
