"""Plots that people read instead of tables: the Pareto plot stays readable with outliers."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from edgenas.report import plots


def _ylim_of(monkeypatch, points, fronts, tmp_path: Path) -> tuple[float, float]:
    seen = {}
    real_close = plt.close

    def keep(fig):
        seen["ylim"] = fig.axes[0].get_ylim()
        real_close(fig)

    monkeypatch.setattr(plots.plt, "close", keep)
    out = plots.pareto_plot(tmp_path / "p.png", points, fronts, "t")
    assert out.stat().st_size > 0
    return seen["ylim"]


def test_pareto_plot_zooms_on_the_fronts_past_a_failed_arch(monkeypatch, tmp_path: Path) -> None:
    pool = [(3e6, 0.80), (6e6, 0.82), (9e6, 0.83), (3e6, 0.10)]  # one arch that never learned
    fronts = {"A": [(3e6, 0.80), (9e6, 0.83)]}
    bottom, top = _ylim_of(monkeypatch, {"pool": pool}, fronts, tmp_path)
    assert 0.10 < bottom < 0.80 and top > 0.83
    # nothing far below: matplotlib's own limits, every point visible
    bottom, _ = _ylim_of(monkeypatch, {"pool": pool[:3]}, fronts, tmp_path)
    assert bottom < 0.80
