"""How `train_arch` trains in each mode: plain, as a generic teacher, or distilling from a teacher.

A teacher file is an ordinary model file (`model.pt`: the teacher network's weights, so it
exports and evaluates like any model) whose meta holds a `teacher` entry: its kind
(plain / generic), its conditioning (`film-last-stage`: FiLM weights and the student shape whose
capacity codes it was trained on; `none`: no FiLM, it teaches as a plain teacher) and the
sampler's final distribution.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.distill.generic_teacher import CapacityCoder, GenericConfig, GenericTeacherPair, generic_loss_fn
from edgenas.distill.kd import Distiller, KDConfig, kd_loss_fn
from edgenas.distill.teacher_net import CONDITIONING, ConditionedTeacher
from edgenas.train.model_file import load_model_file

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def load_teacher(path: str | Path) -> tuple[ConditionedTeacher, dict[str, Any]]:
    """A teacher from a model file: any trained network of a space, or a generic teacher with its FiLM.

    The returned info holds the teacher's `space` (a generic teacher teaches students of that space).
    """
    net, blob = load_model_file(path)
    if not hasattr(net, "arch") or not hasattr(net, "features") or not hasattr(net, "head"):
        raise ConfigError(f"{path}: teachers are networks of a search space; this file holds a {type(net).__name__}")
    info = {**(blob["meta"].get("teacher") or {"kind": "plain"}), "space": blob["space"]}
    film = conditioned(info)
    teacher = ConditionedTeacher(net.arch, net.shape, film=film)
    teacher.net.load_state_dict(net.state_dict())
    if film:
        teacher.film.load_state_dict(info["film_state"])
    return teacher.eval(), info


def conditioned(info: dict[str, Any]) -> bool:
    """True for a teacher that takes the student's capacity code (a generic teacher with FiLM)."""
    return info["kind"] == "generic" and info.get("conditioning", CONDITIONING) != "none"


def teacher_for(path: str | Path, shape: NetShape) -> tuple[ConditionedTeacher, dict[str, Any]]:
    """`load_teacher`, refusing a teacher made for other inputs or classes than `shape`."""
    teacher, info = load_teacher(path)
    if teacher.shape.input_shape != shape.input_shape or teacher.shape.num_classes != shape.num_classes:
        raise ConfigError(
            f"teacher {path} takes {teacher.shape.input_shape} inputs and {teacher.shape.num_classes} "
            f"classes; this data has {shape.input_shape} and {shape.num_classes}"
        )
    return teacher, info


def check_student_space(path: str | Path, info: dict[str, Any], space: str) -> None:
    """A conditioned generic teacher knows the capacity of its own space's students only: refuse another space's."""
    if conditioned(info) and info["space"] != space:
        raise ConfigError(
            f"teacher {path} is a generic teacher of {info['space']} students; this student is of the "
            f"{space} space (distil from a plain teacher, or train a generic one with --space {space})"
        )


def build_for_mode(
    model: nn.Module, opts: dict[str, Any], shape: NetShape, seed: int
) -> tuple[nn.Module, LossFn | None, dict[str, Any]]:
    """(module the trainer trains, its loss hook or None for plain CE, meta for the model file)."""
    if opts.get("generic") is not None:
        cfg = GenericConfig.stored(opts["generic"])
        teacher = ConditionedTeacher(model.arch, shape, film=cfg.conditioning == "film")
        teacher.net.load_state_dict(model.state_dict())
        return GenericTeacherPair(teacher, cfg, seed), generic_loss_fn, {}
    if opts.get("teacher"):
        teacher, info = teacher_for(opts["teacher"], shape)
        code = None
        if conditioned(info):
            check_student_space(opts["teacher"], info, opts["space"])
            code = CapacityCoder(NetShape(**info["student_shape"]), info["space"]).code(model.arch)
        meta = {"distilled_from": str(opts["teacher"]), "teacher_kind": info["kind"], "kd": opts["kd"]}
        if code is not None:
            meta["capacity_code"] = code.tolist()
        return Distiller(model, teacher, KDConfig(**opts["kd"]), code), kd_loss_fn, meta
    return model, None, {}


def model_to_save(trained: nn.Module, opts: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The network that goes into model.pt, and its extra meta (a generic teacher keeps its FiLM)."""
    if isinstance(trained, GenericTeacherPair):
        t = trained.teacher
        info = {
            "kind": "generic",
            "conditioning": CONDITIONING if t.film is not None else "none",
            "student_shape": asdict(trained.students.shape),
            "generic": opts["generic"],
            "students_sampled": int(trained.step),
            "sampler": trained.sampler.describe(),
        }
        if t.film is not None:
            info["film_state"] = {k: v.detach().cpu() for k, v in t.film.state_dict().items()}
        return t.net, {"teacher": info}
    if isinstance(trained, Distiller):
        return trained.student, {}
    return trained, {}
