"""Errors of the HTTP service and the one place they become HTTP answers.

    ServiceError                base; carries .status, .code, .message, .issues
        Unauthorized            401 no token, or one nobody issued
        Forbidden               403 a valid token that may not touch this resource
        NotFound                404 no such node, plan or token
        Conflict                409 a plan write based on a stale generation
        PayloadTooLarge         413 a body over ``max_body_bytes``
        InvalidRequest          422 the body or a parameter is wrong; .issues name each field
        RateLimited             429 a node over its token bucket; .retry_after_s
        Unavailable             503 the database or the solver cannot answer now

Store errors (``store.errors``) and ``SpecError`` (the specs package) are mapped here too, so the
routes raise what they mean and never build a response for an error themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gridplace.specs import SpecIssue


@dataclass(frozen=True)
class Issue:
    """One problem with a request: the field at fault and what was expected there."""

    message: str
    field: str | None = None
    document: int | None = None
    line: int | None = None

    @classmethod
    def from_spec(cls, issue: SpecIssue) -> Issue:
        return cls(
            message=issue.message, field=issue.field, document=issue.document, line=issue.line
        )


class ServiceError(Exception):
    """An answer other than success; the subclass fixes the status and the code."""

    status = 500
    code = "internal"

    def __init__(self, message: str, issues: list[Issue] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.issues = issues or []


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"

    def __init__(
        self, message: str, current_generation: int | None, issues: list[Issue] | None = None
    ) -> None:
        super().__init__(message, issues)
        self.current_generation = current_generation


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"


class InvalidRequest(ServiceError):
    status = 422
    code = "invalid"

    @classmethod
    def field(cls, field: str | None, message: str) -> InvalidRequest:
        return cls(message, [Issue(message=message, field=field)])


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))  # Retry-After takes whole seconds


class Unavailable(ServiceError):
    status = 503
    code = "unavailable"
