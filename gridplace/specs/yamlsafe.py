"""Reading YAML defensively: size, node-count and depth limits, duplicate keys, and line numbers.

Only PyYAML's safe loader is used. A document is composed to a node graph first, so that its
expanded size can be counted (a billion-laughs document is refused before it is built) and every
value's line is known, then constructed into plain Python data. Composing is ours (``_Composer``,
on libyaml's events): a list longer than ``max_list_items`` or a document with more values than
its budget is refused while it is composed, so a 2-million-item list costs the time and memory of
the first ``max_list_items`` items, not of all of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

from gridplace.specs.errors import SpecError

MAX_FILE_BYTES = 16 * 1024 * 1024  # one YAML file; a 100 MB file is refused before it is read
MAX_NODES_PER_DOCUMENT = 5_000_000  # scalars + collections after alias expansion
# A document without aliases has fewer values than characters; aliases may expand it, but not
# past this factor of the text's length (a billion-laughs document is refused within milliseconds).
ALIAS_EXPANSION_FACTOR = 10
MAX_DEPTH = 64  # nesting of mappings and sequences
MAX_DOCUMENTS_PER_FILE = 100_000
# Items of one YAML list. The largest lists of the specs (probe samples, plan assignments) stay
# far below this on a 10,000-node grid; a longer list is refused while it is being composed.
MAX_LIST_ITEMS = 200_000

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


class _ComposeLimit(Exception):
    """Raised inside the composer; ``parse_yaml_text`` turns it into a SpecError."""

    def __init__(self, message: str, line: int, path: list[str | int] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.field = _dotted(tuple(path)) if path else None


class _Composer(Composer):
    """PyYAML's composer with limits checked as each node is made (not after the document).

    ``node_limit`` counts the nodes composed in one document (an alias is counted when it is
    expanded, by ``_walk``); ``max_list_items`` the items of one list (``MAX_LIST_ITEMS`` the keys
    of one mapping); ``MAX_DEPTH``
    the nesting, which also bounds the recursion. One function for all three node kinds: it runs
    once per value, so calls are kept few.
    """

    check_event: Callable[..., bool]
    peek_event: Callable[[], Any]
    get_event: Callable[[], Any]
    resolve: Callable[..., str]

    def __init__(self, node_limit: int, max_list_items: int) -> None:
        super().__init__()
        self.node_limit = node_limit
        self.max_list_items = max_list_items
        self.composed = 0
        self.path: list[str | int] = []  # where the composer is: names the field of an error

    def compose_document(self) -> yaml.Node | None:
        self.composed = 0
        self.path = []
        node: yaml.Node | None = super().compose_document()
        return node

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.get_event()
        kind = type(event)
        if kind is AliasEvent:
            found: yaml.Node | None = self.anchors.get(event.anchor)
            if found is None:
                raise ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", event.start_mark
                )
            return found
        self.composed += 1
        if self.composed > self.node_limit:
            raise _ComposeLimit(
                f"document has more than {self.node_limit:,} values; refusing it",
                event.start_mark.line + 1,
            )
        anchor = event.anchor
        if anchor is not None and anchor in self.anchors:
            raise ComposerError(
                f"found duplicate anchor {anchor!r}; first occurrence",
                self.anchors[anchor].start_mark,
                "second occurrence",
                event.start_mark,
            )
        tag = event.tag
        if kind is ScalarEvent:
            if tag is None or tag == "!":
                tag = self.resolve(yaml.ScalarNode, event.value, event.implicit)
            node: yaml.Node = yaml.ScalarNode(
                tag, event.value, event.start_mark, event.end_mark, style=event.style
            )
            if anchor is not None:
                self.anchors[anchor] = node
            return node
        path = self.path
        if len(path) >= MAX_DEPTH:
            raise _ComposeLimit(
                f"nesting deeper than {MAX_DEPTH} levels", event.start_mark.line + 1
            )
        is_list = kind is SequenceStartEvent
        node_class = yaml.SequenceNode if is_list else yaml.MappingNode
        if tag is None or tag == "!":
            tag = self.resolve(node_class, None, event.implicit)
        node = node_class(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        items: list[Any] = node.value
        end = SequenceEndEvent if is_list else MappingEndEvent
        path.append(0)
        # A request body bounds its lists by the route's needs; mappings keep the file's bound.
        limit = self.max_list_items if is_list else MAX_LIST_ITEMS
        while not self.check_event(end):
            if len(items) >= limit:
                what = "list" if is_list else "mapping"
                raise _ComposeLimit(
                    f"a {what} of more than {limit:,} items; refusing it",
                    event.start_mark.line + 1,
                    path[:-1],
                )
            if is_list:
                path[-1] = len(items)
                items.append(self.compose_node(node, None))
            else:
                key = self.compose_node(node, None)
                path[-1] = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                items.append((key, self.compose_node(node, key)))
        path.pop()
        node.end_mark = self.get_event().end_mark
        return node


def _event_source(text: str) -> Any:
    """libyaml's parser (several times faster) when PyYAML was built with it, else PyYAML's."""
    cparser = getattr(getattr(yaml, "_yaml", None), "CParser", None)
    return cparser(text) if cparser is not None else yaml.SafeLoader(text)


class _LimitedLoader(_Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """Events from ``_event_source``, composed by ``_Composer``, constructed by PyYAML's safe
    constructor."""

    def __init__(self, text: str, node_limit: int, max_list_items: int) -> None:
        source = _event_source(text)
        self.check_event = source.check_event
        self.peek_event = source.peek_event
        self.get_event = source.get_event
        self.dispose = source.dispose
        _Composer.__init__(self, node_limit, max_list_items)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


def parse_yaml_text(
    text: str, file: str, max_list_items: int = MAX_LIST_ITEMS
) -> list[ParsedDocument]:
    """Parse every document of ``text``; raises SpecError (never a YAML or recursion error).

    ``max_list_items`` bounds each list (a request body passes a smaller one).
    """
    if len(text.encode("utf-8", errors="replace")) > MAX_FILE_BYTES:
        raise SpecError.single(f"larger than the {MAX_FILE_BYTES // 2**20} MiB limit", file=file)
    documents: list[ParsedDocument] = []
    node_limit = min(MAX_NODES_PER_DOCUMENT, ALIAS_EXPANSION_FACTOR * len(text) + 10_000)
    loader = _LimitedLoader(text, node_limit, max_list_items)
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
    except _ComposeLimit as error:
        raise SpecError.single(
            error.message, file=file, document=len(documents), line=error.line, field=error.field
        ) from None
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
