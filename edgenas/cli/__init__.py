"""The `edgenas` command: a thin argparse layer over the Python functions.

Each command is one module of this package that registers a `Command` (help, arguments,
handler, or sub-actions) in `COMMANDS` with one line; the parser is built from the registry,
so a new command is one new file. Handlers map flags to one library function and print.
User mistakes (`UserError`) print one line and exit 2, and so do argparse's own errors;
Ctrl-C exits 130 with a hint on how to resume. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from edgenas import __version__
from edgenas.core.errors import Interrupted, UserError
from edgenas.core.registry import Registry
from edgenas.distill.teacher_net import TEACHER_ARCH

__all__ = ["COMMANDS", "TEACHER_ARCH", "Command", "build_parser", "load_commands", "main", "run"]


@dataclass(frozen=True)
class Command:
    """One command, or one sub-action of a command (`devices check`, `bench truth`).

    A command has a `handler` (flags -> exit status) and its `arguments` builder, or, for a
    group such as `bench`, `actions`: the sub-actions by name, each a `Command` itself.
    """

    help: str
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    handler: Callable[[argparse.Namespace], int] | None = None
    description: str | None = None
    actions: Mapping[str, Command] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.handler is None) == (not self.actions):
            raise ValueError("a command has a handler or sub-actions, exactly one of the two")

    def leaves(self, name: str) -> list[tuple[str, Command]]:
        """`(full name, command)` of this command, or of each of its sub-actions."""
        if not self.actions:
            return [(name, self)]
        return [leaf for sub, cmd in self.actions.items() for leaf in cmd.leaves(f"{name} {sub}")]


COMMANDS: Registry[Command] = Registry("command")


def load_commands() -> Registry[Command]:
    """Import every command module of this package (each registers itself); returns `COMMANDS`."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return COMMANDS


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, like a `UserError`: `edgenas CMD: error: ...` and exit 2.

    The usage block argparse would print first is left out (some commands' run over ten lines);
    the line ends with where to read it.
    """

    # the top-level parser's: handler -> the parser of its command, to name it in errors
    leaf_parsers: dict[Callable[[argparse.Namespace], int], argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message.replace(chr(10), ' ')} (see `{self.prog} --help`)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None) -> Any:
        """As argparse's, but an unknown flag is reported by the command it was given to."""
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = getattr(self, "leaf_parsers", {}).get(getattr(ns, "handler", None), self)
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns


def _add(top: _Parser, sub: argparse._SubParsersAction, name: str, cmd: Command) -> None:
    p = sub.add_parser(name, help=cmd.help, description=cmd.description)
    if cmd.arguments is not None:
        cmd.arguments(p)
    if cmd.actions:
        actions = p.add_subparsers(dest=f"{name.replace('-', '_')}_command", metavar="ACTION", required=True)
        for action, sub_cmd in cmd.actions.items():
            _add(top, actions, action, sub_cmd)
    else:
        p.set_defaults(handler=cmd.handler)
        top.leaf_parsers[cmd.handler] = p


def build_parser() -> argparse.ArgumentParser:
    """The `edgenas` parser: one sub-parser per registered command, in name order."""
    parser = _Parser(prog="edgenas", description=__doc__.splitlines()[0])
    parser.leaf_parsers = {}
    parser.add_argument("--version", action="version", version=f"edgenas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = load_commands()
    for name in sorted(commands):
        _add(parser, sub, name, commands.get(name))
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse and dispatch; returns the exit status (argparse's errors and --help raise SystemExit)."""
    from edgenas.core.precision import switches

    args = build_parser().parse_args(argv)
    try:
        with switches(amp=getattr(args, "amp", None), channels_last=getattr(args, "channels_last", None)):
            return args.handler(args)
    except UserError as exc:
        print(f"edgenas: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Interrupted as exc:
        print(f"edgenas: interrupted; {exc.hint}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("edgenas: interrupted", file=sys.stderr)
        return 130


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
