"""ResNet-like embedding networks for retrieval (teacher, CDD student, pruned student).

Why a separate, plain family (not a cell space): CDD prunes channels, so the width of
every residual block's inner conv must be a free number. `ResNetConfig.inner` holds it
per block, which makes a physically pruned model an ordinary instance of the same class
(same code path for training, saving, export and cost).

Layout: 3×3 stem → stages of basic residual blocks (the first block of a stage may
stride 2 and then has a 1×1 projection shortcut) → global average pool → linear
embedding. Only the inner channels of a block (conv1's outputs = conv2's inputs) are
prunable: they touch nothing outside the block, so removing them never has to follow a
residual connection through the network.

With `gated=True` each block multiplies its inner activations by a `ChannelGate`
(importance per channel times a 0/1 alive mask), which CDD learns and thresholds (the
`edgenas` variant). With `compactor=True` each block has a `Compactor` between bn1 and the
ReLU: an identity-initialised 1×1 conv whose rows CDD's `paper` variant drives to zero with a
group lasso (Xie et al., CVPR 2023, after ResRep, Ding et al., ICCV 2021); a zero row is a
channel that can be removed exactly (`edgenas.tasks.retrieval.prune.merge_compactors`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgenas.core.atomic import atomic_torch_save
from edgenas.core.errors import UserError

EMBED_FILE_KIND = "resnet-embed"
EMBED_FILE_VERSION = 1


@dataclass(frozen=True)
class ResNetConfig:
    """Everything needed to rebuild an embedding network (stored in its model file)."""

    in_channels: int = 1
    resolution: int = 28
    stem: int = 16
    widths: tuple[int, ...] = (16, 32, 64)  # output channels of each stage
    blocks: tuple[int, ...] = (2, 2, 2)  # residual blocks per stage
    embed_dim: int = 128
    inner: tuple[int, ...] = field(default=())  # inner width of every block; () = the stage width
    gated: bool = False
    compactor: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        object.__setattr__(self, "inner", tuple(int(c) for c in self.inner))
        if len(self.widths) != len(self.blocks) or not self.widths:
            raise UserError(f"widths {self.widths} and blocks {self.blocks} must be non-empty and of equal length")
        if min((*self.widths, *self.blocks, self.stem, self.embed_dim, self.in_channels, self.resolution)) < 1:
            raise UserError("every width, block count, stem, embed_dim and resolution must be >= 1")
        if self.gated and self.compactor:
            raise UserError("a network has gates (CDD edgenas) or compactors (CDD paper), not both")
        if self.inner and (len(self.inner) != sum(self.blocks) or min(self.inner) < 1):
            raise UserError(f"inner needs {sum(self.blocks)} widths >= 1 (one per block), got {self.inner}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.resolution, self.resolution)

    def inner_widths(self) -> tuple[int, ...]:
        """Inner width of every block, in forward order."""
        if self.inner:
            return self.inner
        return tuple(w for w, n in zip(self.widths, self.blocks, strict=True) for _ in range(n))

    def block_specs(self) -> list[tuple[int, int, int, int, int]]:
        """(in channels, inner, out channels, stride, output side) of every block."""
        specs, cin, side, inner = [], self.stem, self.resolution, iter(self.inner_widths())
        for s, (w, n) in enumerate(zip(self.widths, self.blocks, strict=True)):
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                side = -(-side // stride)  # 3×3 conv, padding 1: ceil(side / stride)
                specs.append((cin, next(inner), w, stride, side))
                cin = w
        return specs

    def with_inner(self, inner: tuple[int, ...], gated: bool = False, compactor: bool = False) -> ResNetConfig:
        return replace(self, inner=tuple(inner), gated=gated, compactor=compactor)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResNetConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class ChannelGate(nn.Module):
    """Learnable importance per channel times a 0/1 alive mask (a removed channel outputs exactly 0)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.ones(channels))
        self.register_buffer("mask", torch.ones(channels))

    def effective(self) -> torch.Tensor:
        return self.gate * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.effective().view(1, -1, 1, 1)


class Compactor(nn.Module):
    """Identity-initialised C×C 1×1 conv; `grad_mask` (1 = free, 0 = task gradient reset) is
    the state of CDD's retrieval-guided gradient resetting, kept with the weights."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
        self.register_buffer("grad_mask", torch.ones(channels))

    def row_norms(self) -> torch.Tensor:
        """‖W_c‖₂ of every output row (the group lasso's groups)."""
        return self.conv.weight.detach().flatten(1).norm(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class BasicBlock(nn.Module):
    """conv3×3 → BN → [compactor] → ReLU → [gate] → conv3×3 → BN, plus shortcut, then ReLU."""

    def __init__(self, cin: int, inner: int, cout: int, stride: int, gated: bool, compactor: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, inner, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.compactor = Compactor(inner) if compactor else None
        self.gate = ChannelGate(inner) if gated else None
        self.conv2 = nn.Conv2d(inner, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inner activations conv2 reads, bn1's output, the compactor's output before the ReLU);
        the last two are the same tensor without a compactor."""
        pre = self.bn1(self.conv1(x))
        post = self.compactor(pre) if self.compactor is not None else pre
        h = F.relu(post)
        return (self.gate(h) if self.gate is not None else h), pre, post

    def inner(self, x: torch.Tensor) -> torch.Tensor:
        """The inner activations (what conv2 reads)."""
        return self.parts(x)[0]

    def outer(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(x, self.inner(x))


class ResNetEmbed(nn.Module):
    """Image → embedding vector (not normalised; retrieval compares cosine similarities)."""

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.stem, 3, 1, 1, bias=False), nn.BatchNorm2d(cfg.stem), nn.ReLU()
        )
        self.blocks = nn.ModuleList(
            BasicBlock(cin, inner, cout, stride, cfg.gated, cfg.compactor)
            for cin, inner, cout, stride, _ in cfg.block_specs()
        )
        self.embed = nn.Linear(cfg.widths[-1], cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.embed(h.mean((2, 3)))

    def forward_inner(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """The embedding and, per block, the globally average-pooled [N, inner] bn1 output and
        compactor output (before the ReLU): the points where the authors' CDD code reads its
        feature-distillation and its gradient-resetting features."""
        h, pre, post = self.stem(x), [], []
        for block in self.blocks:
            inner, p, q = block.parts(h)
            pre.append(p.mean((2, 3)))
            post.append(q.mean((2, 3)))
            h = block.outer(h, inner)
        return self.embed(h.mean((2, 3))), pre, post

    def gates(self) -> list[ChannelGate]:
        return [b.gate for b in self.blocks if b.gate is not None]

    def compactors(self) -> list[Compactor]:
        return [b.compactor for b in self.blocks if b.compactor is not None]


def save_embedding_model(
    path: str | Path, model: ResNetEmbed, *, classifier: dict[str, torch.Tensor] | None = None, **meta: Any
) -> Path:
    """Atomically write weights + config (+ the id classifier's weights, which distillation by
    logits needs, + meta such as normalisation); no pickled modules."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob: dict[str, Any] = {
        "kind": EMBED_FILE_KIND,
        "format_version": EMBED_FILE_VERSION,
        "config": model.cfg.to_dict(),
        "state_dict": state,
        "meta": meta,
    }
    if classifier is not None:
        blob["classifier"] = {k: v.detach().cpu().contiguous() for k, v in classifier.items()}
    return atomic_torch_save(path, blob)


def load_embedding_model(path: str | Path) -> tuple[ResNetEmbed, dict[str, Any]]:
    """Rebuild an embedding network from its file (or a run folder holding `model.pt`), in eval mode."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise UserError(f"{path}: no such model file (make a teacher with `edgenas retrieval --role teacher`)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: not an edgenas model file ({str(exc).splitlines()[0]})") from None
    if not isinstance(blob, dict) or blob.get("kind") != EMBED_FILE_KIND:
        raise UserError(f"{path}: not a retrieval embedding model (make one with `edgenas retrieval --role teacher`)")
    model = ResNetEmbed(ResNetConfig.from_dict(blob["config"]))
    model.load_state_dict(blob["state_dict"])
    return model.eval(), blob
