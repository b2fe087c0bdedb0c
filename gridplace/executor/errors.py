"""The executor's errors; the tree is drawn in the package docstring (``gridplace.executor``).

Exceptions carry data (what failed, where); only the CLI maps them to exit codes.
"""

from __future__ import annotations


class ExecutorError(Exception):
    """Base of every error the node agent raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ExecutorError):
    """A bad agent option or weights manifest (the CLI exits 1)."""


class ApiError(ExecutorError):
    """The API did not do what the agent asked."""


class ApiUnavailable(ApiError):
    """No answer, a 5xx or a 429: try again at the next loop."""


class ApiRejected(ApiError):
    """A 4xx: the request itself is wrong (bad token, forbidden, invalid)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ApiAnswerRefused(ApiError):
    """The API answered something this agent must not act on (an assignment for another
    node): the answer is dropped and the last known plan kept."""


class DriverError(ExecutorError):
    """A runtime driver cannot build a command for an assignment."""


class LaunchFailed(ExecutorError):
    """The server process could not be started at all (missing binary, bad template)."""


class StateFileError(ExecutorError):
    """The local state file cannot be opened or is from an unknown schema."""


class CacheError(ExecutorError):
    """Fetching weights into the local cache failed."""


class FetchFailed(CacheError):
    """The source could not be read (HTTP error, missing file); a later fetch resumes."""


class ChecksumMismatch(CacheError):
    """The fetched bytes do not hash to the expected sha256 (the partial file is deleted)."""

    def __init__(self, message: str, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class CacheFull(CacheError):
    """The weights are larger than the cache, even with everything evictable evicted."""
