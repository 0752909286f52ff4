"""The statistics every benchmark reports: mean ± std over seeds, paired differences with a 95%
interval, and Kendall τ with a bootstrap interval.

One seed is an anecdote (seed-to-seed noise on our runs is 0.3–1 point), so every comparison
goes through here. Paired intervals use Student's t over the paired differences (seeds, or
seeds × items averaged per seed); bootstraps resample with a fixed seed, so a report is
reproducible. Kendall τ is scipy's tau-b on ranks (ties allowed). A ground truth's own noise is
modelled by its rank ICC: from it, the τ two truths would agree at, the seeds that takes, and the
τ a perfect score could reach against it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

from edgenas.proxies.aggregate import rank_scores

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided interval; `method` says how it was computed."""

    estimate: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE
    method: str = "t"

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)

    def as_json(self) -> dict[str, float | int | str | None]:
        """`as_dict` with an undefined bound (NaN, e.g. from one seed) as None: valid JSON."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    def __str__(self) -> str:
        return f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"

    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (the difference is resolved)."""
        return self.low > 0 or self.high < 0


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof 1; None for a single value)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("mean_std of no values")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of `values` with Student's t interval (a single value: an interval of width 0 is not
    claimed; low and high are NaN)."""
    v = np.asarray(values, dtype=float)
    n = int(v.size)
    mean = float(v.mean())
    if n < 2:
        return Interval(mean, float("nan"), float("nan"), n, confidence, "t")
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1) * v.std(ddof=1) / np.sqrt(n))
    return Interval(mean, mean - half, mean + half, n, confidence, "t")


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """mean(a − b) over paired observations (same seed, same item) with a t interval."""
    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_.shape != b_.shape:
        raise ValueError(f"paired values need the same shape, got {a_.shape} and {b_.shape}")
    return t_interval((a_ - b_).ravel(), confidence)


def bootstrap_difference(
    a: np.ndarray, b: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0, confidence: float = CONFIDENCE
) -> Interval:
    """mean(a − b) for paired (seeds × items) arrays, with a percentile bootstrap that resamples
    seeds and items independently (both sources of noise), from a fixed `seed`."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.ndim == 1:
        d = d[None, :]
    rng = np.random.default_rng(seed)
    s, i = d.shape
    rows = rng.integers(0, s, size=(samples, s))
    cols = rng.integers(0, i, size=(samples, i))
    means = np.array([d[np.ix_(r, c)].mean() for r, c in zip(rows, cols, strict=True)])
    lo, hi = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Interval(float(d.mean()), float(lo), float(hi), int(d.size), confidence, "bootstrap seeds×items")


def _percentiles(values: list[float], confidence: float) -> tuple[float, float]:
    """The two-sided percentile interval of bootstrap values (NaN, NaN when none was defined,
    e.g. a constant score list, whose τ is undefined on every resample)."""
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return float(lo), float(hi)


def _bootstrap(
    statistic: Callable[[np.ndarray], float], n: int, samples: int, seed: int, confidence: float
) -> tuple[float, float]:
    """Percentile interval of `statistic(indices)` over `samples` resamples of n items with
    replacement from a fixed `seed` (resamples where it is undefined are skipped)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        v = statistic(rng.integers(0, n, size=n))
        if np.isfinite(v):
            values.append(v)
    return _percentiles(values, confidence)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall tau-b between two score lists (NaN/-inf rank at the bottom)."""
    return float(sps.kendalltau(rank_scores(x), rank_scores(y)).statistic)


def kendall_interval(
    x: Sequence[float],
    y: Sequence[float],
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Kendall τ with a percentile bootstrap over items (pairs resampled together, fixed `seed`)."""
    rx, ry = np.asarray(rank_scores(x), dtype=float), np.asarray(rank_scores(y), dtype=float)
    if rx.shape != ry.shape:
        raise ValueError(f"τ needs two lists of the same length, got {rx.size} and {ry.size}")
    tau = float(sps.kendalltau(rx, ry).statistic)
    lo, hi = _bootstrap(lambda i: sps.kendalltau(rx[i], ry[i]).statistic, rx.size, samples, seed, confidence)
    return Interval(tau, lo, hi, int(rx.size), confidence, "bootstrap items")


def split_half_tau(acc: np.ndarray, *, seed: int = 0, splits: int = 20) -> float:
    """Self-agreement of a multi-seed truth (archs × seeds): τ between the means of two disjoint
    halves of the seeds, averaged over `splits` random halvings (for 2 seeds: seed 0 vs seed 1)."""
    a = np.asarray(acc, dtype=float)
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError("split-half τ needs at least 2 seeds per arch")
    s = a.shape[1]
    if s == 2:
        return kendall_tau(a[:, 0], a[:, 1])
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(splits):
        perm = rng.permutation(s)
        h1, h2 = perm[: s // 2], perm[s // 2 : 2 * (s // 2)]
        taus.append(kendall_tau(a[:, h1].mean(1), a[:, h2].mean(1)))
    return float(np.mean(taus))


def rank_icc(acc: np.ndarray) -> float:
    """Single-seed reliability of a truth (archs × seeds): the one-way intraclass correlation
    ICC(1) (Shrout & Fleiss 1979) of the accuracies after a pooled normal-scores transform.

    ICC(1) is the share of the variance that lies between archs rather than between seeds of
    one arch. Ranks first, because Kendall τ only sees order: a few broken archs (NB201 cells
    at 10 %) would otherwise make raw-accuracy ICC near 1 while the bulk is ranked by noise."""
    a = np.asarray(acc, dtype=float)
    if a.ndim != 2 or a.shape[1] < 2 or a.shape[0] < 3:
        raise ValueError("ICC needs at least 3 archs with at least 2 seeds each")
    k = a.shape[1]
    z = sps.norm.ppf((sps.rankdata(a, method="average").reshape(a.shape) - 0.5) / a.size)
    msb = k * z.mean(1).var(ddof=1)  # between-arch mean square
    msw = z.var(axis=1, ddof=1).mean()  # within-arch (seed) mean square
    return float((msb - msw) / (msb + (k - 1) * msw))


def spearman_brown(icc: float, seeds: float) -> float:
    """Reliability of the mean of `seeds` seeds from the single-seed one (ICC below 0: no signal, 0)."""
    icc = max(0.0, icc)
    return seeds * icc / (1 + (seeds - 1) * icc)


def predicted_tau(icc: float, seeds: float) -> float:
    """Kendall τ expected between two independent means of `seeds` seeds each, for archs with
    single-seed reliability `icc`: Spearman–Brown gives the correlation r of such means and
    Greiner's relation τ = (2/π)·arcsin(r) turns it into τ (exact for normal scores). An ICC
    below 0 (seeds disagree more than chance) counts as 0: no signal."""
    return float(2 / math.pi * math.asin(min(1.0, spearman_brown(icc, seeds))))


def tau_ceiling(icc: float, seeds: int) -> float:
    """Kendall τ a perfect, noiseless score can expect against the mean of `seeds` seeds: the
    correlation of the mean with the archs' true quality is the square root of its
    Spearman–Brown reliability (0 when icc <= 0), then τ = (2/π)·arcsin(r)."""
    return float(2 / math.pi * math.asin(math.sqrt(min(1.0, spearman_brown(icc, seeds)))))


def seeds_for_tau(icc: float, target: float) -> float | None:
    """Seeds each of two independent means needs for `predicted_tau` to reach `target` (inverse
    of Spearman–Brown; fractional). None when the archs carry no signal (icc <= 0)."""
    if icc <= 0:
        return None
    r = math.sin(target * math.pi / 2)
    return max(1.0, r * (1 - icc) / (icc * (1 - r)))


def split_half_interval(
    acc: np.ndarray,
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Interval:
    """`split_half_tau` with a percentile bootstrap over archs (fixed `seed`). For 2 seeds this is
    `kendall_interval` of seed 0 vs seed 1; for more, each resample also draws its own halving,
    so the interval covers the choice of halves as well as the choice of archs."""
    a = np.asarray(acc, dtype=float)
    estimate = split_half_tau(a, seed=seed)
    if a.shape[1] == 2:
        iv = kendall_interval(a[:, 0], a[:, 1], samples=samples, seed=seed, confidence=confidence)
        return Interval(estimate, iv.low, iv.high, iv.n, confidence, "bootstrap archs")
    rng = np.random.default_rng(seed)
    n, s = a.shape
    taus = []
    for _ in range(samples):
        rows = a[rng.integers(0, n, size=n)]
        perm = rng.permutation(s)
        t = kendall_tau(rows[:, perm[: s // 2]].mean(1), rows[:, perm[s // 2 : 2 * (s // 2)]].mean(1))
        if np.isfinite(t):
            taus.append(t)
    lo, hi = _percentiles(taus, confidence)
    return Interval(estimate, lo, hi, n, confidence, "bootstrap archs × halvings")


def kendall_difference(
    x1: Sequence[float],
    x2: Sequence[float],
    y: Sequence[float],
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Interval:
    """τ(x1, y) − τ(x2, y) with a paired percentile bootstrap over items: both scores are judged
    on the same resampled items, so what the two share (the truth's noise, the items drawn)
    cancels out of the difference. Used for "proxy A vs proxy B on one truth"."""
    r1, r2, ry = (np.asarray(rank_scores(v), dtype=float) for v in (x1, x2, y))
    if not r1.size == r2.size == ry.size:
        raise ValueError(f"τ difference needs three lists of one length, got {r1.size}, {r2.size}, {ry.size}")
    est = float(sps.kendalltau(r1, ry).statistic - sps.kendalltau(r2, ry).statistic)

    def diff(i: np.ndarray) -> float:
        return sps.kendalltau(r1[i], ry[i]).statistic - sps.kendalltau(r2[i], ry[i]).statistic

    lo, hi = _bootstrap(diff, ry.size, samples, seed, confidence)
    return Interval(est, lo, hi, int(ry.size), confidence, "paired bootstrap items")
