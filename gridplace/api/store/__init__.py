"""The service's store: SQLAlchemy 2 over an SQLite file (default, WAL mode) or PostgreSQL.

Owns: the tables (``schema``), their Alembic migrations (``migrations``, shipped in the package
and run at startup by ``engine.migrate``), opening a database (``engine``) and every query
(``store.Store``), which hands out plain records (``records``).
Must not: decide anything about planning or HTTP; it keeps what it is given and says when it
cannot.

Errors (``errors.py``)::

    StoreError                      base
        DatabaseUnavailable         the database cannot be reached or stays locked (API: 503)
            DatabaseDamaged         the SQLite file was deleted, replaced or is damaged: every
                                    request refused, writes included (API: 503, /healthz says so)
        UnsupportedDatabase         a URL that is neither sqlite:///FILE nor postgresql+psycopg://
        GenerationConflict          a plan computed from a generation that is no longer the
                                    latest; .expected, .current (API: 409)
"""

from gridplace.api.store.engine import create_store_engine, migrate
from gridplace.api.store.errors import (
    DatabaseDamaged,
    DatabaseUnavailable,
    GenerationConflict,
    StoreError,
    UnsupportedDatabase,
)
from gridplace.api.store.records import (
    CalibrationRecord,
    NewPlan,
    NodeAssignments,
    NodeBasis,
    NodePulse,
    NodeRecord,
    NodeTokenRecord,
    ObservationRecord,
    PipelineEntry,
    PlanAssignmentIndex,
    PlanRecord,
    PlanSummary,
    StateRecord,
)
from gridplace.api.store.store import Store, throttle_ratio_of

__all__ = [
    "CalibrationRecord",
    "DatabaseDamaged",
    "DatabaseUnavailable",
    "GenerationConflict",
    "NewPlan",
    "NodeAssignments",
    "NodeBasis",
    "NodePulse",
    "NodeRecord",
    "NodeTokenRecord",
    "ObservationRecord",
    "PipelineEntry",
    "PlanAssignmentIndex",
    "PlanRecord",
    "PlanSummary",
    "StateRecord",
    "Store",
    "StoreError",
    "UnsupportedDatabase",
    "create_store_engine",
    "migrate",
    "throttle_ratio_of",
]
