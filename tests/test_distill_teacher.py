"""Distillation in the trainer, the capacity-conditioned teacher, generic-teacher training, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def straight_uniform_probabilities() -> list[list[float]]:
    """The sampler's distribution before any update (uniform over every edge's ops)."""
    from edgenas.distill.student_sampler import StudentSampler
    from edgenas.spaces import get_space

    return StudentSampler(get_space("nb201"), "learned", seed=0).describe()["probabilities"]


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


@pytest.mark.parametrize("conditioning", ["film", "none"])
def test_generic_teacher_resumes_with_the_same_students(tmp_path: Path, conditioning: str) -> None:
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
        "generic": {"student_width": 4, "conditioning": conditioning},  # learned sampler, balanced μ
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
    assert a["meta"]["teacher"]["sampler"] == b["meta"]["teacher"]["sampler"]  # the learned distribution too
    assert a["meta"]["teacher"]["sampler"]["probabilities"] != straight_uniform_probabilities()
    logits = [torch.load(tmp_path / r / "checkpoint.pt", weights_only=True)["model"]["sampler.logits"] for r in "ab"]
    assert torch.equal(*logits)  # the sampler's state is in the checkpoint
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert resumed["test_accuracy"] == straight["test_accuracy"]


# -- issue 22: conditioning none, the learnable student sampler, the balanced KD-awareness weight --


def test_the_sampler_follows_the_architecture_loss_on_a_constructed_case() -> None:
    from edgenas.distill.student_sampler import Draw, StudentSampler
    from edgenas.spaces import get_space

    space = get_space("nb201")
    pool = [BIG, SMALL]
    sampler = StudentSampler(space, "learned", seed=0, pool=pool, lr=0.1, entropy_weight=0.0)
    first, second = Draw(BIG, np.array([0]), np.ones(1, bool)), Draw(SMALL, np.array([1]), np.ones(1, bool))
    sampler.update(first, 2.0)  # the first loss only starts the baseline
    assert torch.equal(sampler.logits, torch.zeros(1, 2, dtype=torch.float64))
    sampler.update(second, 1.0)  # baseline 2, variance 0: still no advantage
    assert torch.equal(sampler.logits, torch.zeros(1, 2, dtype=torch.float64))
    mean, var = float(sampler.loss_mean), float(sampler.loss_var)
    assert (mean, var) == pytest.approx((1.9, 0.1))
    sampler.update(first, 2.0)  # A = (2 - 1.9)/sqrt(0.1); ∇log p = e_0 - π = (0.5, -0.5)
    a = (2.0 - 1.9) / np.sqrt(0.1)
    assert sampler.logits.flatten().tolist() == pytest.approx([0.1 * a * 0.5, -0.1 * a * 0.5])
    for _ in range(30):  # the student the teacher fits worst is drawn more often
        sampler.update(second, 1.0)
        sampler.update(first, 2.0)
    assert sampler.probabilities()[0, 0] > 0.7
    # the entropy bonus is the exact gradient of Σ H, and pulls a skewed distribution back toward uniform
    logits = torch.tensor([[1.0, -0.5, 0.2, 0.0, 0.3]], dtype=torch.float64, requires_grad=True)
    p = torch.softmax(logits, 1)
    (-(p * p.log()).sum()).backward()
    flat = StudentSampler(space, "learned", seed=0, lr=1.0, entropy_weight=1.0)
    flat.logits.copy_(logits.detach().expand_as(flat.logits))
    assert torch.allclose(flat.entropy_gradient()[0], logits.grad[0])
    before = flat.probabilities()[0].max()
    flat.update(Draw(BIG, space.encode(BIG), np.ones(len(EDGES), bool)), 1.0)  # first update: no advantage
    assert flat.probabilities()[0].max() < before


def test_learned_draws_are_students_of_the_supernet_or_of_the_pool_and_a_function_of_step() -> None:
    from edgenas.distill.student_sampler import StudentSampler
    from edgenas.spaces import get_space

    space = get_space("nb201")
    sampler = StudentSampler(space, "learned", seed=3)
    draws = [sampler.draw(s) for s in range(30)]
    assert all(d.arch.is_connected and space.encode(d.arch).tolist() == d.index.tolist() for d in draws)
    assert sampler.draw(5).arch == draws[5].arch and len({str(d.arch) for d in draws}) > 20
    pooled = StudentSampler(space, "uniform", seed=3, pool=[BIG, SMALL])
    assert {str(pooled.draw(s).arch) for s in range(20)} == {str(BIG), str(SMALL)}
    darts = get_space("darts")
    d = StudentSampler(darts, "learned", seed=0).draw(0)  # two inputs per node, never `none` on a kept one
    assert darts.decode(d.index) == d.arch and d.learned.sum() == 2 * len(darts.node_points())


def test_balanced_weight_gives_the_awareness_term_mu_times_the_gradient_norm_of_ce() -> None:
    from edgenas.distill.generic_teacher import balance_scale
    from edgenas.distill.losses import hinton_kd

    torch.manual_seed(0)
    t = torch.randn(16, 10, requires_grad=True)
    s, y = torch.randn(16, 10), torch.randint(0, 10, (16,))
    (g_ce,) = torch.autograd.grad(torch.nn.functional.cross_entropy(t, y), t)
    for temp in (1.0, 4.0):
        w = 0.5 * balance_scale(t, s, y, temp)
        (g_kd,) = torch.autograd.grad(w * hinton_kd(t, s, temp), t)
        assert float(g_kd.norm()) == pytest.approx(0.5 * float(g_ce.norm()), rel=1e-4)


def test_older_generic_runs_read_back_with_their_old_behaviour() -> None:
    cfg = GenericConfig.stored({"student_width": 8, "student_cells": 1, "mu": 0.1, "temperature": 4.0})
    assert (cfg.conditioning, cfg.mu_mode, cfg.sampler, cfg.pool, cfg.mu) == ("film", "fixed", "uniform", None, 0.1)
    new = GenericConfig()
    assert (new.conditioning, new.mu_mode, new.sampler) == ("film", "balanced", "learned")
    assert GenericConfig.stored(new.model_dump()) == new


def test_cli_generic_teacher_without_conditioning_teaches_as_a_plain_one(tmp_path: Path) -> None:
    pool = tmp_path / "pool.txt"
    pool.write_text(f"# two students\n{SMALL}\n\n{BIG}\n")
    t = tmp_path / "teacher"
    args = ["--generic", "--conditioning", "none", "--pool", str(pool), "--width", "8", "--student-width", "4"]
    assert run(["teacher", *args, "--run-dir", str(t), *_digits("--epochs", "1")]) == 0
    teacher, info = load_teacher(t / "model.pt")
    assert teacher.film is None and info["conditioning"] == "none" and "film_state" not in info
    assert info["generic"]["pool"] == [str(SMALL), str(BIG)] and info["sampler"]["mode"] == "learned"
    assert len(info["sampler"]["probabilities"][0]) == 2
    net, _ = load_model_file(t)
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(teacher(x), net.eval()(x))  # the file's network is the whole teacher
    s = tmp_path / "student"
    assert run(["distill", "--student", str(SMALL), "--teacher", str(t / "model.pt"), "--width", "4",
                "--run-dir", str(s), *_digits("--epochs", "1")]) == 0  # fmt: skip
    _, blob = load_model_file(s)
    assert blob["meta"]["teacher_kind"] == "generic" and "capacity_code" not in blob["meta"]


def test_cli_refuses_a_bad_conditioning_and_a_bad_pool_in_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        run(["teacher", "--generic", "--conditioning", "both"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--conditioning" in err and "'both'" in err
    bad = ["teacher", "--generic", "--pool", "|nor_conv_3x3~0|+|", "--run-dir", str(tmp_path / "t"), *_digits()]
    assert run(bad) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not (tmp_path / "t").exists()
