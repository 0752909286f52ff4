"""Distillation in the trainer, the capacity-conditioned teacher, generic-teacher training, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgenas.cli import run
from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.cost import count_params
from edgenas.distill.generic_teacher import CapacityCoder, GenericConfig, GenericTeacherPair, live_only
from edgenas.distill.kd import Distiller, KDConfig
from edgenas.distill.modes import load_teacher
from edgenas.distill.teacher_net import ConditionedTeacher
from edgenas.spaces.nb201 import EDGES, NB201Arch, NB201Network
from edgenas.train.model_file import load_model_file
from edgenas.train.trainer import TrainConfig, make_optimizer

SHAPE = NetShape(width=8, cells=1, in_channels=1, resolution=8, num_classes=10)
BIG = NB201Arch(("nor_conv_3x3",) * len(EDGES))
SMALL = NB201Arch.parse("|skip_connect~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|nor_conv_1x1~2|")


def test_a_fresh_conditioned_teacher_is_the_plain_one_and_the_code_changes_its_output() -> None:
    torch.manual_seed(0)
    teacher = ConditionedTeacher(BIG, SHAPE, film=True).eval()
    x = torch.randn(4, 1, 8, 8)
    plain = teacher(x)
    assert torch.equal(teacher(x, torch.tensor([0.5, -0.5])), plain)  # FiLM starts at identity
    with torch.no_grad():
        for p in teacher.film.parameters():
            p.normal_(0, 0.5)
    a, b = teacher(x, torch.tensor([1.0, 1.0])), teacher(x, torch.tensor([-1.0, -1.0]))
    assert not torch.allclose(a, b)
    assert torch.equal(teacher(x), plain)  # no code: the plain teacher


def test_capacity_code_spans_the_space_and_ignores_dead_edges() -> None:
    coder = CapacityCoder(SHAPE)
    assert torch.allclose(coder.code(BIG), torch.ones(2))
    small = coder.code(SMALL)
    assert (small > -1).all() and (small < 1).all()
    dead = NB201Arch.parse("|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_3x3~2|")
    assert live_only(dead).ops[2] == "none"  # 2<-1 reads the zero node 1
    assert torch.equal(coder.code(dead), coder.code(live_only(dead)))


def test_distiller_trains_the_student_only_and_with_zero_weights_is_cross_entropy() -> None:
    student = NB201Network(SMALL, SHAPE)
    teacher = ConditionedTeacher(BIG, SHAPE)
    d = Distiller(student, teacher, KDConfig(kd_weight=1.0, feature_weight=0.5, relational_weight=0.5))
    opt_params = {id(p) for g in make_optimizer(d, TrainConfig()).param_groups for p in g["params"]}
    assert not any(id(p) in opt_params for p in teacher.parameters())
    assert all(id(p) in opt_params for p in student.parameters())
    assert all(id(p) in opt_params for p in d.feature_kd.parameters())
    d.train()
    assert student.training and not teacher.training
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    d.loss(x, y).backward()
    assert all(p.grad is None for p in teacher.parameters())
    ce_only = Distiller(student, teacher, KDConfig(kd_weight=0.0))
    expected = torch.nn.functional.cross_entropy(student(x), y)
    assert torch.allclose(ce_only.loss(x, y), expected)


def test_kd_from_an_identical_teacher_adds_nothing() -> None:
    torch.manual_seed(1)
    student = NB201Network(BIG, SHAPE).eval()
    teacher = ConditionedTeacher(BIG, SHAPE)
    teacher.net.load_state_dict(student.state_dict())
    d = Distiller(student, teacher, KDConfig(kd_weight=1.0))
    d.student.eval()
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    assert torch.allclose(d.loss(x, y), torch.nn.functional.cross_entropy(student(x), y), atol=1e-6)


def test_generic_pair_moves_teacher_film_and_students_and_samples_by_step() -> None:
    torch.manual_seed(0)
    teacher = ConditionedTeacher(BIG, SHAPE, film=True)
    pair = GenericTeacherPair(teacher, GenericConfig(student_width=4), seed=0)
    assert pair.sample_student(7) == pair.sample_student(7)
    assert all(pair.sample_student(s).is_connected for s in range(20))
    assert len({str(pair.sample_student(s)) for s in range(20)}) > 10
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    pair.loss(x, y).backward()
    assert int(pair.step) == 1
    # the capacity code reaches the teacher with a real gradient (not one BN normalises away)
    assert teacher.film[-1].weight.grad.abs().max() > 1e-3
    assert teacher.net.stem[0].weight.grad.abs().sum() > 0
    assert pair.students.stem[0].weight.grad.abs().sum() > 0


def _digits(*extra: str) -> list[str]:
    return ["--dataset", "digits", "--epochs", "2", "--batch-size", "64", "--quiet", *extra]


def test_cli_generic_teacher_then_distill(tmp_path: Path) -> None:
    t = tmp_path / "teacher"
    assert run(["teacher", "--generic", "--width", "8", "--student-width", "4", "--run-dir", str(t), *_digits()]) == 0
    teacher, info = load_teacher(t / "model.pt")
    assert info["kind"] == "generic" and info["conditioning"] == "film-last-stage"
    assert info["students_sampled"] > 0 and info["student_shape"]["width"] == 4
    net, _ = load_model_file(t)  # still an ordinary model file (export, evaluate)
    assert count_params(net) == count_params(teacher.net)
    s = tmp_path / "student"
    student = str(SMALL)
    assert run(["distill", "--student", student, "--teacher", str(t / "model.pt"), "--width", "4",
                "--run-dir", str(s), *_digits()]) == 0  # fmt: skip
    model, blob = load_model_file(s)
    assert blob["meta"]["teacher_kind"] == "generic"
    code = CapacityCoder(NetShape(4, 1, 1, 8, 10)).code(SMALL)
    assert blob["meta"]["capacity_code"] == pytest.approx(code.tolist())
    assert count_params(model) == count_params(NB201Network(SMALL, NetShape(4, 1, 1, 8, 10)))


def test_distill_from_a_teacher_for_other_data_is_a_user_error(tmp_path: Path, capsys) -> None:
    t = tmp_path / "teacher"
    assert run(["teacher", "--width", "4", "--run-dir", str(t), *_digits("--resize", "12")]) == 0
    args = ["distill", "--student", str(SMALL), "--teacher", str(t), "--run-dir", str(tmp_path / "s"), *_digits()]
    assert run(args) == 2
    err = capsys.readouterr().err
    assert "teacher" in err and "(1, 12, 12)" in err
    assert not (tmp_path / "s").exists()
    with pytest.raises(ConfigError):
        from edgenas.distill.modes import build_for_mode

        build_for_mode(NB201Network(SMALL, SHAPE), {"teacher": str(t), "kd": {}}, SHAPE, 0)


def test_distill_needs_student_and_teacher(capsys) -> None:
    assert run(["distill", "--student", str(SMALL)]) == 2
    assert "--teacher" in capsys.readouterr().err


def test_generic_teacher_resumes_with_the_same_students(tmp_path: Path) -> None:
    from edgenas.core.errors import Interrupted
    from edgenas.train.train_arch import train_arch
    from edgenas.train.trainer import Trainer

    kw = {
        "dataset": "digits",
        "width": 4,
        "train": TrainConfig(epochs=2, batch_size=64, seed=1),
        "device": "cpu",
        "quiet": True,
        "command": "teacher",
        "generic": {"student_width": 4},
    }
    straight = train_arch(str(BIG), run_dir=tmp_path / "a", **kw)
    original = Trainer.save_checkpoint

    def stop_after_first(self: Trainer) -> None:
        original(self)
        raise KeyboardInterrupt

    Trainer.save_checkpoint = stop_after_first
    try:
        with pytest.raises(Interrupted, match="edgenas teacher --resume"):
            train_arch(str(BIG), run_dir=tmp_path / "b", **kw)
    finally:
        Trainer.save_checkpoint = original
    resumed = train_arch("", resume=tmp_path / "b", command="teacher", device="cpu", quiet=True)
    assert resumed["resumed_from_epoch"] == 1
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert a["meta"]["teacher"]["students_sampled"] == b["meta"]["teacher"]["students_sampled"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert resumed["test_accuracy"] == straight["test_accuracy"]
