"""Console tables (rich) for the CLI."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from edgenas.core.device import BudgetCheck
from edgenas.report.units import format_budget_value

# Off a terminal (logs, pipes, tests) rich would wrap at 80 columns and squeeze cells.
stdout = Console(width=None if sys.stdout.isatty() else 200)


def verdict(passed: bool | None) -> str:
    """Coloured pass/fail word."""
    return {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "[yellow]not measured[/]"}[passed]


def budget_table(title: str, checks: Sequence[BudgetCheck]) -> Table:
    """One row per budget: limit, cost, pass/fail."""
    table = Table(title=title)
    for col in ("budget", "limit", "cost", "result"):
        table.add_column(col)
    for c in checks:
        table.add_row(
            c.budget, format_budget_value(c.budget, c.limit), format_budget_value(c.budget, c.value), verdict(c.passed)
        )
    return table


def rows_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    """A plain table from rows of values (already formatted or str()-able)."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    return table
