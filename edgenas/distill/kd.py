"""Distillation as a trainer option: the task loss plus KD terms from a frozen teacher.

`Distiller` wraps a student and a teacher so the foundation `Trainer` trains it unchanged:
its parameters are the student's and the feature projector's (the teacher is frozen and
always in eval mode), `forward` is the student's, and `kd_loss_fn` is the trainer's loss
hook: CE + a·Hinton KD (T) + b·feature KD (last stage, 1×1 projector) + r·relational KD
(RKD distance on the pooled features); each term and its paper: `edgenas.distill.losses`.
A generic teacher with FiLM (docs/methods/gtn.md) is conditioned on the student's capacity
code, fixed for the whole run; one without FiLM is used as a plain teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgenas.distill.losses import FeatureKD, hinton_kd, rkd_distance


class KDConfig(BaseModel):
    """Weights of the distillation terms (recorded in the run)."""

    model_config = ConfigDict(extra="forbid")

    kd_weight: float = Field(1.0, ge=0, description="a: Hinton KD")
    temperature: float = Field(4.0, gt=0)
    feature_weight: float = Field(0.0, ge=0, description="b: feature KD on the last stage")
    relational_weight: float = Field(0.0, ge=0, description="r: RKD distance on pooled features")
    ce_weight: float = Field(1.0, ge=0)


class Distiller(nn.Module):
    """Student + frozen teacher (+ projector); trains and saves like the student."""

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: KDConfig, code: torch.Tensor | None = None) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.cfg = cfg
        self.register_buffer("code", code if code is not None else torch.zeros(0), persistent=False)
        self.feature_kd: FeatureKD | None = None
        if cfg.feature_weight > 0:
            s_ch, t_ch = _last_channels(student), _last_channels(teacher)
            self.feature_kd = FeatureKD(s_ch, t_ch)

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        self.teacher.eval()  # BN statistics of the teacher never move
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)

    def teacher_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with torch.no_grad():
            if self.code.numel():
                return self.teacher.forward_features(x, self.code)
            return self.teacher.forward_features(x)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        s_logits, s_feats = self.student.forward_features(x)
        t_logits, t_feats = self.teacher_outputs(x)
        loss = cfg.ce_weight * F.cross_entropy(s_logits, y)
        if cfg.kd_weight:
            loss = loss + cfg.kd_weight * hinton_kd(s_logits, t_logits, cfg.temperature)
        if self.feature_kd is not None:
            loss = loss + cfg.feature_weight * self.feature_kd(s_feats[-1], t_feats[-1])
        if cfg.relational_weight:
            pooled_s, pooled_t = s_feats[-1].mean((2, 3)), t_feats[-1].mean((2, 3))
            loss = loss + cfg.relational_weight * rkd_distance(pooled_s, pooled_t)
        return loss


def kd_loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The `Trainer` loss hook for a `Distiller`."""
    assert isinstance(model, Distiller)
    return model.loss(x, y)


def _last_channels(net: nn.Module) -> int:
    inner = getattr(net, "net", net)  # ConditionedTeacher wraps an NB201Network
    return int(inner.classifier.in_features)
