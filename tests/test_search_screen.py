"""Screening: evolution mechanics, the screen's budget handling and outputs, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgenas.cli import run
from edgenas.core.device import Budgets, DeviceProfile
from edgenas.core.rundir import RunDir
from edgenas.core.space import NetShape
from edgenas.proxies import AZ_PROXIES
from edgenas.proxies.pool import expand_proxy_names, rank_pool
from edgenas.search.evolution import evolve
from edgenas.search.screen import run_screen
from edgenas.spaces.nb201 import NB201Space

TINY = NetShape(width=4, cells=1, in_channels=1, resolution=8, num_classes=10)


def test_expand_proxy_names() -> None:
    assert expand_proxy_names("az") == list(AZ_PROXIES)
    assert expand_proxy_names("az_complexity,az") == ["az_complexity", *AZ_PROXIES[:3]]
    from edgenas.core.errors import UserError

    with pytest.raises(UserError, match="bogus"):
        expand_proxy_names("az,bogus")


def _convs(arch) -> dict[str, float]:
    return {"convs": float(sum(op == "nor_conv_3x3" for op in arch.ops))}


def _evolve_without_pools(seed: int) -> tuple[list[str], list[dict[str, float]], int]:
    """80 candidates scored by their count of 3x3 convs, under a "budget" of no avg_pool anywhere."""
    return evolve(
        NB201Space(),
        80,
        fits=lambda arch: "avg_pool_3x3" not in arch.ops,
        evaluate=_convs,
        rank=lambda v: rank_pool(v, ["convs"]),
        rng=np.random.default_rng(seed),
        population=16,
    )


def test_evolution_climbs_and_respects_budget() -> None:
    archs, values, rejected = _evolve_without_pools(0)
    assert len(archs) == len(set(archs)) == 80
    assert all("avg_pool_3x3" not in a for a in archs)
    assert rejected > 0
    first, last = np.mean([v["convs"] for v in values[:20]]), np.mean([v["convs"] for v in values[-20:]])
    assert last > first + 1  # selection from the top pushes toward more 3x3 convs
    assert last >= 2.5  # uniform sampling without avg_pool averages 1.5 3x3 convs of 6 edges
    assert _evolve_without_pools(0)[0] == archs


def test_evolution_gives_up_clearly_when_nothing_fits() -> None:
    from edgenas.core.errors import UserError

    with pytest.raises(UserError, match="inside the budget"):
        evolve(
            NB201Space(),
            5,
            fits=lambda a: False,
            evaluate=_convs,
            rank=lambda v: rank_pool(v, ["convs"]),
            rng=np.random.default_rng(0),
        )


def _tiny_screen(folder: Path, strategy: str) -> dict:
    profile = DeviceProfile(name="tiny", budgets=Budgets(max_flops=130_000))
    return run_screen(
        profile=profile,
        shape=TINY,
        names=list(AZ_PROXIES),
        strategy=strategy,
        n=12,
        top=3,
        batch=8,
        seed=1,
        compute="cpu",
        run=RunDir.create("screen", folder),
        quiet=True,
    )


@pytest.mark.parametrize("strategy", ["random", "evolution"])
def test_screen_outputs_and_budget(tmp_path: Path, strategy: str) -> None:
    res = _tiny_screen(tmp_path / strategy, strategy)
    assert len(res["chosen"]) == 3
    assert all(r["flops"] <= 130_000 for r in res["candidates"])
    assert res["rejected_over_budget"] > 0
    ranks = [r["rank"] for r in res["candidates"]]
    assert ranks == sorted(ranks) and [r["rank"] for r in res["chosen"]] == [1, 2, 3]
    scores = [r["az_score"] for r in res["candidates"]]
    assert scores == sorted(scores, reverse=True)
    for name in AZ_PROXIES:
        assert name in res["candidates"][0]
    for f in ("results.json", "screen.csv", "screen.png"):
        assert (tmp_path / strategy / f).is_file()
    again = _tiny_screen(tmp_path / "again", strategy)
    assert [r["arch"] for r in again["candidates"]] == [r["arch"] for r in res["candidates"]]


def test_screen_cli_with_arch_list(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    space = NB201Space()
    archs = [str(space.sample(np.random.default_rng(i))) for i in range(5)]
    (tmp_path / "archs.txt").write_text("# five archs\n" + "\n".join(archs) + "\n")
    code = run(
        [
            "screen",
            "--archs",
            str(tmp_path / "archs.txt"),
            "--dataset",
            "digits",
            "--width",
            "4",
            "--batch",
            "8",
            "--top",
            "2",
            "--quiet",
            "--run-dir",
            str(tmp_path / "r"),
        ]
    )
    assert code == 0
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert sorted(r["arch"] for r in res["candidates"]) == sorted(set(archs))
    assert "top 2 of 5" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["screen", "--proxies", "az,bogus"], "'bogus'"),
        (["screen", "--archs", "/nonexistent.txt"], "no such file"),
        (["screen", "--archs", "{list}", "--strategy", "evolution"], "cannot be combined"),
        (["screen", "--device", "/nonexistent.yaml"], "no such file"),
    ],
)
def test_screen_user_errors(tmp_path: Path, argv: list[str], needle: str, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "l.txt").write_text("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|\n")
    argv = [a.replace("{list}", str(tmp_path / "l.txt")) for a in argv]
    assert run([*argv, "--dataset", "digits", "--quiet", "--run-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err


def test_screen_gives_label_proxies_a_real_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgenas.search.screen as screen_mod

    seen = {}
    original = screen_mod.run_screen

    def spy(**kwargs):
        seen["real_batch"] = kwargs["real_batch"]
        return original(**kwargs)

    monkeypatch.setattr(screen_mod, "run_screen", spy)
    archs = tmp_path / "a.txt"
    archs.write_text("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|\n")
    base = ["screen", "--archs", str(archs), "--dataset", "digits", "--width", "4", "--batch", "8", "--quiet"]
    assert run([*base, "--proxies", "snip", "--run-dir", str(tmp_path / "s")]) == 0
    x, y = seen["real_batch"]
    assert x.shape == (8, 1, 8, 8) and y.dtype == torch.int64
    assert run([*base, "--proxies", "az", "--run-dir", str(tmp_path / "a")]) == 0
    assert seen["real_batch"] is None  # AZ proxies use noise only: no data load
