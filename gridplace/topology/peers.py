"""Peers files for the prober: who to probe, and where.

Owns: reading and checking a peers file into ``Peer`` records. Must not: resolve names or open
connections (``prober.py`` does).

Two formats, chosen by suffix:

* ``.yaml`` / ``.yml``: a mapping ``peers:`` holding a list of ``{name: NAME, address: HOST:PORT}``.
* anything else: plain lines ``NAME HOST:PORT``, or just ``HOST:PORT`` (the name is then the
  host, lowercased, with an IPv6 address's colons written as '-'); blank lines and ``#``
  comments are skipped.

NAME is the endpoint written into the probes (a node name, ``cache/<c>`` or ``region/<r>``);
HOST is a DNS name, an IPv4 address or a bracketed IPv6 address (``[::1]:8701``); PORT 1-65535.
Limits: 1 MiB per file, 10,000 peers, unique names. Every problem is collected, with its line,
into one ``PeersFileError``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridplace.specs import SpecError, SpecIssue
from gridplace.specs.yamlsafe import parse_yaml_text
from gridplace.topology.errors import PeersFileError
from gridplace.topology.samples import ENDPOINT

MAX_PEERS_FILE_BYTES = 2**20
MAX_PEERS = 10_000
MAX_ISSUES = 50  # enough to fix a file; a binary file would otherwise list thousands
YAML_SUFFIXES = (".yaml", ".yml")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class Peer:
    """One probe target."""

    name: str  # the endpoint name probes record as the target
    host: str  # DNS name or IP literal (IPv6 without brackets)
    port: int
    line: int | None = None  # where it was declared, for messages

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); raises ValueError saying what is wrong."""
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r}: an IPv6 address is written [ADDRESS]:PORT")
        try:
            ipaddress.IPv6Address(host)
        except ValueError as error:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from error
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r}: expected HOST:PORT")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, [ADDRESS]:PORT")
        if not _valid_hostname(host):
            raise ValueError(f"{text!r}: {host!r} is not a host name or IPv4 address")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65_535:
        raise ValueError(f"{text!r}: port must be a number from 1 to 65535")
    return host, int(port_text)


def _valid_hostname(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    if len(host) > 253 or host.replace(".", "").isdigit():
        return False  # '999.1.1.1' is a broken IPv4 address, not a name
    return all(_HOST_LABEL.match(label) for label in host.removesuffix(".").split("."))


def load_peers(path: Path) -> list[Peer]:
    """Read and check a peers file; raises ``PeersFileError`` listing every problem."""
    file = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_PEERS_FILE_BYTES:
            raise _error(
                f"{size:,} bytes; a peers file may hold at most {MAX_PEERS_FILE_BYTES:,}", file
            )
        text = path.read_text("utf-8")
    except UnicodeDecodeError as error:
        raise _error(f"not UTF-8 text (byte {error.start})", file) from error
    except OSError as error:
        raise _error(f"cannot read: {error.strerror or error}", file) from error
    if path.suffix in YAML_SUFFIXES:
        return parse_peers_yaml(text, file)
    return parse_peers_lines(text, file)


def parse_peers_lines(text: str, file: str = "<peers>") -> list[Peer]:
    """Plain ``NAME HOST:PORT`` or ``HOST:PORT`` lines."""
    entries: list[tuple[Any, Any, int]] = []
    issues: list[SpecIssue] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) == 1:  # HOST:PORT alone: named after its host
            try:
                host, _ = parse_address(fields[0])
            except ValueError as error:
                issues.append(SpecIssue(str(error), file, line=number))
                continue
            fields = [host.lower().replace(":", "-"), fields[0]]
        if len(fields) != 2:
            issues.append(
                SpecIssue(
                    f"expected 'NAME HOST:PORT' or 'HOST:PORT', got {len(fields)} field(s)",
                    file,
                    line=number,
                )
            )
            continue
        entries.append((fields[0], fields[1], number))
    return _check(entries, issues, file)


def parse_peers_yaml(text: str, file: str = "<peers>") -> list[Peer]:
    """A YAML mapping ``peers: [{name, address}, ...]``."""
    try:
        documents = [d for d in parse_yaml_text(text, file) if d.data is not None]
    except SpecError as error:
        raise PeersFileError(error.issues) from error
    if len(documents) != 1 or not isinstance(documents[0].data, dict):
        raise _error("expected one YAML document: a mapping with 'peers'", file)
    document = documents[0]
    unknown = sorted(str(key) for key in document.data if key != "peers")
    if unknown or not isinstance(document.data.get("peers"), list):
        message = f"unknown field(s) {unknown}" if unknown else "'peers' must be a list"
        raise _error(message + "; expected peers: [{name: NAME, address: HOST:PORT}]", file)
    entries: list[tuple[Any, Any, int]] = []
    issues: list[SpecIssue] = []
    for index, item in enumerate(document.data["peers"]):
        line = document.line_of(("peers", index)) or 0
        if not isinstance(item, dict) or set(item) != {"name", "address"}:
            issues.append(
                SpecIssue(
                    "each peer is a mapping with exactly 'name' and 'address'",
                    file,
                    line=line,
                    field=f"peers[{index}]",
                )
            )
            continue
        entries.append((item["name"], item["address"], line))
    return _check(entries, issues, file)


def _check(entries: list[tuple[Any, Any, int]], issues: list[SpecIssue], file: str) -> list[Peer]:
    if len(entries) > MAX_PEERS:
        raise _error(f"{len(entries):,} peers; at most {MAX_PEERS:,} are probed at once", file)
    peers: list[Peer] = []
    first_line: dict[str, int] = {}
    for name, address, line in entries:
        if not isinstance(name, str) or not ENDPOINT.match(name):
            issues.append(
                SpecIssue(
                    f"peer name {name!r} must be a node name (lowercase letters, digits, '.', "
                    "'_', '-'), cache/<name> or region/<name>",
                    file,
                    line=line,
                )
            )
            continue
        if name in first_line:
            issues.append(
                SpecIssue(f"peer {name!r} is also on line {first_line[name]}", file, line=line)
            )
            continue
        first_line[name] = line
        if not isinstance(address, str):
            issues.append(
                SpecIssue(
                    f"peer {name}: address must be text HOST:PORT (quote it)", file, line=line
                )
            )
            continue
        try:
            host, port = parse_address(address)
        except ValueError as error:
            issues.append(SpecIssue(f"peer {name}: {error}", file, line=line))
            continue
        peers.append(Peer(name, host, port, line))
    if not peers and not issues:
        issues.append(SpecIssue("no peers listed", file))
    if issues:
        raise PeersFileError(issues[:MAX_ISSUES])
    return peers


def _error(message: str, file: str) -> PeersFileError:
    return PeersFileError([SpecIssue(message, file)])
