"""Issued tokens' stored hashes: the fast keyed hash for new ones, old scrypt ones still verified
(and given the fast hash at their first check), wrong secrets and revocations refused either way."""

from __future__ import annotations

from gridplace.api.security import (
    FAST,
    SCRYPT,
    Role,
    TokenHash,
    fast_hash_for,
    hash_issued_secret,
    hash_secret,
    new_issued_token,
)
from gridplace.api.store import Store
from tests.api.conftest import ADMIN, FakeClock, MakeClient, node_doc, register


def test_the_fast_hash_is_keyed_by_its_own_salt() -> None:
    fast = hash_issued_secret("s3cret")
    assert fast.scheme == FAST and len(fast.salt_hex) == 32
    assert fast.matches("s3cret") and not fast.matches("s3cres") and not fast.matches("")
    again = hash_issued_secret("s3cret")
    assert again.hash_hex != fast.hash_hex  # equal secrets never share a digest
    assert not TokenHash(again.salt_hex, fast.hash_hex).matches("s3cret")
    assert not TokenHash(fast.salt_hex, f"{FAST}$00").matches("s3cret")
    assert not TokenHash("not-hex", fast.hash_hex).matches("s3cret")
    old = hash_secret("s3cret")
    assert old.scheme == SCRYPT and old.matches("s3cret") and not old.matches("other")
    replacement = fast_hash_for(old, "s3cret")
    assert replacement is not None and replacement.scheme == FAST
    assert replacement.matches("s3cret") and fast_hash_for(replacement, "s3cret") is None


def _store(client: object) -> Store:
    store: Store = client.app.state.gridplace.store  # type: ignore[attr-defined]
    return store


def _old_token(store: Store, node: str, clock: FakeClock) -> tuple[str, dict[str, str]]:
    """A node token stored as tokens were before the fast hash (salted scrypt)."""
    token_id, secret, token = new_issued_token(Role.NODE)
    store.add_node_token(token_id, node, hash_secret(secret), clock(), Role.NODE)
    return token_id, {"Authorization": f"Bearer {token}"}


def test_old_and_new_token_hashes_verify_and_revocation_holds(
    database_url: str, make_client: MakeClient, clock: FakeClock
) -> None:
    client = make_client(database_url)
    register(client, node_doc("a"))
    issued = client.post("/v1/admin/nodes/a/tokens", headers=ADMIN).json()
    new_id, new = issued["tokenId"], {"Authorization": f"Bearer {issued['token']}"}
    record = _store(client).node_token(new_id)
    assert record is not None and record.hash.scheme == FAST
    old_id, old = _old_token(_store(client), "a", clock)

    for headers in (new, old):
        assert client.get("/v1/nodes/a", headers=headers).status_code == 200
        wrong = {"Authorization": headers["Authorization"][:-2] + "zz"}
        assert client.get("/v1/nodes/a", headers=wrong).status_code == 401
    # The old token was given the fast hash at its first check; a second server (its own
    # empty cache) verifies it with that hash.
    rehashed = _store(client).node_token(old_id)
    assert rehashed is not None and rehashed.hash.scheme == FAST
    other = make_client(database_url)
    assert other.get("/v1/nodes/a", headers=old).status_code == 200
    assert other.get("/v1/nodes/a", headers=new).status_code == 200

    for token_id, headers in ((new_id, new), (old_id, old)):
        assert client.delete(f"/v1/admin/tokens/{token_id}", headers=ADMIN).status_code == 204
        assert client.get("/v1/nodes/a", headers=headers).status_code == 401
        other.app.state.gridplace.shared.sync()  # what its 1 s poll does
        assert other.get("/v1/nodes/a", headers=headers).status_code == 401


def test_a_rehash_never_undoes_a_revocation_or_a_newer_hash(
    make_client: MakeClient, clock: FakeClock
) -> None:
    store = _store(make_client())
    register(make_client(), node_doc("a"))
    token_id, _ = _old_token(store, "a", clock)
    stored = store.node_token(token_id)
    assert stored is not None
    store.revoke_node_token(token_id, clock())
    first = hash_issued_secret("x")
    assert store.rehash_node_token(token_id, stored.hash, first)
    # Another server's rehash from the same old hash finds it replaced already.
    assert not store.rehash_node_token(token_id, stored.hash, hash_issued_secret("x"))
    after = store.node_token(token_id)
    assert after is not None and after.hash == first and after.revoked_at == clock()
