"""Errors of the store (drawn in the package docstring, ``gridplace.api.store``)."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot do what was asked (base)."""


class DatabaseUnavailable(StoreError):
    """The database cannot be reached or refused the operation for a reason outside our data."""


class DatabaseDamaged(DatabaseUnavailable):
    """The SQLite file is gone, replaced or damaged; the message says which and what to do (it
    names the file, never credentials, so the API shows it)."""


class UnsupportedDatabase(StoreError):
    """A URL the store does not speak (only SQLite files and PostgreSQL are supported)."""


class GenerationConflict(StoreError):
    """A plan was computed from generation ``expected`` but the latest is ``current``."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(
            f"the plan was computed from generation {expected}, but generation {current} is "
            "the latest: fetch it and resubmit"
        )
        self.expected = expected
        self.current = current
