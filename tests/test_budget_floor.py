"""Budgets below the space's smallest network are refused at config load, in one line naming the
device, the budget and the smallest reachable value, before any search or training starts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgenas.cli import run as cli
from edgenas.core.device import Budgets, DeviceProfile
from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.cost.floor import cost_floor, unreachable_budgets
from edgenas.pipeline.config import load_run_config
from edgenas.spaces import get_space

SHAPE = NetShape(width=16, cells=1, in_channels=1, resolution=28, num_classes=10)


def test_floor_is_the_cheapest_networks_exact_cost() -> None:
    space = get_space("nb201")
    floor = cost_floor(space, SHAPE)
    assert floor.params > 0 and floor.flops > 0 and floor.peak_memory_bytes > 0
    ok = DeviceProfile(name="ok", budgets=Budgets(max_params=floor.params, max_flops=floor.flops))
    assert unreachable_budgets(ok, space, SHAPE) == []
    low = DeviceProfile(name="low", budgets=Budgets(max_params=floor.params - 1, max_flops=floor.flops))
    (bad,) = unreachable_budgets(low, space, SHAPE)
    assert (bad.budget, bad.limit, bad.floor) == ("max_params", floor.params - 1, floor.params)


def test_run_config_refuses_an_unreachable_budget_at_load(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "space: {width: 16, cells: 1}\n"
        "devices:\n"
        "  - name: fine\n    budgets: {max_params: 1M}\n"
        "  - name: tiny\n    budgets:\n      max_flops: 10M\n      max_params: 10\n"
    )
    with pytest.raises(ConfigError) as err:
        load_run_config(cfg)
    msg = str(err.value)
    assert f"{cfg}:8: devices.1.budgets.max_params: device 'tiny': max_params 10 is below" in msg
    assert "nb201 space at width 16, cells 1" in msg and "\n" not in msg
    start = time.monotonic()
    assert cli(["run", str(cfg), "--run-dir", str(tmp_path / "r"), "--quiet"]) == 2
    assert time.monotonic() - start < 60  # refused at load, not after a search
    assert not (tmp_path / "r").exists()
    assert capsys.readouterr().err.count("\n") == 1


def test_a_profile_file_budget_is_refused_naming_the_profile(tmp_path: Path) -> None:
    (tmp_path / "mcu.yaml").write_text("name: mcu\nbudgets:\n  max_peak_memory_bytes: 100\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("devices:\n  - profile: mcu.yaml\n")
    with pytest.raises(ConfigError, match=r":2: devices.0.profile: device 'mcu': max_peak_memory_bytes 100 B"):
        load_run_config(cfg)


def test_search_refuses_an_unreachable_budget_before_a_run_folder(tmp_path: Path, capsys) -> None:
    dev = tmp_path / "d.yaml"
    dev.write_text("name: d\nbudgets:\n  max_params: 10\n")
    code = cli(
        [
            "search",
            "--device",
            str(dev),
            "--dataset",
            "digits",
            "--subset",
            "600",
            "--run-dir",
            str(tmp_path / "s"),
            "--quiet",
        ]
    )
    assert code == 2 and not (tmp_path / "s").exists()
    assert "max_params 10 is below the smallest network" in capsys.readouterr().err
