"""PNG plots written next to results (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from edgenas.search.pareto import pareto_front


def score_vs_flops(
    path: str | Path,
    flops: Sequence[float],
    scores: Sequence[float],
    chosen: Sequence[bool],
    title: str,
    budget_flops: float | None = None,
) -> Path:
    """Ranking score against FLOPs, chosen candidates highlighted, the FLOPs budget drawn."""
    flops_m = np.asarray(flops, dtype=float) / 1e6
    scores_a = np.asarray(scores, dtype=float)
    chosen_a = np.asarray(chosen, dtype=bool)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter(flops_m[~chosen_a], scores_a[~chosen_a], s=12, alpha=0.5, color="tab:gray", label="screened")
    ax.scatter(flops_m[chosen_a], scores_a[chosen_a], s=36, color="tab:red", edgecolor="black", label="chosen")
    if budget_flops:
        ax.axvline(budget_flops / 1e6, color="tab:blue", linestyle="--", label="FLOPs budget")
    ax.set_xlabel("MFLOPs (batch 1)")
    ax.set_ylabel("AZ score (sum of log normalised ranks)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def proxy_scatter_grid(
    path: str | Path, accuracy: Sequence[float], columns: dict[str, Sequence[float]], taus: dict[str, float]
) -> Path:
    """One panel per proxy: proxy rank (x) against trained accuracy (y), Kendall tau in the title."""
    from edgenas.proxies.aggregate import rank_scores

    names = list(columns)
    cols = 4
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), dpi=110, squeeze=False)
    acc = np.asarray(accuracy, dtype=float) * 100
    # A few dead archs (chance accuracy) would squash the informative range: clip the axis to
    # the bulk of the data and draw what falls below as triangles on the bottom edge.
    low = np.percentile(acc, 2) - 1.0
    below = acc < low
    for ax, name in zip(axes.flat, names, strict=False):
        ranks = rank_scores(columns[name])
        ax.scatter(ranks[~below], acc[~below], s=8, alpha=0.6)
        ax.scatter(
            ranks[below],
            np.full(below.sum(), low),
            marker="v",
            s=14,
            color="tab:red",
            clip_on=False,
            label=f"{below.sum()} below {low:.0f}%" if below.any() else None,
        )
        ax.set_ylim(low, acc.max() + 0.5)
        if below.any():
            ax.legend(fontsize=6, loc="upper left")
        ax.set_title(f"{name}  τ={taus[name]:.3f}", fontsize=9)
        ax.set_xlabel("proxy rank", fontsize=8)
        ax.set_ylabel("test acc %", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def alpha_history(path: str | Path, history: Sequence[dict], ops: Sequence[str], edge_names: Sequence[str]) -> Path:
    """One panel per edge: each op's probability by epoch; a last panel: E[cost]/budget by epoch."""
    epochs = [h["epoch"] for h in history]
    probs = np.asarray([h["probs"] for h in history], dtype=float)  # (epochs, edges, ops)
    n_edges = probs.shape[1] if probs.size else len(edge_names)
    cols = 4
    rows = -(-(n_edges + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.7 * rows), dpi=110, squeeze=False)
    for e, ax in enumerate(axes.flat[:n_edges]):
        for o, name in enumerate(ops):
            ax.plot(epochs, probs[:, e, o], marker=".", label=name)
        ax.set_title(f"edge {edge_names[e]}", fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7, loc="upper left")
    ax = axes.flat[n_edges]
    names = list(history[0]["expected_over_budget"]) if history else []
    for name in names:
        ax.plot(epochs, [h["expected_over_budget"][name] for h in history], marker=".", label=name)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_title("expected cost / budget", fontsize=9)
    ax.set_xlabel("epoch", fontsize=8)
    if names:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    for ax in axes.flat[n_edges + 1 :]:
        ax.axis("off")
    fig.suptitle("op probabilities softmax(α) during the search (warm-up epochs are flat)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def op_histogram_plot(path: str | Path, counts: dict[str, int], title: str) -> Path:
    """Bar chart of how often each op was chosen (a collapse onto skip/none shows at a glance)."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.bar(list(counts), list(counts.values()), color="tab:blue")
    ax.set_ylabel("edges")
    ax.set_title(title)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def accuracy_vs_flops(
    path: str | Path, points: Sequence[tuple[float, float, str]], flops_budgets: dict[str, float], title: str
) -> Path:
    """Test accuracy against FLOPs of each trained model, the non-dominated ones joined, FLOPs budgets drawn."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    xy = [(f / 1e6, a * 100) for f, a, _ in points]
    colour = {label: plt.cm.tab10(k % 10) for k, (_, _, label) in enumerate(points)}
    for (x, y), (_, _, label) in zip(xy, points, strict=True):
        ax.scatter([x], [y], s=40, color=colour[label], edgecolor="black", zorder=3)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    front = pareto_front([x for x, _ in xy], [y for _, y in xy])
    ax.plot(
        [xy[i][0] for i in front], [xy[i][1] for i in front], "--", color="tab:gray", zorder=2, label="Pareto front"
    )
    for name, limit in sorted(flops_budgets.items(), key=lambda kv: kv[1]):
        ax.axvline(
            limit / 1e6, color=colour.get(name, "tab:gray"), alpha=0.6, linestyle=":", label=f"{name} FLOPs budget"
        )
    ax.set_xlabel("FLOPs (M, batch 1)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def pareto_plot(
    path: str | Path,
    points: dict[str, Sequence[tuple[float, float]]],
    fronts: dict[str, Sequence[tuple[float, float]]],
    title: str,
    ylabel: str = "accuracy",
) -> Path:
    """Accuracy against FLOPs: every set's points faint, each Pareto front as a step line."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, pts) in enumerate(points.items()):
        if pts:
            f, a = np.asarray(pts, dtype=float).T
            ax.scatter(f / 1e6, a, s=14, alpha=0.35, color=colors[i % len(colors)], label=f"{name} ({len(pts)})")
    for i, (name, pts) in enumerate(fronts.items()):
        if pts:
            f, a = np.asarray(sorted(pts), dtype=float).T
            color = colors[(i + len(points)) % len(colors)] if name not in points else None
            ax.step(f / 1e6, a, where="post", marker="o", color=color, label=f"{name} ({len(pts)})")
    # zoom on the fronts: a few failed archs far below them would squash every front into one line
    front_acc = [a for pts in fronts.values() for _f, a in pts]
    all_acc = front_acc + [a for pts in points.values() for _f, a in pts]
    if front_acc and all_acc:
        low = min(front_acc)
        span = max(max(all_acc) - low, 0.01)
        # points within 3 front-spans below the fronts stay in view; only what lies farther is cut
        bottom = min(a for a in all_acc if a >= low - 3 * span) - 0.1 * span
        below = sum(a < bottom for a in all_acc)
        if below:
            ax.set_ylim(bottom=bottom)
            ax.text(0.01, 0.01, f"{below} point(s) below the axis", transform=ax.transAxes, fontsize=7, color="gray")
    ax.set_xlabel("MFLOPs (batch 1)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def stage_seconds_plot(path: str | Path, seconds: dict[str, float], title: str) -> Path:
    """Horizontal bars: wall seconds spent in each pipeline stage (all sessions of a resumed run)."""
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * max(len(seconds), 1)), dpi=120)
    names = list(seconds)
    ax.barh(names[::-1], [seconds[n] for n in names][::-1], color="tab:blue")
    ax.set_xlabel("seconds")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def shrink_plot(
    path: str | Path,
    start: tuple[int, float],
    deletions: Sequence[dict],
    snapshots: Sequence[dict],
    target: tuple[float, float, int],
    levels: Sequence[float] = (),
    on_flops: bool = False,
    last_step: int = 0,
) -> Path:
    """DNAD shrinking by α-step: live ops, and live FLOPs against the harvest levels, with the schedule.

    `start` = (live ops, live FLOPs) before the first deletion; `target` = (start, final,
    steps it falls over) of the linear schedule (the lines run on to `last_step`, the search's
    last α-step), in the units it is kept in: live FLOPs (`on_flops`,
    drawn on the FLOPs panel), else live ops or Σ attention of live ops.
    """
    steps = [0] + [d["step"] for d in deletions]
    ops = [start[0]] + [d["live_ops"] for d in deletions]
    flops = [start[1]] + [d["live_flops"] for d in deletions]
    end = max([target[2], last_step, *steps])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    a1.step([*steps, end], [*ops, ops[-1]], where="post", label="live ops")
    if not on_flops:
        a1.plot([0, target[2]], [target[0], target[1]], "k--", linewidth=1, label="schedule target")
    a1.set_xlabel("α-step")
    a1.set_ylabel("live ops")
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    a2.step([*steps, end], np.asarray([*flops, flops[-1]]) / 1e6, where="post", label="live supernet")
    for lv in levels:
        a2.axhline(lv / 1e6, color="tab:gray", linestyle=":", linewidth=0.8)
    if on_flops:
        a2.plot([0, target[2]], [target[0] / 1e6, target[1] / 1e6], "k--", linewidth=1, label="schedule target")
    if snapshots:
        a2.scatter([s["step"] for s in snapshots], [s["flops"] / 1e6 for s in snapshots], color="tab:red",
                   zorder=3, s=18, label="snapshot arch (NB201)")  # fmt: skip
    a2.set_xlabel("α-step")
    a2.set_ylabel("MFLOPs at the deployed shape")
    a2.legend(fontsize=8)
    a2.grid(alpha=0.3)
    fig.suptitle("DNAD progressive shrinking (dotted: harvest levels)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def e2e_plot(path: str | Path, devices: Sequence[dict], title: str) -> Path:
    """`bench e2e`: test accuracy per device and arm, mean ± std over seeds, each seed a dot (an arm
    absent on a device, a stock network no multiplier fits, leaves its place empty)."""
    arms = list(dict.fromkeys(arm for d in devices for arm in d["arms"]))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / max(len(arms), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 * len(devices) + 2), 4.2), dpi=120)
    for j, arm in enumerate(arms):
        at = [(i, d["arms"][arm]) for i, d in enumerate(devices) if arm in d["arms"]]
        x = np.array([i for i, _ in at]) + (j - (len(arms) - 1) / 2) * width
        means = [a["mean"] * 100 for _, a in at]
        stds = [(a["std"] or 0.0) * 100 for _, a in at]
        ax.errorbar(x, means, yerr=stds, fmt="o", capsize=4, color=colors[j % len(colors)], label=arm)
        for xi, (_, a) in zip(x, at, strict=True):
            accs = np.asarray(a["test_accuracy"], dtype=float) * 100
            ax.scatter(np.full(accs.size, xi + width / 4), accs, s=9, alpha=0.5, color=colors[j % len(colors)])
    ax.set_xticks(np.arange(len(devices)), [d["device"] for d in devices])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
