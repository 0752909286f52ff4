"""Generic teacher (GTN): one teacher trained aware of a whole pool of students.

Binici, Wu, Mitra, "Generalizing Teacher Networks for Effective Knowledge Distillation
Across Student Architectures", BMVC 2024 (arXiv 2407.16040). Training one teacher per
student is costly; a generic teacher is trained once, then any student of the space
distils from it with standard KD.

Each training step samples a connected student from the weight-sharing student supernet
(the teacher's space's supernet at the students' shape, full channels, only the sampled
student's ops alive, so a sample *is* that student sharing weights with all others), and computes
- teacher:  CE(t, y) + μ · T² KL(p_s ‖ p_t)   — stay easy to imitate by this student,
  with the teacher conditioned (FiLM) on the student's capacity code;
- students: CE(s, y) + T² KL(p_t ‖ p_s)       — the student branch learns from the teacher.
The two terms see each other's logits detached, so each only moves its own side. The
student sequence is a function of (seed, step); the step counter is a buffer saved in the
checkpoint, so a resumed run samples the same students.
How this differs from the paper (uniform sampling, no conditioning/architecture losses)
and what was measured: docs/methods/gtn.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgenas.core.seeding import numpy_rng
from edgenas.core.space import Arch, NetShape, SearchSpace
from edgenas.distill.losses import hinton_kd
from edgenas.distill.teacher_net import ConditionedTeacher
from edgenas.spaces import get_space
from edgenas.spaces.nb201 import NB201Arch


class GenericConfig(BaseModel):
    """Options of generic-teacher training."""

    model_config = ConfigDict(extra="forbid")

    student_width: int = Field(8, ge=1)
    student_cells: int = Field(1, ge=1)
    mu: float = Field(
        0.1, ge=0, description="weight of the KD-awareness term on the teacher (it carries T², 16 at T=4)"
    )
    temperature: float = Field(4.0, gt=0)


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
        out = []
        for t, (lo, hi) in zip(self.terms, self.bounds, strict=True):
            a, b = torch.log(torch.tensor(lo)), torch.log(torch.tensor(hi))
            v = torch.log(torch.tensor(max(self._cost(t, arch), lo)))
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
    """The teacher and the student supernet trained together; `forward` is the teacher's."""

    def __init__(self, teacher: ConditionedTeacher, cfg: GenericConfig, seed: int) -> None:
        super().__init__()
        if teacher.film is None:
            raise ValueError("a generic teacher needs FiLM conditioning")
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
        self.coder = CapacityCoder(sshape, self.space.name)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def sample_student(self, step: int) -> Arch:
        """The student of training step `step` (a function of seed and step), one with a live op."""
        rng = numpy_rng(self.seed, "generic-teacher-student", step)
        while True:
            arch = self.space.sample(rng)
            if self.space.live_points(arch).any():
                return arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher logits at the centre of the capacity range (used for its validation accuracy)."""
        return self.teacher(x, torch.zeros(2, device=x.device))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        arch = self.sample_student(int(self.step))
        self.step += 1
        weights = self.space.onehot(arch).to(x.device)
        index, live = self.space.encode(arch), self.space.live_points(arch)
        alive = torch.zeros_like(self.students.alive)
        for p in range(len(index)):
            if live[p]:
                alive[p, int(index[p])] = True
        self.students.alive.copy_(alive)
        t = self.teacher(x, self.coder.code(arch).to(x.device))
        s = self.students(x, weights)
        temp = self.cfg.temperature
        teacher_loss = F.cross_entropy(t, y) + self.cfg.mu * hinton_kd(t, s.detach(), temp)
        student_loss = F.cross_entropy(s, y) + hinton_kd(s, t.detach(), temp)
        return teacher_loss + student_loss


def generic_loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The `Trainer` loss hook for a `GenericTeacherPair`."""
    assert isinstance(model, GenericTeacherPair)
    return model.loss(x, y)
