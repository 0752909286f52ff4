"""Run configs shipped inside the package: `edgenas run --example NAME` runs `NAME.yaml` from here.

They are package data, so a non-editable install has them too; device profiles are written
inline (a config here cannot point at files outside the package). Every `*.yaml` in this
folder is an example, named by its file stem.
"""

from __future__ import annotations

from pathlib import Path

from edgenas.core.registry import Registry

HERE = Path(__file__).resolve().parent

EXAMPLES: Registry[Path] = Registry("example config")
for _file in sorted(HERE.glob("*.yaml")):
    EXAMPLES.register(_file.stem, _file)


def example_config(name: str) -> Path:
    """The file of the shipped run config `name`; an unknown name is a `UserError` listing the others."""
    return EXAMPLES.get(name)
