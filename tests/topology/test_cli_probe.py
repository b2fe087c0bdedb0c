"""``gridplace probe``: a LatencyProbes document on stdout for real loopback peers, and exit 1
with a readable message (no traceback) for bad peers files and source names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gridplace.api.cli import app
from gridplace.specs import load_bundle
from gridplace.topology.graph import Topology
from tests.topology.sockets import LOOPBACK, closed_port, listening_port

runner = CliRunner()


def test_probe_prints_latency_probes_that_load_and_build_a_topology(tmp_path: Path) -> None:
    with listening_port() as up, closed_port() as down:
        peers = tmp_path / "peers.txt"
        peers.write_text(f"up {LOOPBACK}:{up}\ncache/down {LOOPBACK}:{down}\n")
        result = runner.invoke(
            app,
            ["probe", "--peers", str(peers), "--count", "2", "--timeout", "1", "--source", "me"],
        )
    assert result.exit_code == 0, result.stderr
    assert "1 unreachable (cache/down)" in result.stderr
    document = yaml.safe_load(result.stdout)  # stdout holds the document and nothing else
    assert document["kind"] == "LatencyProbes"
    saved = tmp_path / "probes.yaml"
    saved.write_text(result.stdout)
    (probes,) = load_bundle([saved]).probes
    by_target = {(s.target, s.method.value): s for s in probes.spec.samples}
    assert len(by_target[("up", "tcp-connect")].rtt_ms) == 2
    assert by_target[("cache/down", "tcp-connect")].lost == 2
    assert by_target[("cache/down", "tcp-connect")].error == "connection refused"
    topology = Topology.build([], probes)
    assert topology.rtt_ms("me", "up").measured
    assert topology.rtt_ms("me", "cache/down").loss_ratio == 1.0


@pytest.mark.parametrize(
    ("peers_text", "args", "message"),
    [
        ("up localhost\n", [], "expected HOST:PORT"),
        ("up 127.0.0.1:1 extra\n", [], "got 3 field(s)"),
        ("me 127.0.0.1:1\n", ["--source", "me"], "is the source itself"),
        ("up 127.0.0.1:1\n", ["--source", "Not Valid"], "not an endpoint name"),
    ],
)
def test_bad_input_exits_1_with_a_message_and_no_traceback(
    tmp_path: Path, peers_text: str, args: list[str], message: str
) -> None:
    peers = tmp_path / "peers.txt"
    peers.write_text(peers_text)
    result = runner.invoke(app, ["probe", "--peers", str(peers), *args])
    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_missing_peers_file_exits_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["probe", "--peers", str(tmp_path / "nope.txt")])
    assert result.exit_code == 1
    assert "cannot read" in result.stderr


@pytest.mark.parametrize("args", [["--count", "0"], ["--timeout", "0"], ["--concurrency", "0"]])
def test_out_of_range_options_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    peers = tmp_path / "peers.txt"
    peers.write_text("up 127.0.0.1:1\n")
    assert runner.invoke(app, ["probe", "--peers", str(peers), *args]).exit_code == 2
