"""Capacity-dynamic distillation (CDD, methods.md §5): gates, budget, gradient resetting, removal.

The student starts wide with a `ChannelGate` on the inner channels of every residual
block (see `edgenas.tasks.retrieval.model`). `CDDController` owns those gates during training:

- cost: params and FLOPs are linear in each block's inner width, so `CapacityCost` gives
  the exact kept share of the full model's params/FLOPs from the alive-channel counts
  (checked against `count_params`/`count_flops` of the pruned network in the tests);
- compression loss: λ · Σ_c w_c·|g_c| over alive gates (L1), where w_c is the share of
  the budgeted cost that channel c carries (normalised to mean 1), so expensive channels
  feel more pressure; it is on only while the kept share is above the budget. λ is set
  from `strength` so that an unopposed average gate falls from 1 to 1 − strength over
  the compression steps (independent of dataset size and batch count);
- retrieval-guided gradient resetting: per gate, where the compression gradient and the
  retrieval (task + distillation) gradient have opposite signs, the compression gradient
  is set to zero, so compression never pushes against what retrieval needs. The
  retrieval gradient of a gate is noisy from batch to batch (and BN after the gated conv
  makes a block blind to a common scale of its gates, so about half the gates see a
  positive push on any one batch); `conflict_ema` > 0 decides conflicts on an
  exponential moving average of it instead, so only gates that retrieval needs
  consistently are protected (0: decide on the current batch alone);
- removal: after every compression step, alive gates under `threshold` are removed
  (mask 0) in increasing |g| order until the kept share reaches the budget;
  `enforce_budget` removes the least important remaining channels if training ends
  above the budget.
Gates live in [0, 1] (clamped after each step), so they read as importances.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from edgenas.cost import count_flops, count_params
from edgenas.tasks.retrieval.model import ChannelGate, ResNetConfig, ResNetEmbed

__all__ = ["CDDConfig", "CDDController", "CapacityCost", "ChannelGate", "reset_conflicts"]


class CDDConfig(BaseModel):
    """CDD options (recorded in the run)."""

    model_config = ConfigDict(extra="forbid")

    budget: float = Field(0.35, gt=0, lt=1, description="share of the full model's params/FLOPs to keep")
    metric: Literal["params", "flops", "both"] = "both"
    threshold: float = Field(0.05, ge=0, lt=1, description="gates under this are removed")
    strength: float = Field(3.0, gt=0, description="unopposed gate decay over the compression steps")
    gate_lr: float = Field(0.1, gt=0, description="SGD step size of the gates")
    reset: bool = Field(True, description="retrieval-guided gradient resetting")
    warmup_epochs: int = Field(1, ge=0, description="epochs before compression starts")
    conflict_ema: float = Field(0.9, ge=0, lt=1, description="smoothing of the task gradient for conflict tests")


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
            if self.cfg.reset:
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
