"""Generic teacher (GTN): one teacher trained aware of a whole pool of students.

Binici, Wu, Mitra, "Generalizing Teacher Networks for Effective Knowledge Distillation
Across Student Architectures", BMVC 2024 (arXiv 2407.16040). Training one teacher per
student is costly; a generic teacher is trained once, then any student of the space
distils from it with standard KD.

Each training step samples a connected student cell from the weight-sharing student
supernet (the NB201 supernet at the students' shape, one op per edge, full channels, so a
sample *is* that student sharing weights with all others), and computes
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

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgenas.core.seeding import numpy_rng
from edgenas.core.space import NetShape
from edgenas.distill.losses import hinton_kd
from edgenas.distill.teacher_net import ConditionedTeacher
from edgenas.spaces.nb201 import EDGES, OPS, NB201Arch, NB201Space
from edgenas.spaces.nb201.cost_terms import CostTerms, flops_terms, params_terms
from edgenas.spaces.nb201.supernet import NB201SuperNet


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
    """Capacity code of a student cell at the student shape: scaled log FLOPs and log params.

    Each coordinate maps the space's range at that shape (zero cell → all-3×3 cell) onto
    [-1, 1], so codes mean the same whatever the shape. Exact for the built network, since
    dead edges are dropped before counting.
    """

    shape: NetShape
    flops: CostTerms = field(init=False)
    params: CostTerms = field(init=False)

    def __post_init__(self) -> None:
        self.flops, self.params = flops_terms(self.shape), params_terms(self.shape)
        lo, hi = NB201Arch(("none",) * len(EDGES)), NB201Arch(("nor_conv_3x3",) * len(EDGES))
        self.bounds = [(max(t.of_arch(lo), 1.0), t.of_arch(hi)) for t in (self.flops, self.params)]

    def code(self, arch: NB201Arch) -> torch.Tensor:
        arch = live_only(arch)
        out = []
        for t, (lo, hi) in zip((self.flops, self.params), self.bounds, strict=True):
            a, b = torch.log(torch.tensor(lo)), torch.log(torch.tensor(hi))
            v = torch.log(torch.tensor(max(t.of_arch(arch), lo)))
            out.append(float(2 * (v - a) / (b - a) - 1))
        return torch.tensor(out, dtype=torch.float32)


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
        self.students = NB201SuperNet(sshape, k=1)
        self.coder = CapacityCoder(sshape)
        self.space = NB201Space()
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def sample_student(self, step: int) -> NB201Arch:
        rng = numpy_rng(self.seed, "generic-teacher-student", step)
        while True:
            arch = self.space.sample(rng)
            if arch.is_connected:
                return arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher logits at the centre of the capacity range (used for its validation accuracy)."""
        return self.teacher(x, torch.zeros(2, device=x.device))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        arch = self.sample_student(int(self.step))
        self.step += 1
        weights = torch.zeros(len(EDGES), len(OPS), device=x.device)
        weights[torch.arange(len(EDGES)), [OPS.index(o) for o in arch.ops]] = 1.0
        alive = torch.zeros_like(self.students.alive)
        for e in arch.live_edges():
            alive[e, OPS.index(arch.ops[e])] = True
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
