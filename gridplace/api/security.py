"""Tokens: making them, hashing them for storage, and checking one a request presents.

Three roles hold tokens (``Role``). The admin token (planners, operators) may do everything. A
node token is issued by the admin for one node name and may write only that node's inventory,
telemetry, probes and state, and read its own assignments: one leaked agent token cannot register
fake GPUs under another provider's name. A viewer token is issued by the admin under a label (a
CI runner, a dashboard) and reads, validates and dry-runs plans but writes nothing. Which routes
each role may call is the table in ``roles.py``.

An issued token reads ``gpn.<token id>.<secret>`` (node) or ``gpv.<token id>.<secret>`` (viewer):
the id finds the stored record without trying every hash; the prefix must match the stored role.
Only a one-way hash of the secret is stored. An issued secret is 256 random bits: no guessing
reaches it, so a slow hash would protect nothing and only cost every server a core's minute per
10,000 agents after each restart. Issued tokens are hashed with HMAC-SHA-256 keyed by a random
salt of their own (``hash_issued_secret``: ~1 us; a leaked table still reveals no token, and equal
secrets never share a digest). Tokens issued before are stored as salted scrypt (~4 ms each):
they still verify, and the first server that verifies one stores its fast hash in place
(``fast_hash_for``). The generated admin token keeps scrypt (``hash_secret``): it is checked once
per process, and a configured one is never hashed. A token that verified is remembered for
``token_cache_s`` under a SHA-256 of the token (never the token itself). Revocation does not wait
for that: every request is checked against the revoked set (``shared.SharedState``).

Must not: talk HTTP (``deps`` turns outcomes into 401/403) or keep a token in clear anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """Who a token speaks for: see the module docstring and ``roles.ROUTE_ROLES``."""

    ADMIN = "admin"
    NODE = "node"
    VIEWER = "viewer"


# The prefix of an issued token names its role (the admin token is configured or generated).
TOKEN_PREFIXES = {Role.NODE: "gpn", Role.VIEWER: "gpv"}
NODE_TOKEN_PREFIX = TOKEN_PREFIXES[Role.NODE]
ADMIN_TOKEN_PREFIX = "gpa"
# scrypt cost: 2**11 x 8 uses 2 MiB and ~4 ms on one core. The salt and the one-way hash are what
# matter for random 256-bit secrets (a leaked table reveals no token); a password-strength cost
# would only make every server start slow. The cost is stored with each hash, so changing these
# affects new hashes only.
SCRYPT_N = 2**11
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT = "scrypt"
FAST = "hmac-sha256"  # issued tokens: HMAC-SHA-256(key = the token's salt, message = secret)
CACHE_MAX_ENTRIES = 200_000  # a grid of 10,000 agents and its viewers, many times over


@dataclass(frozen=True)
class TokenHash:
    """A salted hash: ``salt_hex``, and ``hash_hex`` as ``hmac-sha256$<hex digest>`` (issued
    tokens) or ``scrypt$N$r$p$<hex digest>`` (the admin token; issued tokens before the fast
    hash). An unknown scheme matches nothing."""

    salt_hex: str
    hash_hex: str

    @property
    def scheme(self) -> str:
        return self.hash_hex.partition("$")[0]

    def matches(self, secret: str) -> bool:
        try:
            salt = bytes.fromhex(self.salt_hex)
            if self.scheme == FAST:
                return hmac.compare_digest(
                    _keyed(secret, salt).hex(), self.hash_hex[len(FAST) + 1 :]
                )
            scheme, n, r, p, digest = self.hash_hex.split("$")
            costs = int(n), int(r), int(p)
        except ValueError:
            return False
        if scheme != SCRYPT:
            return False
        computed = _scrypt(secret, salt, *costs)
        return hmac.compare_digest(computed.hex(), digest)

    def as_dict(self) -> dict[str, str]:
        return {"salt": self.salt_hex, "hash": self.hash_hex}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> TokenHash:
        return cls(salt_hex=data["salt"], hash_hex=data["hash"])


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)


def _keyed(secret: str, salt: bytes) -> bytes:
    return hmac.digest(salt, secret.encode("utf-8"), "sha256")


def hash_secret(secret: str) -> TokenHash:
    """The slow hash (scrypt), for the generated admin token."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P).hex()
    return TokenHash(
        salt_hex=salt.hex(), hash_hex=f"{SCRYPT}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${digest}"
    )


def hash_issued_secret(secret: str) -> TokenHash:
    """The fast keyed hash of an issued token's 256-bit random secret (module docstring)."""
    salt = secrets.token_bytes(16)
    return TokenHash(salt_hex=salt.hex(), hash_hex=f"{FAST}${_keyed(secret, salt).hex()}")


def fast_hash_for(stored: TokenHash, secret: str) -> TokenHash | None:
    """The fast hash to store in place of ``stored`` once ``secret`` has matched it; None when
    ``stored`` is fast already."""
    return None if stored.scheme == FAST else hash_issued_secret(secret)


def new_admin_token() -> str:
    return f"{ADMIN_TOKEN_PREFIX}.{secrets.token_urlsafe(32)}"


def new_issued_token(role: Role = Role.NODE) -> tuple[str, str, str]:
    """(token id, secret, the full token to hand out once) of an issued token of ``role``."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return token_id, secret, f"{TOKEN_PREFIXES[role]}.{token_id}.{secret}"


def split_issued_token(token: str) -> tuple[Role, str, str] | None:
    """(role, token id, secret) of an issued token; None when ``token`` is not shaped like one."""
    parts = token.split(".")
    roles = {prefix: role for role, prefix in TOKEN_PREFIXES.items()}
    if len(parts) != 3 or parts[0] not in roles or not parts[1] or not parts[2]:
        return None
    return roles[parts[0]], parts[1], parts[2]


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: its ``role`` and, for an issued token, the name it was issued for
    (a node's name, or a viewer's label)."""

    role: Role
    name: str | None = None
    token_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def node(self) -> str | None:
        """The node a node token belongs to (None for the admin and viewers)."""
        return self.name if self.role is Role.NODE else None

    @property
    def rate_key(self) -> str:
        return "admin" if self.is_admin else f"{self.role.value}:{self.name}"

    def may_act_for(self, node: str) -> bool:
        """A node token is scoped to its own node; the other roles are limited by route only."""
        return self.role is not Role.NODE or self.name == node


ADMIN = Principal(role=Role.ADMIN)


class VerifiedTokens:
    """Tokens that passed the slow check recently: digest -> (principal, expiry)."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8")).hexdigest()

    def get(self, token: str) -> Principal | None:
        key = self._key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[1] < time.monotonic():
                del self._entries[key]
                return None
            return entry[0]

    def put(self, token: str, principal: Principal) -> None:
        if self._ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= CACHE_MAX_ENTRIES:
                self._entries.clear()  # rare; the next requests simply pay the hash again
            self._entries[self._key(token)] = (principal, time.monotonic() + self._ttl_s)

    def forget_token_ids(self, token_ids: set[str]) -> None:
        with self._lock:
            for key in [k for k, (p, _) in self._entries.items() if p.token_id in token_ids]:
                del self._entries[key]
