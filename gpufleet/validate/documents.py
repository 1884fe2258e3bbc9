"""YAML documents of a config repository, with the line of every field.

A :class:`Document` keeps its file, the raw text (sent to the API server as is, so duplicate and
unknown fields are judged there), the parsed object and the YAML node tree that maps a field path
(``spec.budgets[0].schedule``) to a line. Reading fails with :class:`UnreadableInput` (exit status 2
of ``gpufleet validate``) for a missing file, bad encoding or bad YAML syntax.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SUFFIXES = (".yaml", ".yml")
#: apiVersions of files that are build instructions, not API objects.
NOT_API_OBJECTS = ("kustomize.config.k8s.io/",)


class UnreadableInput(OSError):
    """A path cannot be read or parsed as YAML; the message names file and line."""


@dataclass(frozen=True)
class Document:
    path: Path
    #: 0-based position of the document in its file.
    index: int
    #: 1-based line of the document's first field.
    line: int
    text: str
    obj: Any
    node: yaml.Node

    @property
    def api_version(self) -> str:
        return str(self.obj.get("apiVersion") or "") if isinstance(self.obj, dict) else ""

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind") or "") if isinstance(self.obj, dict) else ""

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.obj.get("metadata") if isinstance(self.obj, dict) else None
        return meta if isinstance(meta, dict) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or self.metadata.get("generateName") or "")

    @property
    def namespace(self) -> str | None:
        namespace = self.metadata.get("namespace")
        return str(namespace) if namespace else None

    @property
    def labels(self) -> dict[str, str]:
        labels = self.metadata.get("labels")
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}

    @property
    def annotations(self) -> dict[str, str]:
        annotations = self.metadata.get("annotations")
        return {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {}

    @property
    def ref(self) -> str:
        """``Kind/namespace/name`` or ``Kind/name`` for messages."""
        parts = [self.kind or "?", self.namespace, self.name or "?"]
        return "/".join(p for p in parts if p)

    def line_of(self, field_path: str) -> int:
        """The line of ``field_path`` (or of its deepest existing parent) in the file."""
        node = self.node
        line = self.line
        for segment in _segments(field_path):
            child = _child(node, segment)
            if child is None:
                break
            node, line = child
        return line


def _segments(field_path: str) -> list[str | int]:
    out: list[str | int] = []
    for token in re.findall(r"\[[^\]]*\]|[^.\[\]]+", field_path):
        if token.startswith("["):
            inner = token[1:-1].strip("\"'")
            out.append(int(inner) if inner.isdigit() else inner)
        else:
            out.append(token)
    return out


def _child(node: yaml.Node, segment: str | int) -> tuple[yaml.Node, int] | None:
    if isinstance(node, yaml.MappingNode) and isinstance(segment, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == segment:
                return value, key.start_mark.line + 1
    if isinstance(node, yaml.SequenceNode) and isinstance(segment, int) and segment < len(node.value):
        item = node.value[segment]
        return item, item.start_mark.line + 1
    return None


def files_under(paths: Iterable[Path]) -> list[Path]:
    """YAML files named or found under ``paths`` (hidden folders skipped), sorted; UnreadableInput
    for a path that does not exist."""
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(p for p in sorted(path.rglob("*"))
                         if p.suffix in SUFFIXES and p.is_file()
                         and not any(part.startswith(".") for part in p.relative_to(path).parts))
        else:
            raise UnreadableInput(f"{path}: no such file or folder")
    return found


def read(path: Path) -> Iterator[Document]:
    """The non-empty documents of one file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UnreadableInput(f"{path}: cannot read: {err}") from err
    try:
        nodes = list(yaml.compose_all(text, Loader=Loader))
        objects = list(yaml.load_all(text, Loader=Loader))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise UnreadableInput(f"{where}: not valid YAML: {problem}") from err
    for index, (node, obj) in enumerate(zip(nodes, objects, strict=True)):
        if node is None:
            continue
        body = text[node.start_mark.index:node.end_mark.index]
        # A block mapping's slice starts at its first key; keep the indentation of that line.
        body = " " * node.start_mark.column + body
        yield Document(path, index, node.start_mark.line + 1, body, obj, node)


def is_api_object(doc: Document) -> bool:
    return not doc.api_version.startswith(NOT_API_OBJECTS)
