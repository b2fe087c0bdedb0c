"""Property-based tests over the whole OpenAPI document (schemathesis): for every operation,
generated requests — with the admin token, and without or with a wrong one where the check
needs it — never get a 5xx and always get a documented status, content type and body shape.

The app runs on a throwaway SQLite file with a small grid and one plan, so that some generated
requests land on existing nodes and plans; examples per operation are bounded to keep the run
short on two cores.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from gridplace.api.app import create_app
from gridplace.api.ratelimit import RateLimiter
from tests.api.conftest import (
    ADMIN_TOKEN,
    TestClient,
    node_doc,
    register,
    submit,
    test_settings,
    workload_doc,
)

EXAMPLES_PER_OPERATION = 15
# These read gridplace documents (YAML or JSON) as text and validate them with the specs loader:
# their OpenAPI body is "an object" (or a list of them), so most schema-valid bodies are not
# valid documents, and a 422 for them is right. Every other check still runs on them.
DOCUMENT_BODIES = {
    ("POST", "/v1/plans"),
    ("POST", "/v1/validate"),
    ("POST", "/v1/nodes"),
    ("PUT", "/v1/nodes/{name}"),
    ("POST", "/v1/nodes/{name}/probes"),
    ("POST", "/v1/nodes/{name}/observations"),
    ("POST", "/v1/probes"),
}
_directory = Path(tempfile.mkdtemp(prefix="gridplace-schemathesis-"))
app = create_app(test_settings(f"sqlite:///{_directory / 'gridplace.db'}"))
# Schemathesis sends requests without a token on purpose; do not let them block the address.
app.state.gridplace.failed_logins = RateLimiter(rate_per_s=1e6, burst=1_000_000)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.auth()
class AdminToken:
    """Schemathesis adds the token itself, so it can also leave it out to test 401s."""

    def get(self, case: schemathesis.Case, context: object) -> str:
        return ADMIN_TOKEN

    def set(self, case: schemathesis.Case, data: str, context: object) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


# The schema is read when this module is imported, so the app exists from then on; the directory
# goes at exit even when no test of this module was selected.
atexit.register(shutil.rmtree, _directory, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def populated() -> Iterator[None]:
    client = TestClient(app)
    for name, gpu in [("n0", "rtx-4090"), ("n1", "l40s"), ("n2", "a100-sxm-80gb")]:
        register(client, node_doc(name, gpu=gpu))
    submit(client, workload_doc("chat", rps=2))
    yield
    app.state.gridplace.store.close()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=True,  # the same examples on every run: CI failures reproduce
)
def test_every_operation_conforms(case: schemathesis.Case) -> None:
    excluded = []
    if (case.method.upper(), case.path) in DOCUMENT_BODIES:
        excluded.append(positive_data_acceptance)
    case.call_and_validate(excluded_checks=excluded)
