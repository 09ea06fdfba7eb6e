"""voices.yaml as plain values: read within the size cap, parse, and keep each key's line.

Everything found wrong is recorded on a :class:`Doc` (never raised one by one), so the
schema and the resolve step can add theirs and all of them are reported together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from greetkit.errors import SpecError, SpecIssue
from greetkit.spec.model import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES

Path_ = tuple[str, ...]
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")}


def _one_line(text: str) -> str:
    """Escape what would break an issue's single line (a key may hold a newline or NUL)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


class Doc:
    """The parsed YAML's lines (per key path) and the issues found so far."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Path_, int] = {}
        self.issues: list[SpecIssue] = []
        self.warnings: list[SpecIssue] = []
        self.nodes = 0

    def line(self, path: Path_) -> int | None:
        for i in range(len(path), -1, -1):
            if path[:i] in self.lines:
                return self.lines[path[:i]]
        return None

    def _issue(self, path: Path_, message: str, line: int | None) -> SpecIssue:
        return SpecIssue(self.file, line if line is not None else self.line(path),
                         _one_line(".".join(path)), _one_line(" ".join(message.split())))

    def error(self, path: Path_, message: str, *, line: int | None = None) -> None:
        self.issues.append(self._issue(path, message, line))

    def has_issue(self, path: Path_) -> bool:
        return any(i.path == _one_line(".".join(path)) for i in self.issues)

    def warn(self, path: Path_, message: str) -> None:
        self.warnings.append(self._issue(path, message, None))

    def failure(self) -> SpecError:
        """Every issue, once each (a broken template fails once, not once per language that
        uses it), in line order."""
        unique = {(i.line, i.message): i for i in self.issues}
        return SpecError(sorted(unique.values(), key=lambda i: (i.line or 0)))


class _Converter:
    """YAML nodes to plain values, recording each key's line; tags other than the plain
    scalar/map/seq ones, merge keys, non-scalar keys and duplicates are issues."""

    def __init__(self, doc: Doc) -> None:
        self.doc = doc
        # One constructor for every scalar: a new SafeLoader per scalar cost ~0.3 ms each,
        # so an alias-expanded document of MAX_NODES values took seconds to reject.
        self._constructor: yaml.constructor.SafeConstructor | None = None

    def convert(self, node: yaml.Node, path: Path_) -> Any:
        if not self._within_caps(node, path):
            return None
        self.doc.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node, path)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        return None  # pragma: no cover - yaml has no other node kinds

    def _within_caps(self, node: yaml.Node, path: Path_) -> bool:
        doc = self.doc
        if len(path) > MAX_DEPTH:  # aliases can nest deeper than the text shows
            if not doc.has_issue(path[:MAX_DEPTH]):
                doc.error(path[:MAX_DEPTH], f"values nest more than {MAX_DEPTH} levels deep; "
                          "flatten the document", line=node.start_mark.line + 1)
            return False
        doc.nodes += 1
        if doc.nodes > MAX_NODES:
            if doc.nodes == MAX_NODES + 1:
                doc.error(path, f"document has more than {MAX_NODES} values; keep voices.yaml "
                          "small (anchors/aliases that expand a lot are a common cause)")
            return False
        return True

    def _tag_allowed(self, node: yaml.Node, path: Path_, tags: Any, fix: str) -> bool:
        if node.tag in tags:
            return True
        self.doc.error(path, f"YAML tag {node.tag!r} is not allowed; {fix}",
                       line=node.start_mark.line + 1)
        return False

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any] | None:
        if not self._tag_allowed(node, path, ("tag:yaml.org,2002:map",), "remove it"):
            return None
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path, out)
            if key is not None:
                out[key] = self.convert(value_node, (*path, key))
        return out

    def _key(self, key_node: yaml.Node, path: Path_, seen: dict[str, Any]) -> str | None:
        """The key's name, or None (recorded as an issue) when it cannot be used."""
        line = key_node.start_mark.line + 1
        if key_node.tag == "tag:yaml.org,2002:merge":
            self.doc.error(path, "YAML merge keys ('<<') are not supported; write the keys out",
                           line=line)
            return None
        if not isinstance(key_node, yaml.ScalarNode):
            self.doc.error(path, "mapping keys must be plain names", line=line)
            return None
        key = str(key_node.value)
        child = (*path, key)
        if key in seen:
            self.doc.error(child, f"duplicate key {key!r} (first at line "
                           f"{self.doc.lines.get(child)}); keep one", line=line)
            return None
        self.doc.lines[child] = line
        return key

    def _sequence(self, node: yaml.SequenceNode, path: Path_) -> list[Any] | None:
        if not self._tag_allowed(node, path, ("tag:yaml.org,2002:seq",), "remove it"):
            return None
        return [self.convert(v, (*path, str(i))) for i, v in enumerate(node.value)]

    def _scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        if not self._tag_allowed(node, path, _SCALAR_TAGS, "write a plain value"):
            return None
        if self._constructor is None:
            self._constructor = yaml.constructor.SafeConstructor()
        try:
            return self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            self._constructor = None  # it keeps the failed node as "in progress"
            # ValueError: an int of more than 4300 digits (Python's int/str limit).
            self.doc.error(path, f"bad value ({exc.__class__.__name__}); write a plain value",
                           line=node.start_mark.line + 1)
            return None


def _too_deep(text: str) -> int | None:
    """The line where nesting first exceeds MAX_DEPTH, found with the (non-recursive) event
    parser so that the recursive composer never sees such a document."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    return int(event.start_mark.line) + 1
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return None  # compose() reports it with its line
    return None


def parse(text: str, doc: Doc) -> Any:
    """The document as plain values (None when it cannot be read; the reason is on ``doc``)."""
    deep = _too_deep(text)
    if deep is not None:
        doc.error((), f"values nest more than {MAX_DEPTH} levels deep; flatten the document",
                  line=deep)
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as exc:
        # Raised for characters YAML forbids; it carries an offset, not a line.
        char = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or b"?")
        doc.error((), f"character U+{char:04X} is not allowed in YAML; remove it",
                  line=text.count("\n", 0, exc.position) + 1)
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or "invalid YAML"
        doc.error((), f"YAML syntax error: {what}; fix the indentation or quoting", line=line)
        return None
    except yaml.YAMLError as exc:
        doc.error((), f"YAML error: {exc}; fix the syntax")
        return None
    if node is None:
        doc.error((), "file is empty; start from the README's example", line=1)
        return None
    return _Converter(doc).convert(node, ())


def read_text(path: Path, name: str) -> str:
    """The file's text (newlines as text mode gives them), or a one-issue SpecError."""
    too_big = SpecError([SpecIssue(name, None, "", f"file is larger than {MAX_FILE_BYTES} "
                                   "bytes; voices.yaml should be small")])
    try:
        # The size is checked before reading, and at most the cap is read: a link to
        # /dev/zero or a FIFO reports size 0 but must not be read without end.
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_FILE_BYTES:
                raise too_big
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SpecError([SpecIssue(name, None, "", "file not found; run greetkit in the "
                                   "directory of voices.yaml or pass -c PATH")]) from None
    except IsADirectoryError:
        raise SpecError([SpecIssue(name, None, "", "is a directory; pass the voices.yaml "
                                   "file")]) from None
    except OSError as exc:
        raise SpecError([SpecIssue(name, None, "", f"cannot read ({exc.strerror})")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise too_big
    try:
        # Newlines translated as text mode would (line numbers count '\n' only).
        return raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError([SpecIssue(name, line, "", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} "
                                   f"at column {column}); save the file as UTF-8")]) from None
