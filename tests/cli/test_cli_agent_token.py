"""Issue 14, item 9: the agent takes its token from GRIDPLACE_TOKEN or --token-file (a --token
flag shows in ``ps``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from gridplace.api.cli import app
from gridplace.api.commands import agent as agent_command
from tests.conftest import EXAMPLES

runner = CliRunner()
FLEET = EXAMPLES / "fleet" / "rtx4090-pair.yaml"


class RecordingClient:
    tokens: ClassVar[list[str]] = []

    def __init__(self, api: str, node: str, token: str) -> None:
        RecordingClient.tokens.append(token)

    def close(self) -> None:
        pass


class NoLoopAgent:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def run(self, stop: object) -> None:
        pass


@pytest.fixture
def agent_args(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    RecordingClient.tokens = []
    monkeypatch.setattr(agent_command, "ApiClient", RecordingClient)
    monkeypatch.setattr(agent_command, "Agent", NoLoopAgent)
    for name in ("GRIDPLACE_TOKEN", "GRIDPLACE_NODE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return [
        "agent", "--api", "http://127.0.0.1:9", "--node", "box-1", "--backend", "fake",
        "--fake-fleet", str(FLEET), "--state-file", str(tmp_path / "state.db"),
        "--cache-dir", str(tmp_path / "cache"), "--log-dir", str(tmp_path / "logs"),
    ]  # fmt: skip


def test_the_token_comes_from_gridplace_token(agent_args: list[str]) -> None:
    result = runner.invoke(app, agent_args, env={"GRIDPLACE_TOKEN": "gpn.abc.def"})
    assert result.exit_code == 0, result.output
    assert RecordingClient.tokens == ["gpn.abc.def"]


def test_the_token_comes_from_a_file(agent_args: list[str], tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("gpn.from.file\n")
    result = runner.invoke(app, [*agent_args, "--token-file", str(token_file)])
    assert result.exit_code == 0, result.output
    assert RecordingClient.tokens == ["gpn.from.file"]


def test_no_token_is_exit_1_naming_the_ways_to_give_one(agent_args: list[str]) -> None:
    result = runner.invoke(app, agent_args)
    assert result.exit_code == 1
    assert "GRIDPLACE_TOKEN" in result.output and "--token-file" in result.output


def test_help_says_the_flag_shows_in_ps() -> None:
    result = runner.invoke(app, ["agent", "--help"], env={"COLUMNS": "200"})
    assert "--token-file" in result.output and "ps" in result.output
