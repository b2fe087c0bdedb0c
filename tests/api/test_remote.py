"""The CLI's API client (``gridplace.api.remote``): tokens from a file or the environment, and
every bad answer turned into a ``RemoteError`` with a message (never a traceback)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gridplace.api.remote import GridApi, RemoteError, read_token
from gridplace.specs.loader import LoadedDocument, load_documents
from tests.api.conftest import to_yaml, workload_doc


def test_the_token_comes_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "token"
    token.write_text("gpv.abc.def\n")
    assert read_token(token) == "gpv.abc.def"
    monkeypatch.setenv("GRIDPLACE_TOKEN", " gpv.env.x ")
    assert read_token(None) == "gpv.env.x"
    for content, message in [("", "is empty"), ("x" * 5000, "over 4096 bytes")]:
        token.write_text(content)
        with pytest.raises(RemoteError, match=message):
            read_token(token)
    with pytest.raises(RemoteError, match="cannot read token file"):
        read_token(tmp_path / "missing")
    monkeypatch.delenv("GRIDPLACE_TOKEN")
    with pytest.raises(RemoteError, match="no token"):
        read_token(None)


def _api(handler: httpx.MockTransport) -> GridApi:
    return GridApi("http://grid.test/", "gpv.a.b", transport=handler)


@pytest.fixture
def documents(tmp_path: Path) -> list[LoadedDocument]:
    (tmp_path / "w.yaml").write_text(to_yaml(workload_doc("chat")))
    return load_documents([tmp_path])


def test_answers_that_are_not_gridplace_documents_are_errors(
    documents: list[LoadedDocument],
) -> None:
    html = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>hi</html>"))
    with _api(html) as api, pytest.raises(RemoteError, match="not a PlacementPlan"):
        api.dry_run(documents)
    with _api(html) as api, pytest.raises(RemoteError, match="not a ValidationResponse"):
        api.validate(documents)
    odd = httpx.MockTransport(
        lambda request: httpx.Response(200, json={}, headers={"X-Gridplace-Base-Generation": "x"})
    )
    with _api(odd) as api, pytest.raises(RemoteError, match="not a number"):
        api.dry_run(documents)


def test_a_refusal_carries_the_servers_message_and_issues(documents: list[LoadedDocument]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer gpv.a.b"
        issue = {"message": "unknown model", "field": "spec.model", "document": 0}
        body = {"error": "invalid", "message": "invalid input (1 problem)", "issues": [issue]}
        return httpx.Response(422, json=body)

    with _api(httpx.MockTransport(refuse)) as api, pytest.raises(RemoteError) as caught:
        api.validate(documents)
    assert "HTTP 422: invalid input (1 problem)" in caught.value.message
    [issue] = caught.value.issues
    assert issue.field == "spec.model" and issue.file == "http://grid.test/v1/validate"
