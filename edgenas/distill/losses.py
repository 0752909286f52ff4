"""Knowledge-distillation losses, one function or module each, shared by every method that distils.

- `hinton_kd`: KL(teacher || student) on temperature-softened logits, times T² so the
  gradient scale does not shrink with T (Hinton, Vinyals, Dean, "Distilling the Knowledge
  in a Neural Network", arXiv 1503.02531, 2015).
- `FeatureKD`: MSE between a student feature map, sent through a learnt 1×1 projector to
  the teacher's channel count, and the (detached) teacher map (the hint loss of Romero et
  al., "FitNets: Hints for Thin Deep Nets", ICLR 2015); spatial sizes are matched by
  adaptive average pooling of the larger map.
- `rkd_distance`, `rkd_angle`: relational KD (Park, Kim, Lu, Cho, "Relational Knowledge
  Distillation", CVPR 2019), smooth-L1 between the students' and teachers' normalised
  pairwise distances / triplet angles.
- `similarity_kd`: similarity-preserving KD (Tung & Mori, "Similarity-Preserving Knowledge
  Distillation", ICCV 2019), squared Frobenius distance between row-normalised batch Gram
  matrices, divided by b².
- `embedding_kd`: squared L2 distance between L2-normalised embeddings, the retrieval KD of
  edgenas's CDD (Xie et al., "Towards a Smaller Student: Capacity Dynamic Distillation for
  Efficient Image Retrieval", CVPR 2023).
Teacher tensors are always detached: these losses train the student only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def hinton_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """T² · KL(softmax(t/T) || softmax(s/T)), averaged over the batch."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / t, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * t * t


class FeatureKD(nn.Module):
    """Hint loss through a learnt 1×1 conv projector (its parameters train with the student)."""

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__()
        self.projector = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
        s = self.projector(student_feat)
        t = teacher_feat.detach()
        if s.shape[-2:] != t.shape[-2:]:
            size = (min(s.shape[-2], t.shape[-2]), min(s.shape[-1], t.shape[-1]))
            s, t = F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size)
        return F.mse_loss(s, t)


class StageFeatureKD(nn.Module):
    """Σ_i weight_i · MSE(BN(conv1×1(s_i)), BN(t_i)) over the stage outputs s_i, t_i of student and teacher.

    DNAD's distiller (Rao et al., arXiv 2504.20080; authors' code `Distillartor`): a 1×1 conv
    (with bias) and a non-affine BN per student stage, a non-affine BN per teacher stage,
    stage weights [0.2, 0.3, 0.5] for three stages. Maps of different sizes are pooled to the smaller.
    """

    def __init__(self, student_channels: list[int], teacher_channels: list[int], weights: list[float]) -> None:
        super().__init__()
        if not len(student_channels) == len(teacher_channels) == len(weights):
            raise ValueError("one student stage, one teacher stage and one weight per distilled stage")
        self.project = nn.ModuleList(
            nn.Sequential(nn.Conv2d(s, t, 1), nn.BatchNorm2d(t, affine=False))
            for s, t in zip(student_channels, teacher_channels, strict=True)
        )
        self.teacher_bn = nn.ModuleList(nn.BatchNorm2d(t, affine=False) for t in teacher_channels)
        self.weights = [float(w) for w in weights]

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        total = student[0].new_zeros(())
        for proj, bn, w, s_i, t_i in zip(self.project, self.teacher_bn, self.weights, student, teacher, strict=True):
            s, t = proj(s_i), bn(t_i.detach())
            if s.shape[-2:] != t.shape[-2:]:
                size = (min(s.shape[-2], t.shape[-2]), min(s.shape[-1], t.shape[-1]))
                s, t = F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size)
            total = total + w * F.mse_loss(s, t)
        return total


def stage_outputs(feats: list[torch.Tensor], n: int) -> list[torch.Tensor]:
    """The last `n` stage outputs of a network's block outputs: the last map at each spatial size, in order."""
    last: dict[tuple[int, int], torch.Tensor] = {}
    for f in feats:
        last.pop(tuple(f.shape[-2:]), None)  # a size seen again starts that stage afresh
        last[tuple(f.shape[-2:])] = f
    stages = list(last.values())
    if len(stages) < n:
        raise ValueError(f"the network has {len(stages)} stages, fewer than the {n} distilled")
    return stages[-n:]


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(e, e, p=2)
    off_diag = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
    return d / d[off_diag].mean().clamp_min(1e-12)


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between mean-normalised pairwise distances of student and teacher embeddings."""
    with torch.no_grad():
        t = _normalised_distances(_flat(teacher.detach()))
    s = _normalised_distances(_flat(student))
    return F.smooth_l1_loss(s, t)


def _angles(e: torch.Tensor) -> torch.Tensor:
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)  # [i, j] = unit(e_j - e_i)
    return torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)  # cos of angle j-i-k for every triplet


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between the cosines of all triplet angles of student and teacher embeddings."""
    with torch.no_grad():
        t = _angles(_flat(teacher.detach()))
    return F.smooth_l1_loss(_angles(_flat(student)), t)


def similarity_kd(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """||norm(G_s) − norm(G_t)||²_F / b², G = F Fᵀ over the batch, rows L2-normalised."""
    b = student.shape[0]
    gs = F.normalize(_flat(student) @ _flat(student).t(), p=2, dim=1)
    gt = F.normalize(_flat(teacher.detach()) @ _flat(teacher.detach()).t(), p=2, dim=1)
    return ((gs - gt) ** 2).sum() / (b * b)


def embedding_kd(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared L2 distance between the L2-normalised student and teacher embeddings.

    Normalised, because retrieval ranks by cosine similarity: only directions matter, and
    the student need not copy the teacher's embedding norms. Ranges over [0, 4].
    """
    s = F.normalize(_flat(student), dim=1)
    t = F.normalize(_flat(teacher.detach()), dim=1)
    return ((s - t) ** 2).sum(1).mean()
