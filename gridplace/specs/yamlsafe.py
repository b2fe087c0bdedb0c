"""Reading YAML defensively: size, node-count and depth limits, duplicate keys, and line numbers.

Only PyYAML's safe loader is used. A document is composed to a node graph first, so that its
expanded size can be counted (a billion-laughs document is refused before it is built) and every
value's line is known, then constructed into plain Python data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from gridplace.specs.errors import SpecError

MAX_FILE_BYTES = 16 * 1024 * 1024  # one YAML file; a 100 MB file is refused before it is read
MAX_NODES_PER_DOCUMENT = 5_000_000  # scalars + collections after alias expansion
# A document without aliases has fewer values than characters; aliases may expand it, but not
# past this factor of the text's length (a billion-laughs document is refused within milliseconds).
ALIAS_EXPANSION_FACTOR = 10
MAX_DEPTH = 64  # nesting of mappings and sequences
MAX_DOCUMENTS_PER_FILE = 100_000

# libyaml's safe loader when PyYAML was built with it (several times faster), else pure Python.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

FieldPath = tuple[str | int, ...]


@dataclass
class ParsedDocument:
    """One YAML document: its data and the line of every field path in it."""

    data: Any
    index: int
    lines: dict[FieldPath, int] = field(default_factory=dict)

    def line_of(self, path: FieldPath) -> int | None:
        """The line of ``path`` or of its nearest ancestor that has one."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(path[:cut])
            if line is not None:
                return line
        return None


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.remaining = limit

    def spend(self, node: yaml.Node, file: str, index: int) -> None:
        self.remaining -= 1
        if self.remaining < 0:
            raise SpecError.single(
                f"document expands to more than {self.limit:,} values "
                "(aliases expanding exponentially?); refusing it",
                file=file,
                document=index,
                line=node.start_mark.line + 1,
            )


def _walk(
    node: yaml.Node,
    path: FieldPath,
    depth: int,
    lines: dict[FieldPath, int],
    budget: _Budget,
    file: str,
    index: int,
) -> None:
    """Check limits and duplicate keys; record each path's line. Aliases count each time used."""
    budget.spend(node, file, index)
    if depth > MAX_DEPTH:
        raise SpecError.single(
            f"nesting deeper than {MAX_DEPTH} levels",
            file=file,
            document=index,
            line=node.start_mark.line + 1,
        )
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            if key in seen:
                raise SpecError.single(
                    f"key {key!r} appears twice in the same mapping",
                    file=file,
                    document=index,
                    line=key_node.start_mark.line + 1,
                    field=_dotted((*path, key)),
                )
            seen.add(key)
            lines.setdefault((*path, key), key_node.start_mark.line + 1)
            _walk(value_node, (*path, key), depth + 1, lines, budget, file, index)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _walk(item, (*path, position), depth + 1, lines, budget, file, index)


def _dotted(path: FieldPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


dotted_path = _dotted


def parse_yaml_text(text: str, file: str) -> list[ParsedDocument]:
    """Parse every document of ``text``; raises SpecError (never a YAML or recursion error)."""
    if len(text.encode("utf-8", errors="replace")) > MAX_FILE_BYTES:
        raise SpecError.single(f"larger than the {MAX_FILE_BYTES // 2**20} MiB limit", file=file)
    documents: list[ParsedDocument] = []
    loader = _SafeLoader(text)
    node_limit = min(MAX_NODES_PER_DOCUMENT, ALIAS_EXPANSION_FACTOR * len(text) + 10_000)
    try:
        index = 0
        while loader.check_node():
            if index >= MAX_DOCUMENTS_PER_FILE:
                raise SpecError.single(f"more than {MAX_DOCUMENTS_PER_FILE} documents", file=file)
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node said there is one
                break
            lines: dict[FieldPath, int] = {}
            _walk(node, (), 0, lines, _Budget(node_limit), file, index)
            data = loader.construct_document(node)
            documents.append(ParsedDocument(data=data, index=index, lines=lines))
            index += 1
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise SpecError.single(
            f"not valid YAML: {error.problem or error.context}",
            file=file,
            document=len(documents),
            line=mark.line + 1 if mark else None,
        ) from error
    except yaml.YAMLError as error:
        raise SpecError.single(f"not valid YAML: {error}", file=file) from error
    except RecursionError as error:
        raise SpecError.single(
            f"nesting too deep to read (limit {MAX_DEPTH} levels)", file=file
        ) from error
    finally:
        loader.dispose()
    return documents
