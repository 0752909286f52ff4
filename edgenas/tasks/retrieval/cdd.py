"""Capacity dynamic distillation (CDD): two variants of one method, chosen by `CDDConfig.variant`.

Xie, Zhang, Xu, Zhu, He, "Towards a Smaller Student: Capacity Dynamic Distillation for
Efficient Image Retrieval", CVPR 2023 (arXiv 2303.09230). The student starts as wide as
its teacher and is compressed while it is distilled, so it learns from the teacher at full
capacity first. The variants differ in what carries the capacity and how it shrinks:
- `edgenas` (`CDDController`): a `ChannelGate` on every block's inner channels, an exact
  params/FLOPs cost of the alive channels (`CapacityCost`), a cost-weighted L1 compression
  loss on while the model is above a budget, gradient resetting by edgenas's rule (drop
  the compression gradient where it conflicts in sign with the task gradient), removal of
  gates under a threshold down to the budget;
- `paper` (`CompactorController`, as the authors' code SCY-X/Capacity_Dynamic_Distillation
  does it): identity-initialised 1×1 compactors under a fixed group lasso λ·Σ‖W_c‖₂ (no
  budget: the ratio emerges), and retrieval-guided gradient resetting: the *task* gradient
  of a compactor row is zeroed, from then on, once the channel ranks in the bottom
  `mask_ratio` of |t_nn · s| for every sample of a batch and each of its `neighbours`
  nearest teacher features in a memory bank; a full-capacity phase without resetting
  first; exact removal of rows under `threshold` at the end (`prune.merge_compactors`).
Design notes, departures from the paper and measurements: `docs/methods/cdd.md`.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgenas.cost import count_flops, count_params
from edgenas.tasks.retrieval.model import ChannelGate, Compactor, ResNetConfig, ResNetEmbed

__all__ = [
    "CDDConfig",
    "CDDController",
    "CDDExperimental",
    "CapacityCost",
    "ChannelGate",
    "CompactorController",
    "group_lasso_grad",
    "neighbour_mask",
    "reset_conflicts",
]

# What each variant means by an option left unset (the paper's values from the authors' code).
VARIANT_DEFAULTS: dict[str, dict[str, float]] = {
    "edgenas": {"threshold": 0.05, "kl_weight": 0.0, "feature_weight": 0.0},
    "paper": {"threshold": 1e-5, "kl_weight": 1.0, "feature_weight": 0.5},
}


class CDDExperimental(BaseModel):
    """Ablation switches: each turns a part of CDD off to measure what it brings (not for real runs)."""

    model_config = ConfigDict(extra="forbid")

    reset: bool = Field(True, description="retrieval-guided gradient resetting (False: the no-reset ablation)")


class CDDConfig(BaseModel):
    """CDD options (recorded in the run). The ablation switches sit under `experimental`;
    their flat form (`reset: false`, as runs made before the group recorded it) is accepted."""

    model_config = ConfigDict(extra="forbid")

    variant: Literal["edgenas", "paper"] = Field("edgenas", description="gates + budget, or compactors + lasso")
    budget: float = Field(0.35, gt=0, lt=1, description="edgenas: share of the full model's params/FLOPs to keep")
    metric: Literal["params", "flops", "both"] = "both"
    threshold: float | None = Field(
        None, ge=0, lt=1, description="gates (edgenas, 0.05) / compactor row norms (paper, 1e-5) under this are removed"
    )
    # paper variant
    lasso: float = Field(
        0.004,
        ge=0,
        description="paper: group-lasso weight λ on compactor rows (the paper's 0.004 is for 120 epochs; "
        "shorter schedules need more, docs/methods/cdd.md)",
    )
    mask_ratio: float = Field(0.5, ge=0, le=1, description="paper: share of channels per sample ranked unimportant")
    neighbours: int = Field(2, ge=1, description="paper: teacher neighbours per sample (the sample itself first)")
    bank_size: int = Field(24000, ge=1, description="paper: teacher features kept per block in the memory bank")
    full_epochs: int | None = Field(
        None, ge=0, description="paper: full-capacity epochs before gradient resetting (round(epochs/6))"
    )
    kl_weight: float | None = Field(None, ge=0, description="KL(T)·T² on id logits (paper 1, edgenas 0)")
    kl_temperature: float = Field(2.0, gt=0)
    feature_weight: float | None = Field(None, ge=0, description="L2 of pooled inner features (paper 0.5, edgenas 0)")
    strength: float = Field(3.0, gt=0, description="unopposed gate decay over the compression steps")
    gate_lr: float = Field(0.1, gt=0, description="SGD step size of the gates")
    warmup_epochs: int = Field(1, ge=0, description="epochs before compression starts")
    conflict_ema: float = Field(0.9, ge=0, lt=1, description="smoothing of the task gradient for conflict tests")
    experimental: CDDExperimental = CDDExperimental()

    @model_validator(mode="before")
    @classmethod
    def _flat_experimental(cls, data: Any) -> Any:
        """Move flat ablation keys (`reset=False`) into `experimental`; a key given both ways is an error."""
        if not isinstance(data, dict) or not any(k in CDDExperimental.model_fields for k in data):
            return data
        data = dict(data)
        nested = data.get("experimental", {})
        nested = dict(nested.model_dump() if isinstance(nested, CDDExperimental) else nested)
        for key in CDDExperimental.model_fields:
            if key in data:
                if key in nested and nested[key] != data[key]:
                    raise ValueError(f"{key} is given twice (flat and under experimental) with different values")
                nested[key] = data.pop(key)
        data["experimental"] = nested
        return data

    @model_validator(mode="after")
    def _variant_defaults(self) -> CDDConfig:
        """Options left unset take the variant's value (recorded resolved in the run's config)."""
        for key, value in VARIANT_DEFAULTS[self.variant].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        return self

    def full_capacity_epochs(self, epochs: int) -> int:
        """Epochs of the paper's full-capacity phase: `full_epochs`, else 1/6 of training (20 of 120)."""
        return self.full_epochs if self.full_epochs is not None else round(epochs / 6)


class CapacityCost:
    """Exact params/FLOPs of a `ResNetConfig` as a function of the inner widths."""

    def __init__(self, cfg: ResNetConfig) -> None:
        plain = ResNetEmbed(cfg.with_inner(cfg.inner_widths(), gated=False))
        self.full_inner = cfg.inner_widths()
        self.params = count_params(plain)
        self.flops = count_flops(plain, cfg.input_shape)
        # per inner channel: conv1 filter (cin·9) + BN scale/shift (2) + conv2 slice (cout·9)
        self.channel_params = [cin * 9 + 2 + cout * 9 for cin, _, cout, _, _ in cfg.block_specs()]
        # both convs run at the block's output side; multiply-add = 2 FLOPs (cost convention)
        self.channel_flops = [2 * 9 * (cin + cout) * side * side for cin, _, cout, _, side in cfg.block_specs()]

    def kept(self, alive: list[int]) -> dict[str, float]:
        """Kept share of params and FLOPs with `alive` inner channels per block."""
        removed = [f - a for f, a in zip(self.full_inner, alive, strict=True)]
        p = self.params - sum(r * c for r, c in zip(removed, self.channel_params, strict=True))
        f = self.flops - sum(r * c for r, c in zip(removed, self.channel_flops, strict=True))
        return {"params": p / self.params, "flops": f / self.flops}

    def channel_weights(self, metric: str) -> list[float]:
        """Share of the budgeted cost one inner channel of each block carries."""
        wp = [c / self.params for c in self.channel_params]
        wf = [c / self.flops for c in self.channel_flops]
        if metric == "params":
            return wp
        if metric == "flops":
            return wf
        return [(a + b) / 2 for a, b in zip(wp, wf, strict=True)]


def reset_conflicts(task_grad: torch.Tensor, comp_grad: torch.Tensor) -> torch.Tensor:
    """The compression gradient with zeros wherever it has the opposite sign of the task gradient."""
    return torch.where(task_grad * comp_grad < 0, torch.zeros_like(comp_grad), comp_grad)


class CDDController:
    """Compression, gradient resetting and removal for the gates of one gated `ResNetEmbed`."""

    def __init__(self, model: ResNetEmbed, cfg: CDDConfig, compression_steps: int) -> None:
        if not model.cfg.gated:
            raise ValueError("CDD needs a gated network (ResNetConfig(gated=True))")
        self.cfg = cfg
        self.gates = model.gates()
        self.cost = CapacityCost(model.cfg)
        w = self.cost.channel_weights(cfg.metric)
        mean_w = sum(wb * n for wb, n in zip(w, self.cost.full_inner, strict=True)) / sum(self.cost.full_inner)
        self.weights = [wb / mean_w for wb in w]
        self.lam = cfg.strength / (cfg.gate_lr * max(1, compression_steps))
        self.task_ema = [torch.zeros_like(g.gate) for g in self.gates]

    def state_dict(self) -> dict[str, list[torch.Tensor]]:
        """What a checkpoint must keep besides the gates (the smoothed task gradients)."""
        return {"task_ema": [t.detach().cpu().clone() for t in self.task_ema]}

    def load_state_dict(self, state: dict[str, list[torch.Tensor]]) -> None:
        self.task_ema = [t.to(g.gate.device) for t, g in zip(state["task_ema"], self.gates, strict=True)]

    # -- cost --------------------------------------------------------------------------
    def alive(self) -> list[int]:
        return [int(g.mask.sum().item()) for g in self.gates]

    def kept(self, alive: list[int] | None = None) -> dict[str, float]:
        return self.cost.kept(self.alive() if alive is None else alive)

    def kept_share(self, alive: list[int] | None = None) -> float:
        """The budgeted share: params, FLOPs or (for `both`) the larger of the two."""
        k = self.kept(alive)
        return max(k["params"], k["flops"]) if self.cfg.metric == "both" else k[self.cfg.metric]

    def over_budget(self) -> bool:
        return self.kept_share() > self.cfg.budget

    # -- gradients ---------------------------------------------------------------------
    def gate_parameters(self) -> list[torch.nn.Parameter]:
        return [g.gate for g in self.gates]

    def compression_loss(self) -> torch.Tensor:
        """λ Σ w_c |g_c| over alive gates; zero once the kept share is within the budget."""
        terms = [w * g.effective().abs().sum() for w, g in zip(self.weights, self.gates, strict=True)]
        loss = self.lam * torch.stack(terms).sum()
        return loss if self.over_budget() else loss * 0.0

    def add_compression_grad(self) -> dict[str, int]:
        """Add the (reset) compression gradient to the gates' task gradients already in `.grad`.

        Call after `task_loss.backward()`; returns how many gate gradients were reset.
        """
        stats = {"reset": 0, "pushed": 0}
        if not self.over_budget():
            return stats
        params = self.gate_parameters()
        comp = torch.autograd.grad(self.compression_loss(), params)
        beta = self.cfg.conflict_ema
        for i, (p, c) in enumerate(zip(params, comp, strict=True)):
            task = p.grad if p.grad is not None else torch.zeros_like(p)
            self.task_ema[i] = beta * self.task_ema[i] + (1 - beta) * task.detach()
            if self.cfg.experimental.reset:
                kept = reset_conflicts(self.task_ema[i] if beta > 0 else task, c)
                stats["reset"] += int(((kept == 0) & (c != 0)).sum())
                c = kept
            stats["pushed"] += int((c != 0).sum())
            p.grad = task + c
        return stats

    @torch.no_grad()
    def clamp_(self) -> None:
        for g in self.gates:
            g.gate.clamp_(0.0, 1.0)

    # -- removal -----------------------------------------------------------------------
    @torch.no_grad()
    def _candidates(self, below: float | None) -> list[tuple[float, int, int]]:
        out = []
        for b, g in enumerate(self.gates):
            v = g.gate.abs()
            pick = g.mask.bool() if below is None else g.mask.bool() & (v < below)
            out += [(float(v[c]), b, c) for c in torch.nonzero(pick).flatten().tolist()]
        return sorted(out)

    @torch.no_grad()
    def _remove_until_budget(self, candidates: list[tuple[float, int, int]]) -> int:
        removed = 0
        alive = self.alive()
        for _, b, c in candidates:
            if self.kept_share(alive) <= self.cfg.budget:
                break
            if alive[b] <= 1:  # keep every block alive (a block of 0 channels would be a bug magnet)
                continue
            self.gates[b].mask[c] = 0.0
            alive[b] -= 1
            removed += 1
        return removed

    def remove_below_threshold(self) -> int:
        """Remove alive channels whose gate is under the threshold, lowest first, down to the budget."""
        return self._remove_until_budget(self._candidates(self.cfg.threshold))

    def enforce_budget(self) -> int:
        """Remove the lowest-gate alive channels until the kept share is within the budget."""
        return self._remove_until_budget(self._candidates(None))


# ----------------------------------------------------------------------------- paper variant
def group_lasso_grad(weight: torch.Tensor, lam: float) -> torch.Tensor:
    """∂/∂W of λ Σ_c ‖W_c‖₂ over output rows c: λ W_c / ‖W_c‖₂ (0 for an all-zero row)."""
    norms = weight.flatten(1).norm(dim=1)
    scale = torch.where(norms > 0, lam / norms.clamp_min(torch.finfo(weight.dtype).tiny), torch.zeros_like(norms))
    return weight * scale.view(-1, *([1] * (weight.dim() - 1)))


@torch.no_grad()
def neighbour_mask(
    student: torch.Tensor, teacher: torch.Tensor, bank: torch.Tensor, k: int, ratio: float
) -> torch.Tensor:
    """Channels to reset for one block: a bool [C], True where the channel is among the
    `int(C·ratio)` smallest |t̂_nn,c · ŝ_c| for every sample and each of its top-`k` cosine
    neighbours t_nn among `bank` (rows of L2-normalised teacher features; ŝ, t̂ normalised).
    Ties rank by channel index (a stable sort). The neighbours come from `topk`, not a sort
    of the whole bank (4× faster steps at 24k rows): which of several tied bank rows it
    returns is unspecified, but tied rows are copies of one feature (the same image pushed
    in several epochs), so the mask is the same."""
    c = student.shape[1]
    n_low = int(c * ratio)
    if n_low == 0 or len(bank) == 0:
        return torch.zeros(c, dtype=torch.bool, device=student.device)
    t, s, g = (F.normalize(v.double(), dim=1) for v in (teacher, student, bank))
    nn_idx = torch.topk(t @ g.t(), min(k, len(g)), dim=1).indices
    contrib = (g[nn_idx] * s[:, None, :]).abs()  # [N, k, C]
    low = torch.sort(contrib, dim=2, stable=True).indices[..., :n_low]
    is_low = torch.zeros_like(contrib, dtype=torch.bool).scatter_(2, low, True)
    return is_low.flatten(0, 1).all(0)


class CompactorController:
    """Group lasso, retrieval-guided resetting of the task gradient, memory bank (paper variant)."""

    def __init__(self, model: ResNetEmbed, cfg: CDDConfig) -> None:
        if not model.cfg.compactor:
            raise ValueError("CDD paper needs a network with compactors (ResNetConfig(compactor=True))")
        self.cfg = cfg
        self.compactors: list[Compactor] = model.compactors()
        self.banks = [torch.zeros(0, c.conv.out_channels) for c in self.compactors]

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep besides the weights (the reset masks are model buffers)."""
        return {"banks": [b.detach().cpu().clone() for b in self.banks]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = self.compactors[0].conv.weight.device
        self.banks = [b.to(dev) for b in state["banks"]]

    @torch.no_grad()
    def _push(self, teacher: list[torch.Tensor]) -> None:
        """Enqueue the batch's teacher features; the bank keeps the newest `bank_size` rows."""
        for i, t in enumerate(teacher):
            bank = self.banks[i].to(t.device)
            self.banks[i] = torch.cat([bank, t.detach().float()])[-self.cfg.bank_size :]

    @torch.no_grad()
    def update_masks(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> int:
        """Push the teacher features, then reset the channels `neighbour_mask` picks (for good);
        returns how many channels were newly reset."""
        self._push(teacher)
        newly = 0
        for comp, s, t, bank in zip(self.compactors, student, teacher, self.banks, strict=True):
            pick = neighbour_mask(s, t, bank, self.cfg.neighbours, self.cfg.mask_ratio)
            newly += int((pick & (comp.grad_mask > 0)).sum())
            comp.grad_mask[pick] = 0.0
        return newly

    @torch.no_grad()
    def adjust_grads(self, reset: bool) -> None:
        """After backward: zero the task gradient of reset rows (if `reset`), add the lasso gradient."""
        for comp in self.compactors:
            w = comp.conv.weight
            if w.grad is None:
                w.grad = torch.zeros_like(w)
            if reset:
                w.grad.mul_(comp.grad_mask.view(-1, 1, 1, 1))
            w.grad.add_(group_lasso_grad(w.detach(), self.cfg.lasso))

    def row_norms(self) -> list[torch.Tensor]:
        return [c.row_norms() for c in self.compactors]

    def alive(self) -> list[int]:
        """Rows at or above the removal threshold, per block (at least 1: a block keeps one channel)."""
        return [max(1, int((n >= self.cfg.threshold).sum())) for n in self.row_norms()]

    def reset_channels(self) -> list[int]:
        return [int((c.grad_mask == 0).sum()) for c in self.compactors]
