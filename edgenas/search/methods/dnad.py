"""DNAD: super-network progressive shrinking (SNPS) while imitating a teacher.

Rao, Zhao, Liu, "DNAD: Differentiable Neural Architecture Distillation", arXiv 2504.20080
(authors' code: github RaoXuan-1998/NADD). Instead of one arch per device, one search
shrinks a space's supernet (the one DCA-NAS trains; any space with a supernet description,
`edgenas.core.space.SearchSpace`) from dense to sparse and harvests a Pareto set of archs
along the way, for every device at once.

- Attention: every op has its own weight a = sigmoid(θ) (choice points × ops), so any number
  of ops per point may survive; "none" is dead from the start (a point whose ops all die
  *is* "none").
- α-step: task loss (CE + Hinton KD + last-stage feature KD against the frozen teacher,
  whose outputs are cached once) + λ·(sparsity entropy of the live ops + c·their FLOPs
  share). λ rises while the live FLOPs lag a linear schedule and falls while ahead.
- Deletion: an op under `delete_threshold` for `delete_patience` α-steps is removed for
  good; deletions that cost FLOPs are metered by the schedule.
- Harvest: the costliest live op per point (with `keep_per_node`, of the costliest inputs
  per node), taken when the live FLOPs cross a level and at every deletion that changes it;
  each snapshot's accuracy is read from the final supernet after a short fine-tune; the
  Pareto set tolerates a lead under the reading's error.
The run directory holds a per-epoch checkpoint (alive mask, θ, λ, deletions, snapshots), so
`--resume` gives the same result as an uninterrupted run.

Variants (`variant`, one implementation whose parts are named options, `VARIANTS`):
`edgenas` (default) is the above; `paper` is the authors' code's form: per-node weights
w = ReLU(θ)/Σ_node ReLU(θ) from θ0 = 2, sparsity S = Σ log(1 + 50w), the loss
(CE + κ·KD)(1 + γS) + γμS with one-level steps (w: Adam, θ: SGD on the same batch), deletion
at w < 0.01, γ and μ driven by the EMA of deletions per step (`DeletionController`), a
genotype saved at every stall and every epoch, a stop at S < S_min, and feature-only KD at
the stage outputs (`StageFeatureKD`; `kd_weight` > 0 adds logit KD).

Where this departs from the paper (the choices marked *(inferred)* there), the options
under `experimental`, and what was measured: docs/methods/dnad.md.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from edgenas.core.errors import ConfigError
from edgenas.core.rundir import RunDir
from edgenas.core.seeding import derive_seed, torch_generator
from edgenas.core.space import Arch, NetShape, SearchSpace
from edgenas.cost import count_flops, count_params
from edgenas.cost.terms import CostTerms, additive_terms
from edgenas.data import BatchLoader, DataSplits, Split
from edgenas.distill.losses import FeatureKD, StageFeatureKD, hinton_kd, stage_outputs
from edgenas.search.bilevel import CHECKPOINT as CHECKPOINT
from edgenas.search.bilevel import (  # the run's checkpoint file, named here too
    BilevelSearch,
    ExperimentalOptions,
    SearchOptions,
)
from edgenas.search.methods import SearchMethod
from edgenas.search.pareto import pareto_front

# The parts of each variant: an option left unset takes its variant's value (`SNPSConfig`).
VARIANTS: dict[str, dict[str, Any]] = {
    "edgenas": {"attention": "sigmoid", "objective": "schedule", "one_level": False, "w_optimizer": "sgd",
                "theta_optimizer": "adam", "feature_kd": "last", "harvest": "levels", "warmup_epochs": 2, "k": 2,
                "w_lr": 0.05, "alpha_lr": 0.1, "alpha_init": 0.0, "delete_threshold": 0.05, "delete_patience": 5,
                "kd_weight": 1.0, "feature_weight": 0.1, "snapshot_arch": "costliest"},
    "paper": {"attention": "node_relu", "objective": "multiplicative", "one_level": True, "w_optimizer": "adam",
              "theta_optimizer": "sgd", "feature_kd": "stages", "harvest": "stalls", "warmup_epochs": 0, "k": 1,
              "w_lr": 5e-4, "alpha_lr": 0.2, "alpha_init": 2.0, "delete_threshold": 0.01, "delete_patience": 1,
              "kd_weight": 0.0, "feature_weight": 1.0, "snapshot_arch": "strongest"},
}  # fmt: skip
_EXPERIMENTAL_PARTS = ("snapshot_arch",)
SPARSITY_SCALE = 50.0  # S = Σ log(1 + 50 w), the authors' constant

# Options added after the first runs, with the values that reproduce those runs (for resume).
LEGACY_OPTIONS: dict[str, Any] = {
    "variant": "edgenas",
    **{k: v for k, v in VARIANTS["edgenas"].items() if k in ("attention", "objective", "one_level", "w_optimizer",
       "theta_optimizer", "feature_kd", "harvest")},
    "stage_weights": [0.2, 0.3, 0.5], "gamma_init": 1e-4, "gamma_max": 0.1, "gamma_up": 1.01, "gamma_down": 0.99,
    "deletion_rate": 0.005, "deletion_ema": 0.9, "stall_steps": 50, "mu_init": 0.1, "mu_growth": 1.5,
    "stop_sparsity": 250 / 576,
}  # fmt: skip


class SNPSExperimental(ExperimentalOptions):
    """DNAD options for ablations; why each is here: docs/methods/dnad.md, "Options"."""

    entropy_scope: Literal["cell", "edge"] = Field(
        "cell", description="normalise the sparsity entropy over the whole cell, or over each edge"
    )
    entropy_of: Literal["logits", "weights"] = Field(
        "weights", description="p = a/Σa over live ops, or softmax(θ/T) (translation-invariant: nothing dies)"
    )
    entropy_temperature: float = Field(4.0, gt=0, description="T of softmax(θ/T), for entropy_of=logits")
    polarize: bool = Field(
        False, description="add the mean binary entropy of the weights (sinks ops at 0.1-0.3, pins those above 0.5)"
    )
    cost_weight: float = Field(
        1.0, ge=0, description="c in the pressure H + c·F, F the attention-weighted share of live FLOPs (0: H only)"
    )
    schedule_on: Literal["flops", "soft", "hard"] = Field(
        "flops",
        description="the schedule follows live FLOPs (deletions metered to it), Σ attention of live ops (soft) "
        "or their count (hard)",
    )
    final_live: int = Field(1, ge=1, description="live ops the soft/hard schedule aims at by the end")
    hold_lambda_while_waiting: bool = Field(
        True, description="flops schedule: hold λ, instead of lowering it, while metered ops wait under the threshold"
    )
    keep_connected: bool = Field(True, description="never delete the last op joining input and output")
    snapshot_arch: Literal["costliest", "strongest"] | None = Field(
        None,
        description="a snapshot's cell: the costliest live op per edge (edgenas), or the one of highest attention "
        "(paper)",
    )
    snapshot_on: Literal["levels", "change"] = Field(
        "change", description="snapshot at FLOPs levels only, or also at every deletion that changes the cell"
    )
    snapshot_eval: Literal["end", "snapshot"] = Field(
        "end", description="read every snapshot from the final supernet, or from the supernet when it was taken"
    )
    eval_weights: Literal["sigmoid", "one"] = Field(
        "sigmoid", description="op weights of a restricted supernet read at its snapshot: sigmoid(θ) or 1"
    )
    pareto_on: Literal["live", "arch"] = Field(
        "arch", description="Pareto set by the single-op arch's (FLOPs, val acc), or by the live multi-op cell's"
    )
    pareto_tolerance: Literal["se", "none"] = Field(
        "se", description="a lead under the standard error of two readings, √(2p(1−p)/n), does not dominate (none: any)"
    )


class SNPSConfig(SearchOptions):
    """The DNAD search protocol; recorded in the run so a resume uses the same one.

    `variant` names the form (`VARIANTS`); its parts left unset take the variant's value, and
    each can be set on its own.
    """

    variant: Literal["edgenas", "paper"] = Field("edgenas", description="edgenas (ours) or paper (authors' code)")
    attention: Literal["sigmoid", "node_relu"] | None = Field(
        None, description="sigmoid(θ) per op (edgenas), or ReLU(θ) normalised over each node's inputs and ops (paper)"
    )
    objective: Literal["schedule", "multiplicative"] | None = Field(
        None,
        description="task + λ(H + c·F) on a live-FLOPs schedule (edgenas), or (CE + KD)(1 + γS) + γμS with γ/μ "
        "driven by the deletion rate (paper)",
    )
    one_level: bool | None = Field(None, description="w and θ step on the same batch (paper), not alternately")
    w_optimizer: Literal["sgd", "adam"] | None = Field(
        None, description="SGD with cosine lr (edgenas) or Adam β (0.5, 0.999) at a constant lr (paper)"
    )
    theta_optimizer: Literal["adam", "sgd"] | None = Field(None, description="Adam (edgenas) or plain SGD (paper)")
    feature_kd: Literal["last", "stages"] | None = Field(
        None, description="feature KD at the last stage from cached teacher maps (edgenas), or at every stage (paper)"
    )
    stage_weights: list[float] = Field(
        [0.2, 0.3, 0.5], min_length=1, description="feature_kd=stages: last stages' weights"
    )
    harvest: Literal["levels", "stalls"] | None = Field(
        None, description="snapshots at FLOPs levels and cell changes (edgenas), or at γ stalls and epochs (paper)"
    )
    gamma_init: float = Field(1e-4, gt=0, description="objective=multiplicative: γ0")
    gamma_max: float = Field(0.1, gt=0, description="γ at or above which steps without deletions count as a stall")
    gamma_up: float = Field(1.01, gt=1, description="γ ← γ·gamma_up while the deletion rate is under deletion_rate")
    gamma_down: float = Field(0.99, gt=0, lt=1, description="γ ← γ·gamma_down while it is not")
    deletion_rate: float = Field(0.005, gt=0, description="n_max: the wanted EMA of deletions per step")
    deletion_ema: float = Field(0.9, ge=0, lt=1, description="τ of the deletion-rate EMA")
    stall_steps: int = Field(50, ge=1, description="steps at γ ≥ gamma_max that save a Pareto genotype")
    mu_init: float = Field(0.1, ge=0, description="μ0")
    mu_growth: float = Field(1.5, gt=0, description="μ ← μ·mu_growth at every stall")
    stop_sparsity: float = Field(
        250 / 576, gt=0, lt=1, description="stop once S < this share of S at the start (the authors' 250 of 576)"
    )
    epochs: int = Field(10, ge=1)
    warmup_epochs: int | None = Field(
        None, ge=0, description="epochs training weights only, all ops at their initial weight (edgenas: 2)"
    )
    batch_size: int = Field(96, ge=2)
    search_width: int = Field(8, ge=1, description="proxy width C of the supernet")
    k: int | None = Field(
        None, ge=1, description="partial channels: 1/K of each edge's channels go through the mixed op (edgenas: 2)"
    )
    w_lr: float | None = Field(None, gt=0, description="edgenas: 0.05 (SGD); paper: 5e-4 (Adam)")
    w_momentum: float = Field(0.9, ge=0, lt=1)
    w_weight_decay: float = Field(3e-4, ge=0)
    alpha_lr: float | None = Field(
        None,
        gt=0,
        description="step on θ: edgenas 0.1 (Adam; an op needs ~2·theta_max/alpha_lr steps to sink), paper 0.2 (SGD)",
    )
    alpha_init: float | None = Field(None, description="θ at the start (edgenas: 0, sigmoid 0.5; paper: 2)")
    theta_max: float | None = Field(
        3.0,
        gt=0,
        description="attention=sigmoid: clamp θ to ±theta_max after each step, no sigmoid saturates (None: no clamp)",
    )
    lambda_init: float = Field(0.5, gt=0, description="initial sparsity-pressure coefficient")
    lambda_rate: float = Field(0.02, gt=0, description="log-step of the adaptive coefficient per α-step")
    lambda_min: float = Field(1e-3, gt=0)
    lambda_max: float = Field(100.0, gt=0)
    final_flops: float | None = Field(
        None, gt=0, description="live FLOPs the schedule ends at (None: the fixed part + the cheapest op with weights)"
    )
    schedule_lag: int | None = Field(
        None,
        ge=0,
        description="α-steps before the search's end at which the schedule reaches its final value (None: the "
        "steps an op needs to sink and be deleted, 2·theta_max/alpha_lr + delete_patience)",
    )
    delete_threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="an op under this weight for delete_patience steps is deleted (edgenas 0.05, paper 0.01)",
    )
    delete_patience: int | None = Field(
        None, ge=1, description="consecutive α-steps under the threshold before deletion (edgenas 5, paper 1)"
    )
    kd_weight: float | None = Field(
        None, ge=0, description="a: Hinton KD on the logits (edgenas 1; paper 0, > 0 adds it)"
    )
    temperature: float = Field(4.0, gt=0)
    feature_weight: float | None = Field(
        None, ge=0, description="b: feature KD weight (edgenas 0.1 at the last stage; paper κ = 1 over the stages)"
    )
    levels: list[float] | None = Field(None, description="live-FLOPs levels to snapshot at; None = auto")
    auto_levels: int = Field(10, ge=1, description="number of geometric levels when levels is auto")
    bn_batches: int = Field(10, ge=1, description="train batches to re-estimate BN statistics of a snapshot")
    snapshot_finetune: int = Field(
        100,
        ge=0,
        description="w-steps (CE + KD) a snapshot's arch trains alone on the inherited weights before its val "
        "accuracy is read: it is then the arch's, not the multi-op supernet's (0: off)",
    )
    eval_images: int | None = Field(2000, ge=1, description="val images a snapshot is evaluated on (None: all)")
    grad_clip: float = Field(5.0, gt=0)
    seed: int = 0
    experimental: SNPSExperimental = Field(default_factory=SNPSExperimental)

    @model_validator(mode="after")
    def _consistent(self) -> SNPSConfig:
        for name, value in VARIANTS[self.variant].items():
            owner = self.experimental if name in _EXPERIMENTAL_PARTS else self
            if getattr(owner, name) is None:
                setattr(owner, name, value)
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warm-up epochs ({self.warmup_epochs}) must be fewer than epochs ({self.epochs})")
        if self.one_level and self.objective != "multiplicative":
            raise ValueError("one_level steps need objective=multiplicative (the schedule objective is bilevel)")
        if self.lambda_min > self.lambda_max:
            raise ValueError(f"lambda_min ({self.lambda_min}) is above lambda_max ({self.lambda_max})")
        if self.levels is not None:
            if not self.levels or min(self.levels) <= 0:
                raise ValueError("levels must be positive FLOPs values (or auto)")
            self.levels = sorted({float(v) for v in self.levels}, reverse=True)
        return self


# -- the pieces, as plain functions (tested one by one) ------------------------------------
def sparsity_entropy(
    values: torch.Tensor, alive: torch.Tensor, scope: str = "cell", of: str = "weights", temperature: float = 1.0
) -> torch.Tensor:
    """H(p)/log(n) over the live ops (per cell, or averaged over edges with ≥ 2 live ops).

    `of="weights"`: `values` are attention weights a and p = a/Σa; `of="logits"`: `values`
    are θ and p = softmax(θ/temperature) over the live ops. 0 when one op holds all the mass,
    1 when all live ops are equal. Groups with fewer than two live ops add 0.
    """
    groups = [alive.reshape(-1)] if scope == "cell" else list(alive)
    rows = [values.reshape(-1)] if scope == "cell" else list(values)
    terms = []
    for v, m in zip(rows, groups, strict=True):
        n = int(m.sum())
        if n < 2:
            continue
        w = v[m]
        p = torch.softmax(w / temperature, dim=0) if of == "logits" else w / w.sum().clamp_min(1e-12)
        terms.append(-(p * torch.log(p.clamp_min(1e-12))).sum() / math.log(n))
    if not terms:
        return values.sum() * 0.0
    return torch.stack(terms).mean()


def flops_pressure(att: torch.Tensor, alive: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """F = Σ a·FLOPs(op) / Σ FLOPs(op) over live ops ∈ [0, 1]: the attention-weighted share of the live FLOPs.

    Its gradient on an op's weight is that op's share of the live FLOPs, so a 3×3 conv is
    pressed ~9× harder than a 1×1 and free ops (skip, pool) not at all. Without it the
    entropy presses every op alike and the weak cheap ops die first, leaving the 3×3 convs
    (docs/methods/dnad.md, "cost-aware pressure").
    """
    w = weights.to(att.dtype) * alive.to(att.dtype)
    total = w.sum()
    if float(total) <= 0:
        return att.sum() * 0.0
    return (att * w).sum() / total


def binary_entropy(att: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Mean of H(a)/ln 2 = −(a log a + (1−a) log(1−a))/ln 2 over live ops: pushes each weight to 0 or 1."""
    a = att[alive].clamp(1e-6, 1 - 1e-6)
    if a.numel() == 0:
        return att.sum() * 0.0
    return (-(a * a.log() + (1 - a) * (1 - a).log()) / math.log(2)).mean()


def target_live(progress: float, start: float, final: int) -> float:
    """The schedule: live ops wanted at search progress ∈ [0, 1] (linear from `start` to `final`)."""
    progress = min(max(progress, 0.0), 1.0)
    return start - (start - min(final, start)) * progress


def target_flops(progress: float, start: float, final: float) -> float:
    """The FLOPs schedule: live FLOPs wanted at progress ∈ [0, 1], linear from `start` to `final`.

    Linear because the costly ops of a cell cost the same at every edge (NB201: a 3×3 conv
    is ~90% of the FLOPs): equal FLOPs steps are equal numbers of conv deletions, so they
    are spread evenly over the search (a geometric one deleted every conv at once at the end).
    """
    progress = min(max(progress, 0.0), 1.0)
    final = min(final, start)
    return float(start - (start - final) * progress)


def adapt_coefficient(lam: float, live: float, target: float, rate: float, lo: float, hi: float) -> float:
    """Raise λ while the supernet shrinks slower than the schedule (live > target), lower it when faster."""
    if live > target:
        lam *= math.exp(rate)
    elif live < target:
        lam *= math.exp(-rate)
    return float(min(max(lam, lo), hi))


def metered_coefficient(
    lam: float, live: float, target: float, waiting: bool, hold: bool, rate: float, lo: float, hi: float
) -> float:
    """`adapt_coefficient`, except that with `hold` λ stays put while the supernet is ahead of the
    schedule and ops the metering refused are `waiting` under the threshold: lowered, λ let them
    float back up (docs/methods/dnad.md)."""
    if hold and waiting and live < target:
        return lam
    return adapt_coefficient(lam, live, target, rate, lo, hi)


def live_points(alive: torch.Tensor | np.ndarray, space: SearchSpace) -> list[int]:
    """Points that carry a live computing op and are built (NB201: on an input→output path of such edges)."""
    return [int(p) for p in np.flatnonzero(space.mask_live_points(np.asarray(alive, dtype=bool)))]


def live_flops(alive: torch.Tensor | np.ndarray, terms: CostTerms) -> float:
    """Exact FLOPs of the live multi-op network at the terms' shape (`terms.space`'s FLOPs terms).

    Ops on points the space does not build are dropped (as a deployed graph would); node
    sums cost no FLOPs in the counting convention, so the cost is additive per op.
    """
    on = np.asarray(alive, dtype=bool)
    total = terms.fixed
    for e in live_points(on, terms.space):
        total += float(terms.weights[e][on[e]].sum())
    return float(total)


def _computing(alive: torch.Tensor | np.ndarray, space: SearchSpace) -> np.ndarray:
    """(points, ops) bool: the live ops other than `none_op`."""
    on = np.asarray(alive, dtype=bool).copy()
    if space.none_index is not None:
        on[:, space.none_index] = False
    return on


def strongest_arch(att: torch.Tensor, alive: torch.Tensor, space: SearchSpace) -> Arch:
    """The arch of the live ops of highest attention (`top_weighted`: NB201 one per edge, "none" where
    no op is live)."""
    on = _computing(alive, space)
    scores = np.where(on, np.asarray(att.detach().cpu(), dtype=float), -1.0)
    if space.none_index is not None:  # "none" only where no computing op is live
        scores[:, space.none_index] = np.where(on.any(axis=1), -2.0, 0.0)
    return space.top_weighted(scores)


def costliest_arch(alive: torch.Tensor, weights: torch.Tensor | np.ndarray, space: SearchSpace) -> Arch:
    """The arch of the costliest live ops (ties to the lower op index; `top_weighted`: NB201 one per
    edge, "none" where no op is live).

    The single-op arch nearest the live cell's cost: every deletion can only lower it, so the
    snapshots fall in FLOPs as the supernet does. Which op is costliest is fixed by the space;
    which ops are still live is what the search (CE, KD, entropy, cost pressure) decided.
    """
    on = _computing(alive, space)
    scores = np.where(on, np.asarray(weights, dtype=float), -np.inf)
    if space.none_index is not None:
        scores[:, space.none_index] = np.where(on.any(axis=1), -np.inf, 0.0)
    return space.top_weighted(scores)


def arch_mask(arch: Arch, space: SearchSpace) -> torch.Tensor:
    """The alive mask that restricts the supernet to exactly the arch's live ops."""
    mask = torch.zeros(len(space.choice_points()), len(space.choice_ops), dtype=torch.bool)
    index = space.encode(arch)
    for e in np.flatnonzero(space.live_points(arch)):
        mask[int(e), int(index[e])] = True
    return mask


def deletion_step(
    att: torch.Tensor,
    alive: torch.Tensor,
    under: torch.Tensor,
    threshold: float,
    patience: int,
    keep_connected: bool,
    allow: Callable[[torch.Tensor, torch.Tensor], bool] | None = None,
    *,
    space: SearchSpace,
) -> list[tuple[int, int]]:
    """Count steps under the threshold and delete ops that stayed there `patience` steps (in place).

    Weakest first (the longest under the threshold among equals); with `keep_connected` a
    deletion after which the mask holds no usable arch (`space.mask_admits_arch`; NB201: no
    input→output path) is refused (the op stays, its count
    keeps growing). `allow(alive now, alive after)` can refuse a deletion too: the FLOPs
    schedule meters deletions with it so that ops sinking together die one level at a time.
    Returns the deleted (edge, op).
    """
    low = (att < threshold) & alive
    under.copy_(torch.where(low, under + 1, torch.zeros_like(under)))
    due = [
        (float(att[e, o]), -int(under[e, o]), int(e), int(o))
        for e, o in zip(*torch.nonzero(under >= patience, as_tuple=True), strict=True)
    ]
    deleted = []
    for _a, _u, e, o in sorted(due):
        trial = alive.clone()
        trial[e, o] = False
        if keep_connected and not space.mask_admits_arch(np.asarray(trial)):
            continue
        if allow is not None and not allow(alive, trial):
            continue
        alive[e, o] = False
        under[e, o] = 0
        deleted.append((e, o))
    return deleted


def auto_levels(full: float, fixed: float, n: int) -> list[float]:
    """`n` levels spaced geometrically strictly between the full supernet's FLOPs and the fixed part."""
    ratio = full / fixed
    return [fixed * ratio ** (i / (n + 1)) for i in range(n, 0, -1)]


# -- the paper variant's pieces (authors' code: model_search.py Architecture, Pruner) ----------
def node_relu_weights(theta: torch.Tensor, alive: torch.Tensor, nodes: list[list[int]]) -> torch.Tensor:
    """w = ReLU(θ)/Σ ReLU(θ) over every (input point, op) of each node, dead ops 0 (differentiable in θ).

    A node whose live θ are all ≤ 0 gets all-zero weights.
    """
    r = torch.relu(theta) * alive.to(theta.dtype)
    node_of = torch.empty(len(theta), dtype=torch.long, device=theta.device)
    for i, rows in enumerate(nodes):
        node_of[rows] = i
    sums = r.new_zeros(len(nodes)).index_add(0, node_of, r.sum(dim=1))
    return r / sums[node_of].clamp_min(1e-12).unsqueeze(1)


def sparsity(weights: torch.Tensor) -> torch.Tensor:
    """S = Σ log(1 + 50 w) over every op weight (dead ops, w = 0, add nothing)."""
    return torch.log1p(SPARSITY_SCALE * weights).sum()


def multiplicative_loss(task: torch.Tensor, s: torch.Tensor, gamma: float, mu: float) -> torch.Tensor:
    """The authors' loss (CE + κ·KD)(1 + γS) + γμS, `task` = CE + κ·KD."""
    return task * (1 + gamma * s) + gamma * mu * s


@dataclass
class DeletionController:
    """γ and μ of the multiplicative loss, driven by the deletions of each step (the authors' `Pruner`).

    p̄ ← τ p̄ + (1 − τ)·deleted. While p̄ < n_max, γ ← up·γ; a step that began at γ ≥ γ_max
    counts as stalled, and after `stall_steps` of them the current genotype is a Pareto genotype
    and μ ← growth·μ (the count restarts). Once p̄ ≥ n_max, γ ← down·γ and the count restarts.
    """

    gamma: float
    mu: float
    rate: float = 0.0  # p̄
    stalled: int = 0

    def step(
        self, deleted: int, *, n_max: float, tau: float, up: float, down: float, gamma_max: float,
        stall_steps: int, growth: float,
    ) -> bool:  # fmt: skip
        """Update after a step that deleted `deleted` ops; True when this step saves a Pareto genotype."""
        self.rate = tau * self.rate + (1 - tau) * deleted
        if self.rate >= n_max:
            self.gamma *= down
            self.stalled = 0
            return False
        stall = False
        if self.gamma >= gamma_max:
            self.stalled += 1
            if self.stalled >= stall_steps:
                stall, self.stalled = True, 0
                self.mu *= growth
        else:
            self.stalled = 0
        self.gamma *= up
        return stall


# -- teacher outputs ------------------------------------------------------------------------
@torch.no_grad()
def teacher_outputs(
    teacher: nn.Module,
    split: Split,
    device: torch.device,
    convert: tuple[torch.Tensor, torch.Tensor] | None = None,
    batch: int = 500,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, last-stage features as float16) of the frozen teacher for every image of `split`.

    `convert` = (scale, shift) per channel maps this data's normalisation onto the one the
    teacher was trained with.
    """
    teacher.eval()
    logits, feats = [], []
    for lo in range(0, len(split), batch):
        x = split.images[lo : lo + batch].to(device)
        if convert is not None:
            x = x * convert[0].to(device) + convert[1].to(device)
        out, f = teacher.forward_features(x)
        logits.append(out.float().cpu())
        feats.append(f[-1].to(torch.float16).cpu())
    return torch.cat(logits), torch.cat(feats)


def normalisation_bridge(data: DataSplits, meta: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(scale, shift) so that scale·x + shift is x normalised with the teacher's own mean/std."""
    if not meta.get("mean") or not meta.get("std"):
        return None
    ms, ss = torch.tensor(data.mean), torch.tensor(data.std)
    mt, st = torch.tensor(meta["mean"]), torch.tensor(meta["std"])
    scale, shift = ss / st, (ms - mt) / st
    return scale.view(1, -1, 1, 1), shift.view(1, -1, 1, 1)


class _Indexed:
    """Batches of (images, indices into the split), so cached teacher outputs can be looked up."""

    def __init__(self, split: Split, batch_size: int, seed: int) -> None:
        self.split = split
        self.loader = BatchLoader(
            Split(split.images, torch.arange(len(split))), batch_size, shuffle=True, seed=seed, drop_last=True
        )

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, idx in self.loader:
            yield x, self.split.labels[idx], idx


class SNPSSearch(BilevelSearch):
    """One DNAD search: supernet, θ, teacher cache, λ, deletions, snapshots, per-epoch checkpoint."""

    PHASES = ("warm-up", "shrink")
    EVENT_OMITS = ("attention",)
    LEGACY_OPTIONS = LEGACY_OPTIONS

    def __init__(
        self,
        cfg: SNPSConfig,
        data: DataSplits,
        target: NetShape,
        teacher: nn.Module,
        device: torch.device,
        run: RunDir | None = None,
        quiet: bool = False,
        teacher_convert: tuple[torch.Tensor, torch.Tensor] | None = None,
        *,
        space: SearchSpace,
    ) -> None:
        if len(data.val) < cfg.batch_size:
            raise ConfigError(f"the α split has {len(data.val)} images, fewer than one batch of {cfg.batch_size}")
        if len(data.train) < cfg.batch_size:
            raise ConfigError(f"the w split has {len(data.train)} images, fewer than one batch of {cfg.batch_size}")
        self.cfg, self.data, self.target, self.device, self.run, self.quiet = cfg, data, target, device, run, quiet
        self.space = space
        points, ops = len(space.choice_points()), len(space.choice_ops)
        with torch.random.fork_rng():
            torch.manual_seed(derive_seed(cfg.seed, "supernet-init"))
            self.net = space.supernet(replace(target, width=cfg.search_width), cfg.k).to(device)
            if space.none_index is not None:
                self.net.alive[:, space.none_index] = False
            if cfg.feature_kd == "stages":
                s_ch, t_ch = self._stage_channels(teacher, data, teacher_convert)
                self.feature_kd = StageFeatureKD(s_ch, t_ch, cfg.stage_weights).to(device)
            else:
                t_channels = int(teacher.net.classifier.in_features) if hasattr(teacher, "net") else None
                t_channels = t_channels or int(teacher.classifier.in_features)
                self.feature_kd = FeatureKD(self.net.classifier.in_features, t_channels).to(device)
        self.nodes = list(space.node_points().values())
        gen = torch_generator(cfg.seed, "theta-init")
        theta = cfg.alpha_init + 1e-3 * torch.randn(points, ops, generator=gen)
        self.theta = nn.Parameter(theta.to(device))
        self.teacher, self.teacher_convert = teacher, teacher_convert
        self.t_train: tuple[torch.Tensor, torch.Tensor] | None = None  # cached teacher outputs (feature_kd=last)
        self.t_val: tuple[torch.Tensor, torch.Tensor] | None = None
        if cfg.feature_kd == "last":
            self.t_train = teacher_outputs(teacher, data.train, device, teacher_convert)
            self.t_val = teacher_outputs(teacher, data.val, device, teacher_convert)
        self.train_batches = _Indexed(data.train, cfg.batch_size, cfg.seed)
        self.val_batches = _Indexed(data.val, cfg.batch_size, derive_seed(cfg.seed, "alpha-batches"))
        params = list(self.net.parameters()) + list(self.feature_kd.parameters())
        if cfg.w_optimizer == "adam":  # the authors' Adam, its cosine from 5e-4 to 5e-4: a constant lr
            self.w_opt = torch.optim.Adam(params, lr=cfg.w_lr, betas=(0.5, 0.999), weight_decay=cfg.w_weight_decay)
            self.w_sched = torch.optim.lr_scheduler.ConstantLR(self.w_opt, factor=1.0, total_iters=0)
        else:
            self.w_opt = torch.optim.SGD(params, lr=cfg.w_lr, momentum=cfg.w_momentum, weight_decay=cfg.w_weight_decay)
            self.w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.w_opt, T_max=cfg.epochs * len(self.train_batches), eta_min=cfg.w_lr * 0.02
            )
        if cfg.theta_optimizer == "sgd":
            self.a_opt = torch.optim.SGD([self.theta], lr=cfg.alpha_lr, momentum=0.0)
        else:
            self.a_opt = torch.optim.Adam([self.theta], lr=cfg.alpha_lr, betas=(0.5, 0.999))
        self.controller = DeletionController(cfg.gamma_init, cfg.mu_init)
        with torch.no_grad():
            self.sparsity_start = float(sparsity(self.attention()))
        self.stopped_at: int | None = None  # epoch after which S fell under S_min (objective=multiplicative)
        self.terms = additive_terms(space, "flops", target)
        self.op_flops = torch.as_tensor(self.terms.weights, dtype=torch.float32, device=device)
        self.full_flops = live_flops(self.net.alive.cpu(), self.terms)
        auto = auto_levels(self.full_flops, self.terms.fixed, cfg.auto_levels)
        self.levels = list(cfg.levels) if cfg.levels else auto
        self.start_live = int(self.net.alive.sum())
        with torch.random.fork_rng():  # the params terms build modules: leave the global RNG as it was
            weighted = additive_terms(space, "params", target).weights > 0  # the ops with weights (NB201: convs)
        cheapest = float(self.terms.weights[weighted].min()) if weighted.any() else 0.0
        self.final_flops = cfg.final_flops or self.terms.fixed + cheapest
        self.op_step = float(self.terms.weights.max())  # the costliest single op
        self.start_measure: float | None = None  # live measure at the first α-step (schedule start)
        self.lam = cfg.lambda_init
        self.under = torch.zeros(points, ops, dtype=torch.long)
        self.epoch = 0
        self.step = 0  # α-steps taken
        self.taken: list[float] = []
        self.snapshots: list[dict[str, Any]] = []
        self.deletions: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # process CPU time: the search's compute even on a shared, busy machine

    @torch.no_grad()
    def _stage_channels(self, teacher: nn.Module, data: DataSplits, convert) -> tuple[list[int], list[int]]:
        """Channels of the distilled stage outputs of supernet and teacher (an eval-mode forward of 2 images)."""
        n = len(self.cfg.stage_weights)
        x = data.train.images[:2].to(self.device)
        was = self.net.training, teacher.training
        self.net.eval()
        teacher.eval()
        weights = torch.ones(self.net.alive.shape, device=self.device)
        try:
            student = stage_outputs(self.net.forward_features(x, weights)[1], n)
            tx = x * convert[0].to(self.device) + convert[1].to(self.device) if convert is not None else x
            taught = stage_outputs(teacher.forward_features(tx)[1], n)
        except ValueError as exc:
            raise ConfigError(f"stage_weights: {exc}") from None
        finally:
            self.net.train(was[0])
            teacher.train(was[1])
        return [int(f.shape[1]) for f in student], [int(f.shape[1]) for f in taught]

    # -- attention and losses ------------------------------------------------------------------
    def attention(self) -> torch.Tensor:
        """Op weights: sigmoid(θ) per op, or ReLU(θ) normalised per node (attention=node_relu); dead ops 0."""
        if self.cfg.attention == "node_relu":
            return node_relu_weights(self.theta, self.net.alive, self.nodes)
        return torch.sigmoid(self.theta) * self.net.alive.to(self.theta.dtype)

    def finished(self) -> bool:
        return self.stopped_at is not None

    @property
    def search_steps(self) -> int:
        return (self.cfg.epochs - self.cfg.warmup_epochs) * len(self.train_batches)

    @property
    def schedule_steps(self) -> int:
        """α-steps over which the schedule falls to its final value: the search less the deletion lag.

        An op the schedule wants gone needs ~2·theta_max/alpha_lr Adam steps to sink from the top
        of its clamp to the bottom, then `delete_patience` steps under the threshold; a schedule
        that ends with the search leaves its last deletions undone.
        """
        cfg = self.cfg
        lag = cfg.schedule_lag
        if lag is None:
            lag = math.ceil(2 * cfg.theta_max / cfg.alpha_lr) if cfg.theta_max is not None else 0
            lag += cfg.delete_patience
        return max(self.search_steps - lag, max(self.search_steps // 2, 1))

    @torch.no_grad()
    def teacher_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The frozen teacher's logits and block outputs for images `x` (feature_kd=stages: not cached)."""
        self.teacher.eval()
        if self.teacher_convert is not None:
            x = x * self.teacher_convert[0].to(x.device) + self.teacher_convert[1].to(x.device)
        return self.teacher.forward_features(x)

    def task_loss(
        self, logits: torch.Tensor, feats: list[torch.Tensor], y: torch.Tensor, idx: torch.Tensor, cache, x=None
    ) -> torch.Tensor:
        """CE + a·KD(logits) + b·feature KD, against the cached teacher outputs of these images, or (feature_kd
        =stages) against the teacher run on `x` at every stage."""
        cfg = self.cfg
        loss = F.cross_entropy(logits, y)
        if cache is None:
            t_logits, t_feats = self.teacher_batch(x)
            if cfg.kd_weight:
                loss = loss + cfg.kd_weight * hinton_kd(logits, t_logits, cfg.temperature)
            if cfg.feature_weight:
                n = len(cfg.stage_weights)
                loss = loss + cfg.feature_weight * self.feature_kd(stage_outputs(feats, n), stage_outputs(t_feats, n))
            return loss
        if cfg.kd_weight:
            loss = loss + cfg.kd_weight * hinton_kd(logits, cache[0][idx].to(logits.device), cfg.temperature)
        if cfg.feature_weight:
            t_feat = cache[1][idx].to(feats[-1].device, torch.float32)
            loss = loss + cfg.feature_weight * self.feature_kd(feats[-1], t_feat)
        return loss

    # -- steps --------------------------------------------------------------------------------
    def alpha_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[float, float]:
        att = self.attention()
        logits, feats = self.net.forward_features(x, att)
        loss = self.task_loss(logits, feats, y, idx, self.t_val, x)
        if self.cfg.objective == "multiplicative":  # bilevel with the authors' loss: θ steps on the α batch
            s = sparsity(att)
            (grad,) = torch.autograd.grad(
                multiplicative_loss(loss, s, self.controller.gamma, self.controller.mu), [self.theta]
            )
            self.theta.grad = grad
            self.a_opt.step()
            self.step += 1
            self.after_alpha_step()
            return loss.item(), s.item()
        x_cfg = self.cfg.experimental
        source = self.theta if x_cfg.entropy_of == "logits" else att
        ent = sparsity_entropy(source, self.net.alive, x_cfg.entropy_scope, x_cfg.entropy_of, x_cfg.entropy_temperature)
        if x_cfg.polarize:
            ent = ent + binary_entropy(att, self.net.alive)
        if x_cfg.cost_weight:
            ent = ent + x_cfg.cost_weight * flops_pressure(att, self.net.alive, self.op_flops)
        (grad,) = torch.autograd.grad(loss + self.lam * ent, [self.theta])
        self.theta.grad = grad
        self.a_opt.step()
        if self.cfg.theta_max is not None and self.cfg.attention == "sigmoid":
            with torch.no_grad():
                self.theta.clamp_(-self.cfg.theta_max, self.cfg.theta_max)
        self.step += 1
        self.after_alpha_step()
        return loss.item(), ent.item()

    def after_alpha_step(self) -> None:
        """Deletion, the adaptive coefficient, and a snapshot when the live FLOPs crossed a level
        (objective=multiplicative: `after_controlled_step`)."""
        if self.cfg.objective == "multiplicative":
            self.after_controlled_step()
            return
        cfg, x_cfg = self.cfg, self.cfg.experimental
        alive = self.net.alive
        with torch.no_grad():
            att = self.attention().cpu()
        mask = alive.cpu().clone()
        progress = self.step / self.schedule_steps
        allow = None
        if x_cfg.schedule_on == "flops":
            # hard live FLOPs: λ rises while nothing the schedule wants gone has died yet, falls once
            # deletions are ahead (ops then wait under the threshold for the schedule to reach them)
            measure = live_flops(mask, self.terms)
            if self.start_measure is None:
                self.start_measure = self.full_flops
            target = target_flops(progress, self.start_measure, self.final_flops)

            def allow(now: torch.Tensor, after: torch.Tensor) -> bool:
                # free deletions (no FLOPs) always; a costly one only while the supernet is above the
                # schedule, and not one that would overshoot it by more than the costliest op (a deletion
                # that cuts a node off drops every edge behind it: it waits until the schedule is there)
                f_now, f_after = live_flops(now, self.terms), live_flops(after, self.terms)
                return f_after >= f_now or (f_now > target and f_after >= target - self.op_step)

        else:
            # the measure the schedule is compared with, taken before this step's deletions
            measure = float(att[mask].sum()) if x_cfg.schedule_on == "soft" else float(mask.sum())
            if self.start_measure is None:  # the schedule starts where the search starts
                self.start_measure = measure
            target = target_live(progress, self.start_measure, x_cfg.final_live)
        deleted = deletion_step(
            att,
            mask,
            self.under,
            cfg.delete_threshold,
            cfg.delete_patience,
            x_cfg.keep_connected,
            allow,
            space=self.space,
        )
        live = int(mask.sum())
        waiting = allow is not None and bool(((self.under >= cfg.delete_patience) & mask).any())
        self.lam = metered_coefficient(
            self.lam, measure, target, waiting, x_cfg.hold_lambda_while_waiting,
            cfg.lambda_rate, cfg.lambda_min, cfg.lambda_max,
        )  # fmt: skip
        if not deleted:
            return
        alive.copy_(mask.to(alive.device))
        flops = live_flops(mask, self.terms)
        for e, o in deleted:
            rec = {"epoch": self.epoch + 1, "step": self.step, "edge": e, "op": self.space.choice_ops[o]}
            rec |= {"attention": float(att[e, o])}
            rec |= {"live_ops": live, "live_flops": flops}
            self.deletions.append(rec)
            if self.run is not None:
                self.run.event("delete", **rec)
        if cfg.harvest == "levels":
            self.level_snapshot(att, mask, flops)

    def level_snapshot(self, att: torch.Tensor, mask: torch.Tensor, flops: float) -> None:
        """harvest=levels, after a deletion: a snapshot when the live FLOPs crossed a level, or the cell changed."""
        crossed = [lv for lv in self.levels if lv not in self.taken and flops <= lv]
        if crossed:
            self.taken.extend(crossed)
            self.take_snapshot("level", crossed)
        elif self.cfg.experimental.snapshot_on == "change":
            last = self.snapshots[-1]["arch"] if self.snapshots else None
            if str(self.snapshot_arch(att, mask)) != last:
                self.take_snapshot("change")

    def w_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[float, int]:
        with torch.no_grad():
            att = self.attention()
        logits, feats = self.net.forward_features(x, att)
        loss = self.task_loss(logits, feats, y, idx, self.t_train, x)
        self._w_update(loss, list(self.net.parameters()) + list(self.feature_kd.parameters()))
        return loss.item(), int((logits.argmax(1) == y).sum())

    def one_level_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, search: bool) -> tuple[float, int]:
        """One step of w and θ on the same batch (the authors' loop): the multiplicative loss while
        searching (task loss alone in a warm-up epoch, θ then not stepped), each group clipped on its own."""
        cfg = self.cfg
        w = self.attention()
        logits, feats = self.net.forward_features(x, w)
        task = self.task_loss(logits, feats, y, idx, self.t_train, x)
        total = task
        if search:  # one_level implies objective=multiplicative (SNPSConfig)
            total = multiplicative_loss(task, sparsity(w), self.controller.gamma, self.controller.mu)
        if not torch.isfinite(total):
            raise ConfigError(f"search diverged at epoch {self.epoch + 1} (loss={total.item()}); lower w_lr/alpha_lr")
        self.w_opt.zero_grad(set_to_none=True)
        self.a_opt.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(list(self.net.parameters()), cfg.grad_clip)
        nn.utils.clip_grad_norm_([self.theta], cfg.grad_clip)
        nn.utils.clip_grad_norm_(list(self.feature_kd.parameters()), cfg.grad_clip)
        self.w_opt.step()
        self.w_sched.step()
        if search:
            self.a_opt.step()
            self.step += 1
            self.after_alpha_step()
        return task.item(), int((logits.argmax(1) == y).sum())

    def after_controlled_step(self) -> None:
        """objective=multiplicative: delete ops under the threshold, move γ/μ, save a genotype at a stall."""
        cfg = self.cfg
        with torch.no_grad():
            w = self.attention().cpu()
        mask = self.net.alive.cpu().clone()
        deleted = deletion_step(
            w, mask, self.under, cfg.delete_threshold, cfg.delete_patience, cfg.experimental.keep_connected,
            space=self.space,
        )  # fmt: skip
        stall = self.controller.step(
            len(deleted), n_max=cfg.deletion_rate, tau=cfg.deletion_ema, up=cfg.gamma_up, down=cfg.gamma_down,
            gamma_max=cfg.gamma_max, stall_steps=cfg.stall_steps, growth=cfg.mu_growth,
        )  # fmt: skip
        if deleted:
            self.net.alive.copy_(mask.to(self.net.alive.device))
            live, flops = int(mask.sum()), live_flops(mask, self.terms)
            for e, o in deleted:
                rec = {"epoch": self.epoch + 1, "step": self.step, "edge": e, "op": self.space.choice_ops[o]}
                rec |= {"attention": float(w[e, o]), "live_ops": live, "live_flops": flops}
                rec |= {"gamma": self.controller.gamma, "mu": self.controller.mu}
                self.deletions.append(rec)
                if self.run is not None:
                    self.run.event("delete", **rec)
            if cfg.harvest == "levels":
                self.level_snapshot(w, mask, flops)
        if stall and cfg.harvest == "stalls":
            self.take_snapshot("stall")

    # -- snapshots ----------------------------------------------------------------------------
    def restricted(self, mask: torch.Tensor, ones: bool = False) -> tuple[nn.Module, torch.Tensor]:
        """A copy of the supernet with only `mask`'s ops alive, and the op weights it runs with."""
        net = copy.deepcopy(self.net)
        net.alive.copy_(mask.to(net.alive.device))
        sigmoid = self.cfg.experimental.eval_weights == "sigmoid" and not ones
        weights = self.attention().detach() if sigmoid else torch.ones_like(self.theta).detach()
        return net, weights * mask.to(weights.device)

    def finetune(self, net: nn.Module, weights: torch.Tensor, steps: int) -> None:
        """`steps` w-steps of CE + KD on the restricted copy (same batches for every snapshot)."""
        cfg = self.cfg
        opt = torch.optim.SGD(net.parameters(), lr=cfg.w_lr, momentum=cfg.w_momentum, weight_decay=cfg.w_weight_decay)
        net.train()
        batches = _Indexed(self.data.train, cfg.batch_size, derive_seed(cfg.seed, "snapshot-finetune"))
        for x, y, idx in itertools.islice(itertools.cycle(batches), steps):
            logits = net(x.to(self.device), weights)
            loss = F.cross_entropy(logits, y.to(self.device))
            if cfg.kd_weight:
                x_dev = x.to(self.device)
                t_logits = (
                    self.t_train[0][idx].to(self.device) if self.t_train is not None else self.teacher_batch(x_dev)[0]
                )
                loss = loss + cfg.kd_weight * hinton_kd(logits, t_logits, cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()

    def evaluate_restricted(self, mask: torch.Tensor, finetune: int = 0, ones: bool = False) -> float:
        """Val accuracy of the supernet restricted to `mask` (after `finetune` w-steps alone), BN re-estimated."""
        net, weights = self.restricted(mask, ones)
        if finetune:
            self.finetune(net, weights, finetune)
        return self._evaluate(net, weights)

    @torch.no_grad()
    def _evaluate(self, net: nn.Module, weights: torch.Tensor) -> float:
        """Re-estimate BN for this sub-network on train batches, then count hits on the fixed val images."""
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the re-estimation batches
        net.train()
        for x, _y in itertools.islice(BatchLoader(self.data.train, self.cfg.batch_size), self.cfg.bn_batches):
            net(x.to(self.device), weights)
        net.eval()
        n = min(self.cfg.eval_images or len(self.data.val), len(self.data.val))
        val = Split(self.data.val.images[:n], self.data.val.labels[:n])  # the same images for every snapshot
        correct = 0
        for x, y in BatchLoader(val, 500):
            correct += int((net(x.to(self.device), weights).argmax(1).cpu() == y).sum())
        return correct / n

    def snapshot_arch(self, att: torch.Tensor, alive: torch.Tensor) -> Arch:
        if self.cfg.experimental.snapshot_arch == "strongest":
            return strongest_arch(att, alive, self.space)
        return costliest_arch(alive, self.terms.weights, self.space)

    def take_snapshot(self, reason: str, levels: list[float] | None = None) -> dict[str, Any]:
        alive = self.net.alive.cpu().clone()
        with torch.no_grad():
            att = self.attention().cpu()
        arch = self.snapshot_arch(att, alive)
        model = self.space.build(arch, self.target)
        # read again from the final supernet when snapshot_eval is "end": then no fine-tune here
        finetune = self.cfg.snapshot_finetune if self.cfg.experimental.snapshot_eval == "snapshot" else 0
        snap = {
            "reason": reason,
            "levels": levels or [],
            "epoch": self.epoch + 1 if reason != "end" else self.epoch,
            "step": self.step,
            "arch": str(arch),
            "flops": count_flops(model, self.target.input_shape),
            "params": count_params(model),
            "val_accuracy": self.evaluate_restricted(arch_mask(arch, self.space), finetune),
            "val_accuracy_from": "snapshot",
            "live_ops": [[op for o, op in enumerate(self.space.choice_ops) if alive[e, o]] for e in range(len(alive))],
            "live_op_count": int(alive.sum()),
            "live_flops": live_flops(alive, self.terms),
            "live_val_accuracy": self.evaluate_restricted(alive),
        }
        self.snapshots.append(snap)
        if self.run is not None:
            self.run.event("snapshot", **{k: v for k, v in snap.items() if k != "live_ops"})
        return snap

    def evaluate_at_end(self) -> None:
        """Every snapshot's arch read again from the final supernet, with the same fine-tune.

        Read at the moment it is taken, a snapshot's accuracy grows with the supernet's
        training time, and the later snapshots are the smaller ones: the proxy then favours
        small archs for being late. From the final weights (an op deleted earlier keeps the
        weights it had then) every arch starts from one point and trains the same steps.
        The reading at the snapshot is kept as `val_accuracy_at_snapshot`.
        """
        read: dict[str, float] = {}  # one fine-tune per distinct arch: it starts from the same weights
        for snap in self.snapshots:
            if snap["arch"] not in read:
                # each op at weight 1, as the built network runs it (a deleted op's attention is gone)
                mask = arch_mask(self.space.parse(snap["arch"]), self.space)
                read[snap["arch"]] = self.evaluate_restricted(mask, self.cfg.snapshot_finetune, ones=True)
            acc = read[snap["arch"]]
            snap["val_accuracy_at_snapshot"] = snap["val_accuracy"]
            snap["val_accuracy"], snap["val_accuracy_from"] = acc, "end"

    # -- epochs ---------------------------------------------------------------------------------
    def train_epoch(self, bar, task) -> dict[str, Any]:
        if self.cfg.one_level:
            return self.train_epoch_one_level(bar, task)
        return self._after_epoch(self._train_epoch_bilevel(bar, task))

    def train_epoch_one_level(self, bar, task) -> dict[str, Any]:
        """An epoch of one-level steps on the w split (the α split only reads snapshots)."""
        self.net.train()
        self.feature_kd.train()
        search = self.epoch >= self.cfg.warmup_epochs
        self.train_batches.set_epoch(self.epoch)
        w_loss, correct, seen = 0.0, 0, 0
        start, cpu = time.perf_counter(), time.process_time()
        prec = self.step_precision()
        for step, (x, y, idx) in enumerate(self.train_batches):
            with prec.autocast():
                loss, hit = self.one_level_step(prec.inputs(x.to(self.device)), y.to(self.device), idx, search)
            w_loss += loss
            correct += hit
            seen += y.numel()
            bar.update(task, advance=1, status=f"loss {w_loss / (step + 1):.3f} live {int(self.net.alive.sum())}")
        steps = len(self.train_batches)
        stats = {
            "train_loss": w_loss / steps,
            "train_accuracy": correct / max(seen, 1),
            "alpha_loss": w_loss / steps if search else None,
            "entropy": None,
            "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu,
        }
        return self._after_epoch(stats)

    def _after_epoch(self, stats: dict[str, Any]) -> dict[str, Any]:
        """harvest=stalls: the epoch's genotype; objective=multiplicative: stop once S < S_min."""
        if stats["alpha_loss"] is None:
            return stats
        t0, cpu0 = time.perf_counter(), time.process_time()
        if self.cfg.harvest == "stalls":
            self.take_snapshot("epoch")
        if self.cfg.objective == "multiplicative":
            with torch.no_grad():
                s = float(sparsity(self.attention()))
            if s < self.cfg.stop_sparsity * self.sparsity_start:
                self.stopped_at = self.epoch + 1
                if self.run is not None:
                    self.run.event("stop", epoch=self.epoch + 1, sparsity=s, sparsity_start=self.sparsity_start)
        stats["seconds"] += time.perf_counter() - t0
        stats["cpu_seconds"] += time.process_time() - cpu0
        return stats

    def _train_epoch_bilevel(self, bar, task) -> dict[str, Any]:
        self.net.train()
        self.feature_kd.train()
        search, batches = self.epoch_batches()
        w_loss = a_loss = ent = 0.0
        correct = seen = 0
        start, cpu = time.perf_counter(), time.process_time()
        prec = self.step_precision()
        for step, ((x, y, idx), vb) in enumerate(batches):
            if vb is not None:
                with prec.autocast():
                    la, le = self.alpha_step(prec.inputs(vb[0].to(self.device)), vb[1].to(self.device), vb[2])
                a_loss += la
                ent += le
            with prec.autocast():
                loss, hit = self.w_step(prec.inputs(x.to(self.device)), y.to(self.device), idx)
            w_loss += loss
            correct += hit
            seen += y.numel()
            bar.update(task, advance=1, status=f"loss {w_loss / (step + 1):.3f} live {int(self.net.alive.sum())}")
        steps = len(self.train_batches)
        return {
            "train_loss": w_loss / steps,
            "train_accuracy": correct / max(seen, 1),
            "alpha_loss": a_loss / steps if search else None,
            "entropy": ent / steps if search else None,
            "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu,
        }

    def record(self, stats: dict[str, Any]) -> dict[str, Any]:
        alive = self.net.alive.cpu()
        with torch.no_grad():
            att = self.attention().cpu()
        progress = self.step / self.schedule_steps
        return {
            "epoch": self.epoch,
            "searching": stats["alpha_loss"] is not None,
            "train_loss": round(stats["train_loss"], 5),
            "train_accuracy": round(stats["train_accuracy"], 5),
            "alpha_loss": None if stats["alpha_loss"] is None else round(stats["alpha_loss"], 5),
            "entropy": None if stats["entropy"] is None else round(stats["entropy"], 5),
            "lambda": round(self.lam, 6),
            "live_ops": int(alive.sum()),
            "soft_live": round(float(att[alive].sum()), 4),
            "target": round(self.schedule_target(progress), 3),
            "live_flops": live_flops(alive, self.terms),
            "seconds": round(stats["seconds"], 2),
            "attention": att.numpy().round(5).tolist(),
        } | (self._controller_record(att) if self.cfg.objective == "multiplicative" else {})

    def _controller_record(self, att: torch.Tensor) -> dict[str, Any]:
        c = self.controller
        return {
            "sparsity": round(float(sparsity(att)), 5),
            "sparsity_stop": round(self.cfg.stop_sparsity * self.sparsity_start, 5),
            "gamma": c.gamma,
            "mu": c.mu,
            "deletion_rate": round(c.rate, 6),
            "stalled_steps": c.stalled,
        }

    def schedule_target(self, progress: float) -> float:
        """What the schedule wants at `progress`: live FLOPs, or (soft) live ops."""
        x_cfg = self.cfg.experimental
        if x_cfg.schedule_on == "flops":
            return target_flops(progress, self.start_measure or self.full_flops, self.final_flops)
        return target_live(progress, self.start_measure or self.start_live, x_cfg.final_live)

    # -- checkpoint: the method's own fields (the rest is `BilevelSearch._state`) ------------------
    def _own_state(self) -> dict[str, Any]:
        return {
            "theta": self.theta.detach().cpu(),
            "feature_kd": self.feature_kd.state_dict(),
            "lam": self.lam,
            "start_measure": self.start_measure,
            "under": self.under.clone(),
            "step": self.step,
            "taken": self.taken,
            "snapshots": self.snapshots,
            "deletions": self.deletions,
            "cpu_seconds": self.cpu_seconds,
            "controller": asdict(self.controller),
            "stopped_at": self.stopped_at,
        }

    def _restore_own_state(self, state: dict[str, Any]) -> None:
        # the alive mask is a buffer of the supernet, restored with it: deleted ops stay deleted
        with torch.no_grad():
            self.theta.copy_(state["theta"])
        self.feature_kd.load_state_dict(state["feature_kd"])
        self.lam, self.under, self.start_measure = state["lam"], state["under"].cpu(), state["start_measure"]
        self.step, self.taken = state["step"], state["taken"]
        self.snapshots, self.deletions = state["snapshots"], state["deletions"]
        self.cpu_seconds = state["cpu_seconds"]
        if "controller" in state:  # runs made before the paper variant have none
            self.controller = DeletionController(**state["controller"])
            self.stopped_at = state["stopped_at"]

    def _count_epoch(self, stats: dict[str, Any]) -> None:
        super()._count_epoch(stats)
        self.cpu_seconds += stats["cpu_seconds"]


def reading_tolerance(accuracies: list[float], n: int) -> float:
    """Standard error of the difference of two accuracy readings on the same `n` images, √(2p(1−p)/n).

    Conservative (two independent binomials; readings on shared images are correlated). At
    p ≈ 0.85 and n = 2000 it is 1.1 points, about the spread of the snapshot readings of one
    search: a strict front on such readings is noise.
    """
    if not accuracies or n <= 0:
        return 0.0
    p = float(np.mean(accuracies))
    return math.sqrt(2 * p * (1 - p) / n)


def pareto_set(snapshots: list[dict[str, Any]], on: str = "live", tolerance: float = 0.0) -> list[dict[str, Any]]:
    """Non-dominated snapshots (val accuracy ↑, FLOPs ↓), one per distinct cell (its latest evaluation).

    `on="live"`: the live multi-op cell (`live_flops`, `live_val_accuracy`), what the supernet
    is at that moment; `on="arch"`: its single-op arch (`flops`, `val_accuracy`). A snapshot is
    dominated only by a lead of more than `tolerance` (see `reading_tolerance`).
    """
    key, f, a = ("live_ops", "live_flops", "live_val_accuracy") if on == "live" else ("arch", "flops", "val_accuracy")
    latest: dict[str, dict[str, Any]] = {}
    for s in snapshots:
        latest[str(s[key])] = s
    unique = list(latest.values())
    idx = pareto_front([s[f] for s in unique], [s[a] for s in unique], tolerance)
    return [unique[i] for i in idx]


def run_dnad(
    *,
    teacher_path: str,
    data: DataSplits,
    target: NetShape,
    cfg: SNPSConfig,
    device: torch.device,
    run: RunDir,
    space: SearchSpace,
    quiet: bool = False,
    resume_hint: str = "",
) -> dict[str, Any]:
    """A whole DNAD search in `run`: teacher cache, shrinking search (resumable), harvest, Pareto set, plots."""
    from edgenas.distill.modes import teacher_for
    from edgenas.report.plots import pareto_plot, shrink_plot
    from edgenas.train.model_file import load_model_file

    x_cfg = cfg.experimental
    teacher, info = teacher_for(teacher_path, target)
    _net, blob = load_model_file(teacher_path)
    convert = normalisation_bridge(data, blob.get("meta", {}))
    search = SNPSSearch(
        cfg, data, target, teacher.to(device), device, run=run, quiet=quiet, teacher_convert=convert, space=space
    )
    resumed_from = search.resume_and_fit(resume_hint)
    t0, cpu0 = time.perf_counter(), time.process_time()
    if not search.snapshots or search.snapshots[-1]["reason"] != "end":
        search.take_snapshot("end")
        if x_cfg.snapshot_eval == "end":
            search.evaluate_at_end()
        search.save_checkpoint()
    harvest_seconds, harvest_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    f_key, a_key = ("live_flops", "live_val_accuracy") if x_cfg.pareto_on == "live" else ("flops", "val_accuracy")
    n_eval = min(cfg.eval_images or len(data.val), len(data.val))
    tol = reading_tolerance([s[a_key] for s in search.snapshots], n_eval) if x_cfg.pareto_tolerance == "se" else 0.0
    front = pareto_set(search.snapshots, x_cfg.pareto_on, tol)
    strict = pareto_set(search.snapshots, x_cfg.pareto_on)
    flops = [s[f_key] for s in front]
    archs = list(dict.fromkeys(s["arch"] for s in front))
    arch_flops = [next(s["flops"] for s in front if s["arch"] == a) for a in archs]
    result = {
        "command": "search",
        "method": "dnad",
        "teacher": str(teacher_path),
        "teacher_kind": info["kind"],
        "teacher_arch": str(teacher.arch),
        "teacher_shape": asdict(teacher.shape),
        "resumed_from_epoch": resumed_from,
        "config": cfg.model_dump(),
        "search_shape": asdict(search.net.shape),
        "target_shape": asdict(target),
        "levels": search.levels,
        "levels_reached": sorted(search.taken, reverse=True),
        "full_supernet_flops": search.full_flops,
        "fixed_flops": search.terms.fixed,
        "snapshots": search.snapshots,
        "pareto": front,
        "pareto_count": len(front),
        "pareto_flops_span": (max(flops) / min(flops)) if flops else None,
        "pareto_on": x_cfg.pareto_on,
        "pareto_tolerance": tol,
        "pareto_strict_archs": list(dict.fromkeys(s["arch"] for s in strict)),
        "pareto_archs": archs,
        "pareto_archs_flops_span": (max(arch_flops) / min(arch_flops)) if arch_flops else None,
        "deletions": search.deletions,
        "stall_archs": list(dict.fromkeys(s["arch"] for s in search.snapshots if s["reason"] == "stall")),
        "controller": asdict(search.controller) if cfg.objective == "multiplicative" else None,
        "sparsity_start": search.sparsity_start if cfg.objective == "multiplicative" else None,
        "stopped_at_epoch": search.stopped_at,
        "final_live_ops": int(search.net.alive.sum()),
        "schedule_start": search.start_measure,
        "schedule_final": search.final_flops if x_cfg.schedule_on == "flops" else x_cfg.final_live,
        "search_seconds": round(search.seconds, 2),
        "end_snapshot_seconds": round(harvest_seconds, 2),
        "search_cpu_seconds": round(search.cpu_seconds + harvest_cpu, 2),
        "epochs": search.epoch,
        "history": search.history,
    }
    pareto_plot(
        run.file("pareto.png"),
        {
            "snapshots: live cell": [(s["live_flops"], s["live_val_accuracy"]) for s in search.snapshots],
            f"snapshots: {space.name} arch": [(s["flops"], s["val_accuracy"]) for s in search.snapshots],
        },
        {f"Pareto set ({x_cfg.pareto_on})": [(s[f_key], s[a_key]) for s in front]},
        "DNAD harvest: supernet-evaluated val accuracy vs FLOPs",
        ylabel="val accuracy (supernet weights)",
    )
    shrink_plot(
        run.file("shrink.png"),
        (search.start_live, search.full_flops),
        search.deletions,
        search.snapshots,
        (search.start_measure or search.start_live, x_cfg.final_live, search.schedule_steps)
        if x_cfg.schedule_on != "flops"
        else (search.start_measure or search.full_flops, search.final_flops, search.schedule_steps),
        search.levels,
        on_flops=x_cfg.schedule_on == "flops",
        last_step=search.step,
    )
    run.write_results(result)
    run.event("done", pareto_count=len(front), snapshots=len(search.snapshots))
    return result


def _candidates(result: dict[str, Any]) -> list[str]:
    """The snapshot archs by val accuracy, best first (one entry per arch)."""
    snaps = sorted(result["snapshots"], key=lambda s: -s["val_accuracy"])
    return list(dict.fromkeys(s["arch"] for s in snaps))


METHOD = SearchMethod(
    name="dnad",
    config=SNPSConfig,
    run=run_dnad,
    aims_at="teacher",
    candidates=_candidates,
    summary=lambda result: {"snapshots": len(result["snapshots"]), "pareto_count": result["pareto_count"]},
    legacy_options=LEGACY_OPTIONS,
)
