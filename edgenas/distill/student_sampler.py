"""Which student a generic teacher (GTN) meets at each training step: a learnable distribution.

Binici, Wu, Mitra (BMVC 2024, arXiv 2407.16040) draw the reference students from a *trainable*
sampling distribution over the student supernet, trained with an "architecture loss" whose
form we could not read. edgenas's reading (docs/methods/gtn.md):

- the distribution p_θ is a categorical per choice point over the space's ops (`op_mask`
  respected; spaces that keep k inputs per node, DARTS, pick those inputs uniformly and learn
  only the ops), or, given a `pool` of archs, one categorical over the pool's members;
- the architecture loss is L_arch(θ) = −E_{a∼p_θ}[L_aware(a)] − λ·H(p_θ): the distribution
  moves toward the students the teacher is currently hardest to imitate by (largest
  KD-awareness loss), while the entropy bonus keeps every student in play; its stationary
  point is p ∝ exp(L_aware / λ) in units of the loss's running spread;
- update, once per training step, REINFORCE (Williams, Machine Learning 1992) with a running
  baseline: θ ← θ + η·(A·∇θ log p_θ(a) + λ·∇θ H(p_θ)), A = (L − m) / s clipped to ±3, with m
  and s² exponential running mean and variance of L (decay 0.9), all in closed form.

`uniform` samples with no learning (the sampler of edgenas before issue 22, bit for bit).
The draw at step n is a function of (seed, n, θ), and θ, m, s² are buffers saved in the
trainer's checkpoint, so a resumed run draws the same students.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgenas.core.seeding import numpy_rng
from edgenas.core.space import Arch, SearchSpace

CLIP = 3.0  # standardised advantages are clipped to ±CLIP
DECAY = 0.9  # running mean/variance of the KD-awareness loss


@dataclass(frozen=True)
class Draw:
    """One sampled student and what the update needs: the chosen index per point (or pool member)
    and which points the distribution chose (not the uniform input choice of DARTS-like spaces)."""

    arch: Arch
    index: np.ndarray
    learned: np.ndarray


class StudentSampler(nn.Module):
    """p_θ over the student supernet (or a pool); `draw(step)`, then `update(draw, loss)`."""

    def __init__(
        self,
        space: SearchSpace,
        mode: str,
        seed: int,
        pool: list[Arch] | None = None,
        lr: float = 0.05,
        entropy_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if mode not in ("learned", "uniform"):
            raise ValueError(f"sampler mode is learned or uniform, got {mode!r}")
        self.space, self.mode, self.seed = space, mode, seed
        self.pool = list(pool or [])
        self.lr, self.entropy_weight = lr, entropy_weight
        if self.pool:
            mask = np.ones((1, len(self.pool)), dtype=bool)
        else:
            mask = space.op_mask().copy()
            if space.keep_per_node is not None and space.none_index is not None:
                mask[:, space.none_index] = False  # inputs are chosen apart; the op is never `none`
        self.register_buffer("mask", torch.as_tensor(mask), persistent=False)
        if mode == "learned":
            self.register_buffer("logits", torch.zeros(mask.shape, dtype=torch.float64))
            self.register_buffer("loss_mean", torch.zeros((), dtype=torch.float64))
            self.register_buffer("loss_var", torch.zeros((), dtype=torch.float64))
            self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def probabilities(self) -> torch.Tensor:
        """(rows, choices) probabilities: rows = choice points, or one row over the pool (uniform: equal)."""
        logits = self.logits if self.mode == "learned" else torch.zeros(self.mask.shape, dtype=torch.float64)
        return torch.softmax(logits.masked_fill(~self.mask, float("-inf")), dim=1)

    def draw(self, step: int) -> Draw:
        """The student of training step `step`: one with a live op (a function of seed, step and θ)."""
        rng = numpy_rng(self.seed, "generic-teacher-student", step)
        if self.mode == "uniform" and not self.pool:
            while True:  # the sampler of edgenas before issue 22 (same draws)
                arch = self.space.sample(rng)
                if self.space.live_points(arch).any():
                    return Draw(arch, self.space.encode(arch), np.zeros(0, dtype=bool))
        probs = self.probabilities().cpu().numpy()
        if self.pool:
            k = int(rng.choice(len(self.pool), p=probs[0] / probs[0].sum()))
            return Draw(self.pool[k], np.array([k]), np.ones(1, dtype=bool))
        while True:
            index = np.array([rng.choice(probs.shape[1], p=row / row.sum()) for row in probs])
            learned = np.ones(len(index), dtype=bool)
            if self.space.keep_per_node is not None:
                learned[:] = False
                for rows in self.space.node_points().values():
                    keep = rng.choice(rows, size=min(self.space.keep_per_node, len(rows)), replace=False)
                    learned[keep] = True
                index = np.where(learned, index, self.space.none_index)
            arch = self.space.decode(index)
            if self.space.live_points(arch).any():
                return Draw(arch, index, learned)

    def update(self, draw: Draw, loss: float) -> None:
        """One REINFORCE ascent step on E[L_aware] + λ·H (descent on the architecture loss); no-op when uniform."""
        if self.mode != "learned":
            return
        mean, var, n = float(self.loss_mean), float(self.loss_var), int(self.updates)
        advantage = 0.0
        if n > 0 and var > 0:
            advantage = float(np.clip((loss - mean) / np.sqrt(var), -CLIP, CLIP))
        if n == 0:
            self.loss_mean.fill_(loss)
        else:
            self.loss_mean.fill_(DECAY * mean + (1 - DECAY) * loss)
            self.loss_var.fill_(DECAY * var + (1 - DECAY) * (loss - mean) ** 2)
        self.updates += 1
        self.logits.add_(self.lr * (advantage * self.score(draw) + self.entropy_weight * self.entropy_gradient()))

    def score(self, draw: Draw) -> torch.Tensor:
        """∇θ log p_θ(draw): onehot(choice) − π on every row the distribution chose, 0 elsewhere."""
        probs = self.probabilities()
        grad = torch.zeros_like(probs)
        rows = torch.as_tensor(np.flatnonzero(draw.learned), dtype=torch.long)
        cols = torch.as_tensor(draw.index[draw.learned], dtype=torch.long)
        grad[rows] = -probs[rows]
        grad[rows, cols] += 1.0
        return grad

    def entropy_gradient(self) -> torch.Tensor:
        """∇θ Σ_rows H(π_row): −π_k (log π_k + H_row), 0 at masked choices."""
        probs = self.probabilities()
        logp = torch.where(probs > 0, probs.log(), torch.zeros_like(probs))
        entropy = -(probs * logp).sum(dim=1, keepdim=True)
        return -probs * (logp + entropy)

    def describe(self) -> dict:
        """What a teacher file records about its sampler (the final distribution when learned)."""
        out: dict = {"mode": self.mode, "pool_size": len(self.pool)}
        if self.mode == "learned":
            out["probabilities"] = [[round(float(v), 4) for v in row] for row in self.probabilities()]
        return out
