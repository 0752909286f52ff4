"""The trained-model file (`model.pt`): weights plus what is needed to rebuild the network.

Storing the space name, arch string and `NetShape` (not a pickled module) keeps the file
loadable by later versions of edgenas and by `edgenas export` without the training run.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgenas.core.atomic import atomic_torch_save
from edgenas.core.errors import UserError
from edgenas.core.space import NetShape
from edgenas.spaces import get_space

MODEL_FILE_VERSION = 1


def save_model_file(path: str | Path, model: nn.Module, space: str, arch: str, shape: NetShape, **meta: Any) -> Path:
    """Atomically write weights + rebuild recipe (+ free-form metadata such as normalisation)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_torch_save(
        path,
        {
            "format_version": MODEL_FILE_VERSION,
            "space": space,
            "arch": arch,
            "shape": asdict(shape),
            "state_dict": state,
            "meta": meta,
        },
    )


def load_model_file(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network from a model file; returns (model in eval mode, the file's fields)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise UserError(f"{path}: no such model file (train one with `edgenas train`)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: not an edgenas model file ({str(exc).splitlines()[0]})") from None
    if not isinstance(blob, dict) or blob.get("format_version") != MODEL_FILE_VERSION:
        raise UserError(f"{path}: not an edgenas model file (format_version {MODEL_FILE_VERSION} expected)")
    space = get_space(blob["space"])
    shape = NetShape(**blob["shape"])
    model = space.build(space.parse(blob["arch"]), shape)
    model.load_state_dict(blob["state_dict"])
    return model.eval(), blob
