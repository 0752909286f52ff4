"""DCA-NAS: a differentiable search whose objective holds the device's budgets.

Dutta, Kanvar, Agarwal, "Search-time Efficient Device Constraints-Aware Neural Architecture
Search", PReMI 2023 (arXiv 2307.04443). A user names a device's budgets (params, FLOPs,
peak memory, latency) and gets one arch that fits them, from one short search, in any space
with a supernet description (`edgenas.core.space.SearchSpace`: NB201 cells, DARTS genotypes).

Each step (first-order bilevel, on the partial-channel supernet of PC-DARTS):
α is (choice points × ops), β one weight per point, normalised over the points of each node.
1. α-step on a val batch: L_val + Σ_budgets λ_k · penalty(E_k[cost](α) / B_k − 1), E_k the
   expected cost of the *deployed* network under softmax(α) (`CostTerms.expected`), then
   dual ascent λ_k ← max(0, λ_k + η_λ (E_k/B_k − 1)). With `lower` > 0 a second multiplier
   holds E_k above lower·B_k, so the search does not collapse onto free ops far below budget.
2. w-step on a train batch with the current op weights.
The first `warmup_epochs` train w only. The final cell is the most probable one inside the
budget band (`edgenas.search.derive`), checked on its exact cost.

Variants (`variant`, one implementation whose parts are named options, `VARIANTS`):
`edgenas` (default) is the above; `paper` is the paper's form: no partial channels but a 1×1
channel bottleneck and Eq. 5 source sharing in the supernet, α carried by one cell of each
type while the other cells run the current top-weighted arch, the signed Lagrangian
λ·(E/K_d' − 1) with projected gradient ascent on λ, no lower band, no β, the top-weighted
arch without repair, and K_d' read from a lookup graph (`edgenas.search.lookup`, made by
`edgenas search --method dca --calibrate`) when one is named.

How each part differs, the options under `experimental`, and what was measured:
docs/methods/dca.md.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from edgenas.core.cost import Cost
from edgenas.core.device import COST_FIELD, Budgets, DeviceProfile, check_budgets
from edgenas.core.errors import ConfigError
from edgenas.core.rundir import RunDir
from edgenas.core.seeding import derive_seed, torch_generator
from edgenas.core.space import Arch, NetShape, SearchSpace
from edgenas.cost.terms import CostTerms
from edgenas.data import BatchLoader, DataSplits
from edgenas.search.bilevel import CHECKPOINT as CHECKPOINT
from edgenas.search.bilevel import (  # the run's checkpoint file, named here too
    BilevelSearch,
    ExperimentalOptions,
    SearchOptions,
)
from edgenas.search.derive import derive
from edgenas.search.methods import SearchMethod

# The parts of each variant: an option left unset takes its variant's value (`DCAConfig`).
VARIANTS: dict[str, dict[str, Any]] = {
    "edgenas": {"k": 2, "bottleneck": 1, "share_sources": False, "alpha_cells": "all", "lower": 0.85,
                "penalty": "hinge", "derive": "map", "edge_norm": True},
    "paper": {"k": 1, "bottleneck": 2, "share_sources": True, "alpha_cells": "per-type", "lower": 0.0,
              "penalty": "signed", "derive": "top", "edge_norm": False},
}  # fmt: skip
_EXPERIMENTAL_PARTS = ("penalty", "derive", "edge_norm")
CALIBRATION_BUDGETS = (0.5, 0.75, 1.0)

# Options added after the first runs, with the values that reproduce those runs (for resume).
LEGACY_OPTIONS = {
    "entropy_weight": 0.0,
    "derive": "greedy",
    "variant": "edgenas",
    "bottleneck": 1,
    "share_sources": False,
    "alpha_cells": "all",
    "lookup_graph": None,
    "lug_target": 0.925,
    "calibration_budgets": list(CALIBRATION_BUDGETS),
}


class DCAExperimental(ExperimentalOptions):
    """DCA-NAS options for ablations; why each is here: docs/methods/dca.md, "Options".

    `penalty`, `derive` and `edge_norm` left unset take their variant's value (`VARIANTS`).
    """

    penalty: Literal["hinge", "signed"] | None = Field(
        None, description="hinge on E/B − 1 (edgenas), or the paper's signed Lagrangian term (paper)"
    )
    derive: Literal["greedy", "map", "top"] | None = Field(
        None,
        description="the most probable arch inside the budget band (edgenas), greedy repair/fill of the argmax, "
        "or the top-weighted arch as it is (paper)",
    )
    entropy_weight: float = Field(
        0.0, ge=0, description="final weight of the mean per-point entropy of softmax(α), ramped up over the α epochs"
    )
    edge_norm: bool | None = Field(None, description="PC-DARTS edge normalisation β (off: every edge weighs 1)")


class DCAConfig(SearchOptions):
    """The search protocol; recorded in the run so a resume uses the same one.

    `variant` names the form (`VARIANTS`); its parts (`k`, `bottleneck`, `share_sources`,
    `alpha_cells`, `lower`, `experimental.penalty/derive/edge_norm`) left unset take the variant's value,
    and each can be set on its own.
    """

    variant: Literal["edgenas", "paper"] = Field("edgenas", description="edgenas (ours) or paper (Dutta et al.)")
    epochs: int = Field(10, ge=1)
    warmup_epochs: int = Field(3, ge=0)
    batch_size: int = Field(96, ge=2)
    search_width: int = Field(8, ge=1, description="proxy width C of the supernet")
    k: int | None = Field(
        None, ge=1, description="partial channels: 1/K of each edge's channels go through the mixed op (edgenas: 2)"
    )
    bottleneck: int | None = Field(
        None, ge=1, description="1×1 channel bottleneck: the ops run at C/bottleneck channels (paper: 2; 1 = off)"
    )
    share_sources: bool | None = Field(
        None, description="Eq. 5: one op module per (source node, op), shared by every target node (paper)"
    )
    alpha_cells: Literal["all", "per-type"] | None = Field(
        None,
        description="cells that carry α: all (edgenas), or the first of each cell type while the others run the "
        "current top-weighted arch (paper)",
    )
    w_lr: float = Field(0.05, gt=0)
    w_momentum: float = Field(0.9, ge=0, lt=1)
    w_weight_decay: float = Field(3e-4, ge=0)
    alpha_lr: float = Field(0.05, gt=0, description="Adam; high because a short search must commit")
    alpha_weight_decay: float = Field(1e-3, ge=0)
    lower: float | None = Field(
        None, ge=0, lt=1, description="hold expected cost above lower × budget (edgenas: 0.85; 0 = off)"
    )
    eta_lambda: float = Field(0.05, gt=0, description="gradient-ascent step of the multipliers")
    lambda_init: float = Field(0.1, ge=0)
    lookup_graph: str | None = Field(
        None, description="lookup graph JSON (edgenas search --method dca --calibrate): search at K_d' (default: "
        "the device profile's lookup_graph, if any)"
    )  # fmt: skip
    lug_target: float = Field(
        0.925, gt=0, le=1, description="share of the device budget the lookup graph aims the derived arch at"
    )
    calibration_budgets: list[float] = Field(
        list(CALIBRATION_BUDGETS), min_length=1, description="--calibrate: search budgets as shares of the device's"
    )
    grad_clip: float = Field(5.0, gt=0)
    seed: int = 0
    experimental: DCAExperimental = Field(default_factory=DCAExperimental)

    @model_validator(mode="after")
    def _variant_and_epochs(self) -> DCAConfig:
        for name, value in VARIANTS[self.variant].items():
            owner = self.experimental if name in _EXPERIMENTAL_PARTS else self
            if getattr(owner, name) is None:
                setattr(owner, name, value)
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warm-up epochs ({self.warmup_epochs}) must be fewer than epochs ({self.epochs})")
        if self.k > 1 and self.bottleneck > 1:
            raise ValueError("choose partial channels (k > 1) or a channel bottleneck (bottleneck > 1), not both")
        if min(self.calibration_budgets) <= 0:
            raise ValueError("calibration_budgets must be positive shares of the device budget")
        self.calibration_budgets = sorted({float(v) for v in self.calibration_budgets})
        return self


class DCASearch(BilevelSearch):
    """One DCA-NAS search: supernet, α/β, multipliers, and their per-epoch checkpoint."""

    EVENT_OMITS = ("probs", "edge_weights")
    LEGACY_OPTIONS = LEGACY_OPTIONS

    def __init__(
        self,
        cfg: DCAConfig,
        data: DataSplits,
        target: NetShape,
        budgets: Budgets,
        terms: dict[str, CostTerms],
        device: torch.device,
        run: RunDir | None = None,
        quiet: bool = False,
        space: SearchSpace | None = None,
        search_limits: dict[str, float] | None = None,
    ) -> None:
        """`search_limits`: the budgets searched under (K_d', e.g. from a lookup graph); default `budgets`."""
        if len(data.val) < cfg.batch_size:
            raise ConfigError(f"the α split has {len(data.val)} images, fewer than one batch of {cfg.batch_size}")
        self.cfg, self.data, self.target, self.budgets, self.terms = cfg, data, target, budgets, terms
        self.device, self.run, self.quiet = device, run, quiet
        self.space = space if space is not None else terms_space(terms)
        self.nodes = list(self.space.node_points().values())
        points, ops = len(self.space.choice_points()), len(self.space.choice_ops)
        with torch.random.fork_rng():
            torch.manual_seed(derive_seed(cfg.seed, "supernet-init"))
            shape = replace(target, width=cfg.search_width)
            self.net = self.space.build_supernet(
                shape, cfg.k, bottleneck=cfg.bottleneck, share_sources=cfg.share_sources, alpha_cells=cfg.alpha_cells
            ).to(device)
        gen = torch_generator(cfg.seed, "alpha-init")
        self.alpha = nn.Parameter((1e-3 * torch.randn(points, ops, generator=gen)).to(device))
        self.banned = torch.as_tensor(~self.space.op_mask(), device=device)  # ops a point may not take
        self.beta = nn.Parameter((1e-3 * torch.randn(points, generator=gen)).to(device))
        self.train_batches = BatchLoader(data.train, cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=True)
        self.val_batches = BatchLoader(
            data.val, cfg.batch_size, shuffle=True, seed=derive_seed(cfg.seed, "alpha-batches"), drop_last=True
        )
        if len(self.train_batches) == 0:
            raise ConfigError(f"the w split has {len(data.train)} images, fewer than one batch of {cfg.batch_size}")
        self.w_opt = torch.optim.SGD(
            self.net.parameters(), lr=cfg.w_lr, momentum=cfg.w_momentum, weight_decay=cfg.w_weight_decay
        )
        self.w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.w_opt, T_max=cfg.epochs * len(self.train_batches), eta_min=cfg.w_lr * 0.02
        )
        self.a_opt = torch.optim.Adam(
            [self.alpha, self.beta], lr=cfg.alpha_lr, betas=(0.5, 0.999), weight_decay=cfg.alpha_weight_decay
        )
        self.limits = dict(search_limits) if search_limits is not None else dict(budgets.items())
        self.lam = dict.fromkeys(self.limits, cfg.lambda_init)
        self.lam_low = dict.fromkeys(self.limits, 0.0)
        self.epoch = 0
        self.history: list[dict] = []
        self.seconds = 0.0

    # -- architecture distribution -------------------------------------------------------
    def op_probs(self) -> torch.Tensor:
        """softmax(α) over the ops each point may take (`SearchSpace.op_mask`; the others get 0)."""
        return torch.softmax(self.alpha.masked_fill(self.banned, float("-inf")), dim=-1)

    def edge_weights(self) -> torch.Tensor:
        if not self.cfg.experimental.edge_norm:
            return torch.ones(len(self.beta), device=self.alpha.device)
        return node_normalised(self.beta, self.nodes)

    def forward(self, x: torch.Tensor, probs: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """The supernet's logits; with `alpha_cells` "per-type" the cells without α run the current
        top-weighted arch (a constant here: α learns through the cells that carry it and the cost)."""
        if self.cfg.alpha_cells == "all":
            return self.net(x, probs, edges)
        fixed = self.space.onehot(self.space.top_weighted(probs.detach().cpu().numpy())).to(x.device)
        return self.net(x, probs, edges, fixed=fixed)

    def expected_ratios(self, probs: torch.Tensor) -> dict[str, torch.Tensor]:
        """E[cost]/search budget for every budget, differentiable in `probs`."""
        return {name: self.terms[name].expected(probs) / limit for name, limit in self.limits.items()}

    # -- steps ---------------------------------------------------------------------------
    def alpha_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        probs = self.op_probs()
        loss = nn.functional.cross_entropy(self.forward(x, probs, self.edge_weights()), y)
        ratios = self.expected_ratios(probs)
        total = lagrangian(loss, ratios, self.lam, self.lam_low, self.cfg.experimental.penalty, self.cfg.lower)
        mu = self.entropy_mu()
        if mu > 0:
            total = total - mu * (probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()
        # Only α and β need gradients here: skipping the weight gradients saves a third of the step.
        params = [self.alpha, self.beta]
        grads = torch.autograd.grad(total, params, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        self.a_opt.step()
        # gradient ascent on the multipliers, with the costs before the step
        values = {n: float(r.detach()) for n, r in ratios.items()}
        self.lam, self.lam_low = dual_ascent(self.lam, self.lam_low, values, self.cfg.eta_lambda, self.cfg.lower)
        return loss.item()

    def entropy_mu(self, epoch: int | None = None) -> float:
        """Weight of the entropy term in `epoch` (default: the current one, 0-based).

        0 before and at the first α epoch, rising linearly to `experimental.entropy_weight` at the last.
        """
        epoch = self.epoch if epoch is None else epoch
        span = self.cfg.epochs - self.cfg.warmup_epochs - 1
        weight = self.cfg.experimental.entropy_weight
        if weight <= 0 or epoch < self.cfg.warmup_epochs:
            return 0.0
        return weight * ((epoch - self.cfg.warmup_epochs) / span if span > 0 else 1.0)

    def w_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        with torch.no_grad():
            probs, edges = self.op_probs(), self.edge_weights()
        logits = self.forward(x, probs, edges)
        loss = nn.functional.cross_entropy(logits, y)
        self._w_update(loss, self.net.parameters())
        return loss.item(), int((logits.argmax(1) == y).sum())

    def train_epoch(self, bar, task) -> dict[str, Any]:
        self.net.train()
        search_alpha, batches = self.epoch_batches()
        w_loss = a_loss = 0.0
        correct = seen = 0
        start = time.perf_counter()
        prec = self.step_precision()
        for step, ((x, y), vb) in enumerate(batches):
            if vb is not None:
                xv, yv = prec.inputs(vb[0].to(self.device)), vb[1].to(self.device)
                with prec.autocast():
                    a_loss += self.alpha_step(xv, yv)
            with prec.autocast():
                loss, hit = self.w_step(prec.inputs(x.to(self.device)), y.to(self.device))
            w_loss += loss
            correct += hit
            seen += y.numel()
            bar.update(task, advance=1, status=f"loss {w_loss / (step + 1):.3f}")
        steps = len(self.train_batches)
        return {
            "train_loss": w_loss / steps,
            "train_accuracy": correct / max(seen, 1),
            "alpha_loss": a_loss / steps if search_alpha else None,
            "seconds": time.perf_counter() - start,
        }

    # -- checkpoint: the method's own fields (the rest is `BilevelSearch._state`) --------------
    def _own_state(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha.detach().cpu(),
            "beta": self.beta.detach().cpu(),
            "lam": self.lam,
            "lam_low": self.lam_low,
        }

    def _restore_own_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.alpha.copy_(state["alpha"])
            self.beta.copy_(state["beta"])
        self.lam, self.lam_low = state["lam"], state["lam_low"]

    # -- loop ---------------------------------------------------------------------------
    def record(self, stats: dict[str, Any]) -> dict[str, Any]:
        with torch.no_grad():
            probs = self.op_probs().cpu()
            ratios = {n: float(r) for n, r in self.expected_ratios(probs).items()}
        argmax = self.space.top_weighted(probs.numpy())
        return {
            "epoch": self.epoch,
            "searching_alpha": stats["alpha_loss"] is not None,
            "train_loss": round(stats["train_loss"], 5),
            "train_accuracy": round(stats["train_accuracy"], 5),
            "alpha_loss": None if stats["alpha_loss"] is None else round(stats["alpha_loss"], 5),
            "seconds": round(stats["seconds"], 2),
            "probs": probs.numpy().round(5).tolist(),
            "edge_weights": self.edge_weights().detach().cpu().numpy().round(5).tolist(),
            "expected_over_budget": {n: round(v, 5) for n, v in ratios.items()},
            "lambda": {n: round(v, 5) for n, v in self.lam.items()},
            "lambda_low": {n: round(v, 5) for n, v in self.lam_low.items()} if self.cfg.lower > 0 else None,
            "argmax": str(argmax),
            "entropy": round(float(-(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()), 5),
            "entropy_weight": round(self.entropy_mu(self.epoch - 1), 5),
        }

    def _epoch_status(self, rec: dict[str, Any]) -> str:
        """The epoch's loss and expected cost over each budget, shown on its progress bar."""
        ratio_txt = " ".join(f"{n[4:]} {v:.2f}x" for n, v in rec["expected_over_budget"].items())
        return f"loss {rec['train_loss']:.3f} {ratio_txt}"


def lagrangian(
    loss: torch.Tensor,
    ratios: dict[str, torch.Tensor],
    lam: dict[str, float],
    lam_low: dict[str, float],
    penalty: str,
    lower: float,
) -> torch.Tensor:
    """loss + Σ_k λ_k·g(r_k − 1) + Σ_k λlow_k·relu(lower − r_k), r_k = E_k[cost]/K'_k (differentiable in α).

    g is relu for `penalty="hinge"` and the identity for `"signed"`: the paper's Lagrangian
    L_val + λ(k_s(α) − K_d') with the cost measured in units of the search budget K_d'.
    """
    total = loss
    for name, r in ratios.items():
        excess = r - 1.0
        total = total + lam[name] * (excess if penalty == "signed" else torch.relu(excess))
        if lower > 0:
            total = total + lam_low[name] * torch.relu(lower - r)
    return total


def dual_ascent(
    lam: dict[str, float], lam_low: dict[str, float], ratios: dict[str, float], eta: float, lower: float
) -> tuple[dict[str, float], dict[str, float]]:
    """One projected gradient-ascent step of the multipliers: λ_k ← max(0, λ_k + η (r_k − 1)), the
    derivative of the Lagrangian in λ_k; λlow_k ← max(0, λlow_k + η (lower − r_k)) while `lower` > 0."""
    lam = {n: max(0.0, lam[n] + eta * (r - 1.0)) for n, r in ratios.items()}
    if lower > 0:
        lam_low = {n: max(0.0, lam_low[n] + eta * (lower - r)) for n, r in ratios.items()}
    return lam, dict(lam_low)


def terms_space(terms: dict[str, CostTerms]) -> SearchSpace:
    """The space cost terms were made for (`edgenas.cost.terms`)."""
    for t in terms.values():
        if t.space is not None:
            return t.space
    raise ConfigError("DCA-NAS needs the search space: its cost terms name none")


def node_normalised(beta: torch.Tensor, nodes: list[list[int]]) -> torch.Tensor:
    """Edge normalisation (PC-DARTS): softmax of β over the choice points of each node, in point order."""
    parts = []
    for rows in nodes:
        block = beta[rows[0] : rows[-1] + 1] if rows == list(range(rows[0], rows[-1] + 1)) else beta[rows]
        parts.append(torch.softmax(block, dim=0))
    out = torch.cat(parts)
    order = [p for rows in nodes for p in rows]
    if order == list(range(len(order))):
        return out
    return out[torch.as_tensor(np.argsort(order), device=beta.device)]


def op_histogram(arch: Arch, space: SearchSpace) -> dict[str, int]:
    """How often each op appears in the derived arch (collapse to skip/none shows here).

    Every point counts where each point keeps its op (NB201); with `keep_per_node` only the
    kept inputs (a `none` there means "not an input").
    """
    index = space.encode(arch)
    if space.keep_per_node is not None:
        index = index[index != space.none_index]
    counts = Counter(space.choice_ops[int(i)] for i in index)
    return {op: counts.get(op, 0) for op in space.choice_ops}


def finish_search(search: DCASearch, exact_cost: Callable[[Arch], Cost]) -> dict[str, Any]:
    """Derive, repair and check the final arch: the method-specific part of a DCA result."""
    probs = search.op_probs().detach().cpu().numpy()
    d = derive(
        probs,
        search.budgets,
        search.terms,
        lambda a: exact_cost(a).to_dict(),
        lower=search.cfg.lower,
        method=search.cfg.experimental.derive,
        space=search.space,
    )
    checks = check_budgets(search.budgets, Cost(**d.costs))
    return {
        "arch": str(d.arch),
        "argmax_arch": str(d.argmax),
        "derivation": d.method,
        "repaired": any(not r["reason"].startswith("fill") for r in d.repairs),
        "filled": any(r["reason"].startswith("fill") for r in d.repairs),
        "repairs": d.repairs,
        "fits": d.fits,
        "costs": d.costs,
        "checks": [asdict(c) | {"passed": c.passed} for c in checks],
        "expected_costs": {n: float(search.terms[n].expected(torch.as_tensor(probs))) for n in search.limits},
        "cost_model": {
            n: {"kind": t.kind, "note": t.note, "fit": t.fit, "estimate_of_arch": t.of_arch(d.arch)}
            for n, t in search.terms.items()
        },
        "op_histogram": op_histogram(d.arch, search.space),
        "final_probs": np.round(probs, 5).tolist(),
        "search_shape": asdict(search.net.shape),
        "target_shape": asdict(search.target),
        "search_seconds": round(search.seconds, 2),
        "epochs": search.epoch,
        "history": search.history,
    }


def search_latency_table(profile: DeviceProfile, shape: NetShape, run: RunDir, quiet: bool, space: SearchSpace):
    """The profile's lookup table, or one profiled here for `shape` with the space's LUT kernels
    (kept in the run for resume); a space without kernels is a `ConfigError`."""
    import inspect

    from edgenas.cost.budget_check import latency_table_for
    from edgenas.cost.lut import LatencyTable, latency_kernels

    table = latency_table_for(profile)
    if table is not None:
        return table
    path = run.file("latency_table.json")
    if path.exists():
        return LatencyTable.load(path)
    spec = profile.latency
    kernels = latency_kernels(space.name)
    depth = {"cells": [shape.cells]} if "cells" in inspect.signature(kernels.profile).parameters else {}
    table = kernels.profile(
        shape.resolution,
        in_channels=shape.in_channels,
        num_classes=shape.num_classes,
        widths=[shape.width],
        **depth,
        threads=spec.threads,
        warmup=spec.warmup,
        repeats=max(spec.repeats, 100),
        quiet=quiet,
    )
    table.save(path)
    run.event("latency_table", path=str(path), note="profiled on this machine for the search's expected latency")
    return table


def search_budgets(
    cfg: DCAConfig, profile: DeviceProfile, space: SearchSpace, data: DataSplits, target: NetShape, run: RunDir
) -> dict[str, Any]:
    """The search budgets K_d' per budget, from the lookup graph the options or the profile name (else K_d).

    Kept in the run (`search_budgets.json`) when first read, so a resume searches under the same
    ones even if the graph file changed since.
    """
    import json

    from edgenas.core.atomic import atomic_write_json
    from edgenas.search.lookup import LookupGraph

    path = run.file("search_budgets.json")
    if path.exists():
        return json.loads(path.read_text())
    limits = dict(profile.search_budgets().items())
    source = cfg.lookup_graph or profile.lookup_graph
    chosen: dict[str, Any] = {"lookup_graph": source, "device_budgets": limits, "search_budgets": dict(limits)}
    if source:
        graph = LookupGraph.load(source)
        graph.check_matches(space.name, data.info.name, asdict(target), source)
        for name, limit in limits.items():
            found = graph.search_budget(name, limit, cfg.lug_target)
            if found is not None:
                chosen["search_budgets"][name] = found
        chosen["not_in_graph"] = [n for n in limits if n not in graph.points]
    atomic_write_json(path, chosen)
    return chosen


def _exact_cost_fn(space: SearchSpace, target: NetShape, profile: DeviceProfile) -> Callable[[Arch], Cost]:
    from edgenas.cost.budget_check import measure_for_device

    def exact_cost(arch: Arch) -> Cost:
        return measure_for_device(space.build(arch, target), target.input_shape, profile)

    return exact_cost


def _cost_terms(profile: DeviceProfile, space: SearchSpace, target: NetShape, cfg: DCAConfig, run: RunDir, quiet: bool):
    if not profile.search_budgets().items():
        raise ConfigError(f"device {profile.name!r} sets no budget; DCA-NAS needs at least one to search under")
    table = None
    if profile.search_budgets().max_latency_ms is not None:
        table = search_latency_table(profile, target, run, quiet, space)
    return space.cost_terms(profile.search_budgets(), target, table=table, seed=cfg.seed)


def run_dca(
    *,
    profile: DeviceProfile,
    data: DataSplits,
    target: NetShape,
    cfg: DCAConfig,
    device: torch.device,
    run: RunDir,
    space: SearchSpace,
    quiet: bool = False,
    resume_hint: str = "",
) -> dict[str, Any]:
    """A whole DCA-NAS search in `run`: cost terms, search (resumable), derivation, checks, plots."""
    from edgenas.report.plots import alpha_history, op_histogram_plot

    terms = _cost_terms(profile, space, target, cfg, run, quiet)
    budgets = search_budgets(cfg, profile, space, data, target, run)
    search = DCASearch(
        cfg, data, target, profile.search_budgets(), terms, device, run=run, quiet=quiet, space=space,
        search_limits=budgets["search_budgets"],
    )  # fmt: skip
    resumed_from = search.resume_and_fit(resume_hint)
    result = {
        "command": "search",
        "method": "dca",
        "device": profile.name,
        "budgets": dict(profile.budgets.items()),
        "search_budgets": budgets["search_budgets"],
        "lookup_graph": budgets["lookup_graph"],
        "resumed_from_epoch": resumed_from,
        "config": cfg.model_dump(),
        **finish_search(search, _exact_cost_fn(space, target, profile)),
    }
    alpha_history(run.file("alpha.png"), search.history, space.choice_ops, [p.name for p in space.choice_points()])
    op_histogram_plot(run.file("ops.png"), result["op_histogram"], f"DCA-NAS {space.name} arch for {profile.name}")
    run.write_results(result)
    run.event("done", arch=result["arch"], fits=result["fits"], repaired=result["repaired"])
    return result


def calibrate_dca(
    *,
    profile: DeviceProfile,
    data: DataSplits,
    target: NetShape,
    cfg: DCAConfig,
    device: torch.device,
    run: RunDir,
    space: SearchSpace,
    quiet: bool = False,
    resume_hint: str = "",
) -> dict[str, Any]:
    """The lookup graph (`edgenas search --method dca --calibrate`): one search per share f of
    `cfg.calibration_budgets`, every budget of the profile scaled by f, each recording the exact
    cost of its top-weighted arch (the paper's derivation) against its search budget.

    Each search is a run of its own under `calibration/`, with its checkpoint; a finished one is
    not searched again, so an interrupted calibration resumes where it stopped. The graph is
    `lookup_graph.json` in the run folder.
    """
    from edgenas.search.lookup import LookupGraph

    terms = _cost_terms(profile, space, target, cfg, run, quiet)
    exact_cost = _exact_cost_fn(space, target, profile)
    limits = dict(profile.search_budgets().items())
    searches = []
    for share in cfg.calibration_budgets:
        sub = RunDir(run.path / "calibration" / f"budget-{share:.3f}")
        done = sub.file("results.json")
        if done.exists():
            import json

            searches.append(json.loads(done.read_text()))
            continue
        scaled = {n: v * share for n, v in limits.items()}
        search = DCASearch(
            cfg, data, target, profile.search_budgets(), terms, device,
            run=sub, quiet=quiet, space=space, search_limits=scaled,
        )  # fmt: skip
        search.resume_and_fit(resume_hint)
        probs = search.op_probs().detach().cpu().numpy()
        arch = space.top_weighted(probs)
        costs = exact_cost(arch).to_dict()
        rec = {
            "share": share,
            "search_budgets": scaled,
            "arch": str(arch),
            "costs": costs,
            "expected_costs": {n: float(terms[n].expected(torch.as_tensor(probs))) for n in limits},
            "search_seconds": round(search.seconds, 2),
        }
        sub.write_results(rec)
        run.event("calibrated", **{k: rec[k] for k in ("share", "arch", "search_seconds")})
        searches.append(rec)
    points = {n: [(r["search_budgets"][n], r["costs"][COST_FIELD[n]]) for r in searches] for n in limits}
    graph = LookupGraph(space.name, data.info.name, asdict(target), points, cfg.model_dump())
    path = graph.save(run.file("lookup_graph.json"))
    picked = {n: graph.search_budget(n, v, cfg.lug_target) for n, v in limits.items()}
    result = {
        "command": "search",
        "method": "dca",
        "calibrate": True,
        "device": profile.name,
        "budgets": limits,
        "config": cfg.model_dump(),
        "searches": searches,
        "lookup_graph": str(path),
        "search_budgets_for_device": picked,
        "search_seconds": round(sum(r["search_seconds"] for r in searches), 2),
    }
    run.write_results(result)
    run.event("done", lookup_graph=str(path))
    return result


METHOD = SearchMethod(
    name="dca",
    config=DCAConfig,
    run=run_dca,
    aims_at="device",
    candidates=lambda result: [result["arch"]],
    summary=lambda result: {k: result[k] for k in ("arch", "fits", "repaired", "filled")},
    legacy_options=LEGACY_OPTIONS,
    calibrate=calibrate_dca,
)
