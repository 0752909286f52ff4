"""The CLI contract, over every registered command and sub-action (from the registry, not a list).

`edgenas CMD --help` exits 0 and prints the command's usage; a bad flag exits 2 with one
line on stderr, `edgenas CMD: error: ... (see `edgenas CMD --help`)`, and no usage block;
every module of `edgenas/cli/` registers a command.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import edgenas.cli
from edgenas.cli import COMMANDS, Command, load_commands, run

load_commands()
# "devices check", "bench truth", ...: what a handler runs; groups ("bench") only dispatch
LEAVES = {name: cmd for top in COMMANDS for name, cmd in COMMANDS.get(top).leaves(top)}
GROUPS = [top for top in COMMANDS if COMMANDS.get(top).actions]


def test_registry_holds_the_public_commands() -> None:
    public = {"run", "quickstart", "report", "train", "distill", "teacher", "devices check", "export", "screen"}
    public |= {"bench truth", "bench proxies", "search", "retrieval", "profile-device"}
    assert public <= set(LEAVES)
    assert {"bench", "devices"} <= set(GROUPS)


@pytest.mark.parametrize("command", [*LEAVES, *GROUPS])
def test_help_exits_0_with_usage(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        run([*command.split(), "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: edgenas {command} ")
    if command in LEAVES:
        assert LEAVES[command].help  # every command says what it does in `edgenas --help`


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        run(["--help"])
    assert exc.value.code == 0
    listed = capsys.readouterr().out
    for name in COMMANDS:
        assert f"    {name} " in listed or f"    {name}\n" in listed, name


@pytest.mark.parametrize("command", [*LEAVES, *GROUPS])
def test_bad_flag_is_one_line_exit_2(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        run([*command.split(), "--no-such-flag"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err  # no usage block
    line = lines[0]
    assert line.startswith(f"edgenas {command}: error: ") and line.endswith(f"(see `edgenas {command} --help`)")
    # the flag itself, unless a required argument is missing first (argparse checks those first)
    assert "unrecognized arguments: --no-such-flag" in line or "the following arguments are required" in line


@pytest.mark.parametrize(
    ("argv", "command"), [(["train"], "train"), (["bench", "truth", "--out", "x.jsonl"], "bench truth")]
)
def test_unknown_flag_is_named_by_its_command(argv: list[str], command: str, capsys: pytest.CaptureFixture) -> None:
    """argparse reports an unknown flag from the top-level parser; the line names the command instead."""
    with pytest.raises(SystemExit):
        run([*argv, "--no-such-flag"])
    err = capsys.readouterr().err.strip()
    assert err == f"edgenas {command}: error: unrecognized arguments: --no-such-flag (see `edgenas {command} --help`)"


def test_every_cli_module_registers_a_command() -> None:
    folder = Path(edgenas.cli.__file__).parent
    modules = {f"edgenas.cli.{p.stem}" for p in folder.glob("*.py")} - {
        "edgenas.cli.__init__",
        "edgenas.cli.__main__",
        "edgenas.cli._args",
    }
    registered = {cmd.handler.__module__ for cmd in LEAVES.values()}
    assert modules - registered == set(), "a module under edgenas/cli/ registers no command"
    assert registered <= modules


def test_no_command_module_shadows_a_name_of_the_package() -> None:
    """Importing `edgenas/cli/run.py` would replace the function `edgenas.cli.run` by the module."""
    stems = {p.stem for p in Path(edgenas.cli.__file__).parent.glob("*.py")}
    assert stems & set(edgenas.cli.__all__) == set()
    assert callable(edgenas.cli.run) and edgenas.cli.run.__module__ == "edgenas.cli"


def test_a_command_has_a_handler_or_actions() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Command("neither")
    with pytest.raises(ValueError, match="exactly one"):
        Command("both", handler=lambda args: 0, actions={"x": Command("x", handler=lambda args: 0)})


def test_readme_command_table_names_every_command() -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text()
    table = text[text.index("## What works today") :]
    table = table[: table.index("\n\n", table.index("| command |"))]
    rows = [line for line in table.splitlines() if line.startswith("| `edgenas ")]
    for command in LEAVES:
        assert any(f"`edgenas {command}" in row for row in rows), f"README's command table lacks `edgenas {command}`"
