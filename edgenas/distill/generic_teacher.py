"""Generic teacher (GTN): one teacher trained aware of a whole pool of students.

Binici, Wu, Mitra, "Generalizing Teacher Networks for Effective Knowledge Distillation
Across Student Architectures", BMVC 2024 (arXiv 2407.16040). Training one teacher per
student is costly; a generic teacher is trained once, then any student of the space
distils from it with standard KD.

Each training step draws a connected student from a learnable distribution over the
weight-sharing student supernet, or from a given pool (`StudentSampler`; the supernet is the
teacher's space's at the students' shape, full channels, only the drawn student's ops alive,
so a sample *is* that student sharing weights with all others), and computes
- teacher:  CE(t, y) + w · T² KL(p_s ‖ p_t)   — the KD-awareness (conditioning) term: stay
  easy to imitate by this student. `conditioning="film"`: the teacher is FiLM-conditioned on
  the student's capacity code; `"none"`: one fixed teacher for all. w = μ, or with
  `mu_mode="balanced"` w = μ·‖∇_t CE‖/‖∇_t T²KL‖ (closed form on the logits, detached), so
  μ is the ratio of the two terms' gradient norms on the teacher's logits;
- students: CE(s, y) + T² KL(p_t ‖ p_s)       — the student branch learns from the teacher;
- sampler:  one REINFORCE step on the architecture loss (`edgenas.distill.student_sampler`).
The terms see each other's logits detached, so each only moves its own side. The step
counter and the sampler's state are buffers saved in the checkpoint, so a resumed run draws
the same students. What is our reading rather than the paper's, and what was measured:
docs/methods/gtn.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgenas.core.space import Arch, NetShape, SearchSpace
from edgenas.distill.losses import hinton_kd
from edgenas.distill.student_sampler import StudentSampler
from edgenas.distill.teacher_net import CODE_DIM, ConditionedTeacher
from edgenas.spaces import get_space
from edgenas.spaces.nb201 import NB201Arch


class GenericConfig(BaseModel):
    """Options of generic-teacher training (a run stores all of them; `stored` reads older runs)."""

    model_config = ConfigDict(extra="forbid")

    student_width: int = Field(8, ge=1)
    student_cells: int = Field(1, ge=1)
    conditioning: Literal["film", "none"] = Field(
        "film", description="film: FiLM on the student's capacity code; none: one fixed teacher for all students"
    )
    mu: float = Field(
        1.0,
        ge=0,
        description="KD-awareness weight: balanced, its gradient norm on the teacher's logits over CE's; "
        "fixed, the weight of the T²-scaled term",
    )
    mu_mode: Literal["balanced", "fixed"] = "balanced"
    temperature: float = Field(4.0, gt=0)
    sampler: Literal["learned", "uniform"] = Field(
        "learned", description="students drawn from a learnable distribution (architecture loss) or uniformly"
    )
    pool: list[str] | None = Field(
        None, min_length=1, description="draw students from these archs instead of the whole supernet"
    )
    arch_lr: float = Field(0.05, ge=0, description="η: step of the sampler's REINFORCE update")
    entropy_weight: float = Field(1.0, ge=0, description="λ: entropy bonus of the architecture loss")

    @classmethod
    def stored(cls, options: dict[str, Any]) -> GenericConfig:
        """The options a run stored; one made before a field existed gets that field's old behaviour."""
        return cls(**{**LEGACY, **options})


# What generic teachers trained before these options existed did (their runs resume unchanged).
LEGACY: dict[str, Any] = {"conditioning": "film", "mu_mode": "fixed", "sampler": "uniform", "pool": None}


def live_only(arch: NB201Arch) -> NB201Arch:
    """The same cell with dead edges set to "none" (what is actually built and run)."""
    live = set(arch.live_edges())
    return NB201Arch(tuple(op if e in live else "none" for e, op in enumerate(arch.ops)))


@dataclass
class CapacityCoder:
    """Capacity code of a student at the student shape: scaled log FLOPs and log params.

    Each coordinate maps the space's range at that shape (its cheapest arch → the costliest
    one, e.g. NB201's all-3×3 cell) onto [-1, 1], so codes mean the same whatever the shape.
    Exact for the built network: the space's per-position costs over the points it builds.
    """

    shape: NetShape
    space: str = "nb201"
    terms: list[tuple[float, np.ndarray]] = field(init=False)

    def __post_init__(self) -> None:
        self._space: SearchSpace = get_space(self.space)
        self.terms = [self._space.position_costs(kind, self.shape) for kind in ("flops", "params")]
        lo = self._space.cheapest()
        self.bounds = [(max(self._cost(t, lo), 1.0), _max_cost(self._space, *t)) for t in self.terms]

    def _cost(self, terms: tuple[float, np.ndarray], arch: Arch) -> float:
        fixed, weights = terms
        index, live = self._space.encode(arch), self._space.live_points(arch)
        return float(fixed + sum(weights[p, index[p]] for p in range(len(index)) if live[p]))

    def code(self, arch: Arch) -> torch.Tensor:
        return self._scaled([self._cost(t, arch) for t in self.terms])

    def code_of_cost(self, flops: float, params: float) -> torch.Tensor:
        """The code of a network outside the space (a stock MobileNet) from its exact FLOPs and params
        at this shape, on the same scale, clamped to [-1, 1]: FiLM never saw a code outside it."""
        return self._scaled([flops, params]).clamp(-1.0, 1.0)

    def _scaled(self, costs: list[float]) -> torch.Tensor:
        out = []
        for cost, (lo, hi) in zip(costs, self.bounds, strict=True):
            a, b = torch.log(torch.tensor(lo)), torch.log(torch.tensor(hi))
            v = torch.log(torch.tensor(max(float(cost), lo)))
            out.append(float(2 * (v - a) / (b - a) - 1))
        return torch.tensor(out, dtype=torch.float32)


def _max_cost(space: SearchSpace, fixed: float, weights: np.ndarray) -> float:
    """The largest additive cost an arch of the space can have: the dearest op of every point
    (NB201), or of the `keep_per_node` dearest points of every node (DARTS)."""
    best = weights.max(axis=1)
    if space.keep_per_node is None:
        return float(fixed + sum(best))
    nodes: dict[str, list[float]] = {}
    for p, point in enumerate(space.choice_points()):
        nodes.setdefault(point.node, []).append(float(best[p]))
    return float(fixed + sum(sum(sorted(v, reverse=True)[: space.keep_per_node]) for v in nodes.values()))


class GenericTeacherPair(nn.Module):
    """The teacher, the student supernet and the student sampler trained together; `forward` is the teacher's."""

    def __init__(self, teacher: ConditionedTeacher, cfg: GenericConfig, seed: int) -> None:
        super().__init__()
        if (teacher.film is not None) != (cfg.conditioning == "film"):
            need = "with" if cfg.conditioning == "film" else "without"
            raise ValueError(f"conditioning {cfg.conditioning!r} needs a teacher {need} FiLM")
        self.teacher = teacher
        self.cfg = cfg
        self.seed = seed
        sshape = NetShape(
            cfg.student_width,
            cfg.student_cells,
            teacher.shape.in_channels,
            teacher.shape.resolution,
            teacher.shape.num_classes,
        )
        self.space = get_space(teacher.arch.space_name)
        self.students = self.space.supernet(sshape, k=1)
        self.coder = CapacityCoder(sshape, self.space.name) if cfg.conditioning == "film" else None
        pool = [self.space.parse(a) for a in cfg.pool] if cfg.pool else None
        self.sampler = StudentSampler(self.space, cfg.sampler, seed, pool, cfg.arch_lr, cfg.entropy_weight)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def sample_student(self, step: int) -> Arch:
        """The student of training step `step` (a function of seed, step and the sampler's state)."""
        return self.sampler.draw(step).arch

    def _teacher(self, x: torch.Tensor, arch: Arch | None) -> torch.Tensor:
        if self.coder is None:
            return self.teacher(x)
        code = self.coder.code(arch).to(x.device) if arch is not None else torch.zeros(CODE_DIM, device=x.device)
        return self.teacher(x, code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher logits (FiLM: at the centre of the capacity range), used for its validation accuracy."""
        return self._teacher(x, None)

    def awareness_weight(self, t: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> float:
        """w of the KD-awareness term: μ, or μ·‖∇_t CE‖/‖∇_t T²KL(p_s ‖ p_t)‖ (`mu_mode="balanced"`)."""
        if self.cfg.mu_mode == "fixed":
            return self.cfg.mu
        return self.cfg.mu * balance_scale(t, s, y, self.cfg.temperature)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        draw = self.sampler.draw(int(self.step))
        arch = draw.arch
        self.step += 1
        weights = self.space.onehot(arch).to(x.device)
        index, live = self.space.encode(arch), self.space.live_points(arch)
        alive = torch.zeros_like(self.students.alive)
        for p in range(len(index)):
            if live[p]:
                alive[p, int(index[p])] = True
        self.students.alive.copy_(alive)
        t = self._teacher(x, arch)
        s = self.students(x, weights)
        temp = self.cfg.temperature
        aware = hinton_kd(t, s.detach(), temp)
        teacher_loss = F.cross_entropy(t, y) + self.awareness_weight(t, s, y) * aware
        student_loss = F.cross_entropy(s, y) + hinton_kd(s, t.detach(), temp)
        self.sampler.update(draw, float(aware.detach()))
        return teacher_loss + student_loss


def balance_scale(t: torch.Tensor, s: torch.Tensor, y: torch.Tensor, temperature: float) -> float:
    """‖∇_t CE(t, y)‖ / ‖∇_t T²·KL(p_s ‖ p_t)‖ over the batch, in closed form on the logits (no graph).

    ∇_t CE = softmax(t) − onehot(y), ∇_t T²KL = T·(softmax(t/T) − softmax(s/T)) (both over the batch
    size, which cancels); weighting the awareness term by μ times this makes its gradient on the
    teacher's logits μ times as large as CE's, whatever T, the training stage or the student.
    """
    with torch.no_grad():
        t, s = t.detach().float(), s.detach().float()
        g_ce = torch.softmax(t, dim=1) - F.one_hot(y, t.shape[1]).float()
        g_kd = temperature * (torch.softmax(t / temperature, dim=1) - torch.softmax(s / temperature, dim=1))
        return float(g_ce.norm() / g_kd.norm().clamp_min(1e-12))


def generic_loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The `Trainer` loss hook for a `GenericTeacherPair`."""
    assert isinstance(model, GenericTeacherPair)
    return model.loss(x, y)
