"""Loading YAML files into pydantic models with errors that name the file, key and line.

Device profiles now (and run configs later) are written by hand, so a mistake must come
back as `devices/pi.yaml:7: budgets.max_flops: ...`, not as a pydantic traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edgenas.core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

_SUFFIXES = {
    "": 1,
    "k": 1e3,
    "m": 1e6,
    "g": 1e9,
    "t": 1e12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_quantity(value: Any) -> Any:
    """Turn '250k', '30M', '1.5G', '256KiB', '20e6' into numbers; leave other values alone.

    PyYAML reads `20e6` as a string (YAML 1.1 wants a dot), and budgets are easier to read
    with suffixes, so profiles accept both. k/M/G are powers of 10; KiB/MiB/GiB powers of 2.
    """
    if not isinstance(value, str):
        return value
    m = _QUANTITY.match(value)
    if not m or m.group(2).lower() not in _SUFFIXES:
        return value  # let pydantic report it as not a number
    number = float(m.group(1)) * _SUFFIXES[m.group(2).lower()]
    return int(number) if number.is_integer() else number


def _line_map(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map each key path in a YAML document to its 1-based line."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, key_node.value)
            lines.update(_line_map(value_node, child))
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_map(item, (*path, i)))
    return lines


def read_yaml(path: str | Path) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """The parsed YAML document and its key-path -> line map; `ConfigError` if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    return data, (_line_map(node) if node is not None else {})


def load_model(model: type[M], path: str | Path, data: Any = None, lines: dict | None = None) -> M:
    """Validate a YAML file (or its already-read `data`) against a pydantic model.

    The first validation error becomes one `ConfigError` line: file, line, key, reason.
    """
    if data is None:
        data, lines = read_yaml(path)
    lines = lines or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (e.g. `name: ...`), found {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
        where = f"{path}:{line}" if line else str(path)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling)"
        extra = f" ({len(exc.errors()) - 1} more error(s))" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{where}: {key}: {msg}{extra}") from None
