"""Peers files: both formats read, every malformed one rejected with lines and reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridplace.topology import PeersFileError
from gridplace.topology.peers import (
    MAX_PEERS,
    MAX_PEERS_FILE_BYTES,
    Peer,
    load_peers,
    parse_address,
)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_plain_lines_with_comments_and_every_address_form(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "peers.txt",
        "# the grid\n\nfra-a100-1 10.0.0.5:8701\ncache/eu hf-cache.example.net:443  # weights\n"
        "region/us-east [2001:db8::1]:8701\n",
    )
    assert load_peers(path) == [
        Peer("fra-a100-1", "10.0.0.5", 8701, 3),
        Peer("cache/eu", "hf-cache.example.net", 443, 4),
        Peer("region/us-east", "2001:db8::1", 8701, 5),
    ]
    assert load_peers(path)[2].address == "[2001:db8::1]:8701"


def test_yaml_peers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "peers.yaml",
        "peers:\n  - {name: a, address: 'localhost:1'}\n  - name: b\n    address: 127.0.0.1:2\n",
    )
    assert [(p.name, p.host, p.port, p.line) for p in load_peers(path)] == [
        ("a", "localhost", 1, 2),
        ("b", "127.0.0.1", 2, 3),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host", "expected HOST:PORT"),
        (":80", "expected HOST:PORT"),
        ("host:0", "port must be a number from 1 to 65535"),
        ("host:65536", "port must be a number from 1 to 65535"),
        ("host:http", "port must be a number"),
        ("::1:80", "in brackets"),
        ("[::1]80", "[ADDRESS]:PORT"),
        ("[nope]:80", "not an IPv6 address"),
        ("bad_host!:80", "not a host name"),
        ("999.1.1.1:80", "not a host name or IPv4"),
        ("-lead.example:80", "not a host name"),
    ],
)
def test_bad_addresses_say_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        parse_address(text)


def test_plain_host_port_lines_are_named_after_their_host(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "peers.txt",
        "10.0.0.5:8701\nGPU-Box-7.lan:8701  # a host name\n[2001:db8::1]:8701\nnamed 10.0.0.6:1\n",
    )
    assert load_peers(path) == [
        Peer("10.0.0.5", "10.0.0.5", 8701, 1),
        Peer("gpu-box-7.lan", "GPU-Box-7.lan", 8701, 2),
        Peer("2001-db8--1", "2001:db8::1", 8701, 3),
        Peer("named", "10.0.0.6", 1, 4),
    ]


def test_every_problem_of_a_lines_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "peers.txt",
        "a 127.0.0.1:1\nonly-one-field\nBad 127.0.0.1:2\na 127.0.0.1:3\nb 127.0.0.1:99999\n",
    )
    with pytest.raises(PeersFileError) as caught:
        load_peers(path)
    issues = [(issue.line, issue.message) for issue in caught.value.issues]
    assert [line for line, _ in issues] == [2, 3, 4, 5]
    assert "'only-one-field': expected HOST:PORT" in issues[0][1]
    assert "'Bad'" in issues[1][1]
    assert "also on line 1" in issues[2][1]
    assert "port" in issues[3][1]
    assert all(issue.file == str(path) for issue in caught.value.issues)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("peers: [{name: a}]\n", "exactly 'name' and 'address'"),
        ("peers: [{name: a, address: 'h:1', port: 2}]\n", "exactly 'name' and 'address'"),
        ("peers: [{name: a, address: 1:30}]\n", "quote it"),  # YAML 1.1 reads 1:30 as 90
        ("peers: {a: b}\n", "'peers' must be a list"),
        ("peer: []\n", "unknown field"),
        ("- a\n", "a mapping with 'peers'"),
        ("peers: [\n", "not valid YAML"),
        ("peers: []\n", "no peers listed"),
        ("", "a mapping with 'peers'"),
    ],
)
def test_malformed_yaml_peers_files_are_rejected(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(PeersFileError, match=expected):
        load_peers(write(tmp_path, "peers.yaml", text))


def test_limits_and_unreadable_files(tmp_path: Path) -> None:
    too_many = "".join(f"n{i} 127.0.0.1:1\n" for i in range(MAX_PEERS + 1))
    with pytest.raises(PeersFileError, match="at most 10,000"):
        load_peers(write(tmp_path, "many.txt", too_many))
    with pytest.raises(PeersFileError, match="at most 1,048,576"):
        load_peers(write(tmp_path, "big.txt", "#" * (MAX_PEERS_FILE_BYTES + 1)))
    with pytest.raises(PeersFileError, match="not UTF-8"):
        load_peers(write(tmp_path, "binary.txt", b"a \xff\xfe:1\n"))
    with pytest.raises(PeersFileError, match="cannot read"):
        load_peers(tmp_path / "missing.txt")
    with pytest.raises(PeersFileError, match="no peers listed"):
        load_peers(write(tmp_path, "empty.txt", "# nothing\n"))
