"""Device profiles: YAML loading, quantities, errors with file/line/key, budget checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgenas.core.cost import Cost
from edgenas.core.device import check_budgets, fits, load_device
from edgenas.core.errors import ConfigError
from edgenas.core.yamlio import parse_quantity

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "devices"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "dev.yaml"
    p.write_text(text)
    return p


def test_quantities() -> None:
    assert parse_quantity("250k") == 250_000
    assert parse_quantity("20e6") == 20_000_000
    assert parse_quantity("1.5G") == 1_500_000_000
    assert parse_quantity("256KiB") == 262_144
    assert parse_quantity("2.5") == 2.5
    assert parse_quantity(7) == 7
    assert parse_quantity("lots") == "lots"


def test_load_and_check(tmp_path: Path) -> None:
    dev = load_device(write(tmp_path, "name: m\nbudgets:\n  max_params: 1k\n  max_flops: 2M\n  max_latency_ms: 3\n"))
    assert dev.budgets.max_params == 1000 and dev.budgets.max_flops == 2_000_000
    checks = check_budgets(dev.budgets, Cost(params=999, flops=3_000_000, peak_memory_bytes=10))
    assert [(c.budget, c.passed) for c in checks] == [
        ("max_params", True),
        ("max_flops", False),
        ("max_latency_ms", None),
    ]
    assert not fits(dev.budgets, Cost(999, 3_000_000, 10))
    assert fits(dev.budgets, Cost(1000, 2_000_000, 10))  # the limit itself is inside


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: m\nbudgets:\n  max_parms: 5\n", "dev.yaml:3: budgets.max_parms: unknown key"),
        ("name: m\nbudgets:\n  max_params: -5\n", "dev.yaml:3: budgets.max_params"),
        ("name: m\nbudgets:\n  max_flops: lots\n", "dev.yaml:3: budgets.max_flops"),
        ("budgets: {}\n", "name: Field required"),
        ("name: m\nbudgets: [1, 2\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("name: m\nlatency:\n  source: magic\n", "dev.yaml:3: latency.source"),
    ],
)
def test_errors_name_file_line_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_device(write(tmp_path, text))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_device(tmp_path / "nope.yaml")


def test_example_profiles_load() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) == 3
    budgets = [load_device(f).budgets for f in files]
    assert all(b.max_params and b.max_flops and b.max_peak_memory_bytes and b.max_latency_ms for b in budgets)
