"""Reading YAML a user wrote (specs, scenarios) strictly: one clear `UserError` line for every way it can go wrong.

Limits: the file's size, UTF-8 only, nesting depth, and no duplicate keys (PyYAML keeps the last one silently).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from analyzer.errors import UserError

MAX_BYTES = 1024 * 1024  # a spec or scenario is a few KiB; a bigger file is a mistake
MAX_DEPTH = 64  # PyYAML composes recursively: thousands of levels would end in RecursionError


class _StrictLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise UserError(f"line {mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise UserError(f"line {line}: duplicate key {key!r} (first on line {seen[key]})")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_text(path: Path) -> str:
    """The file's text: at most MAX_BYTES, UTF-8. Errors name the file."""
    try:
        if path.is_dir():
            raise UserError(f"{path}: is a directory, not a YAML file")
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise UserError(f"{path}: larger than {MAX_BYTES // (1024 * 1024)} MiB, too big for a spec or scenario")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: byte 0x{data[exc.start]:02x} is not UTF-8 text") from None


def parse(text: str, source: str) -> Any:
    """YAML text -> Python data, refusing duplicate keys and deep nesting. Errors start with `source`."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise UserError(f"{source}: nested too deeply") from None
    finally:
        loader.dispose()


def load(path: str | Path) -> tuple[Any, str]:
    """(data, text) of a YAML file a user wrote."""
    path = Path(path)
    text = read_text(path)
    return parse(text, str(path)), text
