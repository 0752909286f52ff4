"""Pareto utilities for accuracy-vs-FLOPs sets: the non-dominated filter and the 2-D hypervolume.

Convention: FLOPs are minimised and accuracy maximised. A point dominates another when it
is no worse in both and strictly better in one. The hypervolume of a set is the area of
the region its points dominate inside the box bounded by a reference point
(`ref_flops`, `ref_accuracy`) that every set of a comparison shares, so larger is better
and two sets are comparable only under the same reference point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pareto_front(flops: Sequence[float], accuracy: Sequence[float], tolerance: float = 0.0) -> list[int]:
    """Indices of the non-dominated points, by FLOPs ascending (exact duplicates: the first one kept).

    With `tolerance` t > 0 a point is dropped only when a point at most as costly is more
    accurate by *more than* t: for accuracies read with noise of about t, a smaller lead
    is not evidence of dominance.
    """
    f = np.asarray(flops, dtype=float)
    a = np.asarray(accuracy, dtype=float)
    if f.shape != a.shape:
        raise ValueError(f"flops and accuracy differ in length ({f.size} vs {a.size})")
    # Sort by FLOPs ascending, then accuracy descending: a point is on the front when its
    # accuracy beats every cheaper (or equally cheap, earlier) point's.
    order = np.lexsort((np.arange(f.size), -a, f))
    front: list[int] = []
    best = -np.inf
    for i in order:
        if a[i] > best - tolerance or not front:
            front.append(int(i))
        best = max(best, a[i])
    return front


def hypervolume_2d(flops: Sequence[float], accuracy: Sequence[float], ref_flops: float, ref_accuracy: float) -> float:
    """Area dominated by the points inside [0, ref_flops] × [ref_accuracy, ∞) (FLOPs × accuracy units).

    With the front sorted by FLOPs ascending (so accuracy ascending too), the area is
    Σ_i (f_{i+1} − f_i) · (a_i − ref_accuracy) with f_{n+1} = ref_flops. Points at or beyond
    the reference point add nothing.
    """
    f = np.asarray(flops, dtype=float)
    a = np.asarray(accuracy, dtype=float)
    keep = (f < ref_flops) & (a > ref_accuracy)
    f, a = f[keep], a[keep]
    if f.size == 0:
        return 0.0
    idx = pareto_front(f, a)
    fs, acc = f[idx], a[idx]
    right = np.append(fs[1:], ref_flops)
    return float(np.sum((right - fs) * (acc - ref_accuracy)))
