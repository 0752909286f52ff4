"""CDD: gates, compression budget, gradient resetting, removal, exact pruning, the retrieval command."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from edgenas.cli import run
from edgenas.core.errors import ConfigError, Interrupted, UserError
from edgenas.core.rundir import RunDir
from edgenas.cost import count_flops, count_params
from edgenas.tasks.retrieval import RetrievalOptions, make_options, run_retrieval
from edgenas.tasks.retrieval.cdd import CDDConfig, CDDController, CDDExperimental, reset_conflicts
from edgenas.tasks.retrieval.model import ResNetConfig, ResNetEmbed, load_embedding_model
from edgenas.tasks.retrieval.prune import max_output_diff, prune_gated
from edgenas.tasks.retrieval.stages import PruneStage, RetrievalHooks, TrainStage, stages_for
from edgenas.train.trainer import Trainer

TINY = ResNetConfig(in_channels=1, resolution=12, stem=4, widths=(6, 8), blocks=(2, 1), embed_dim=8, gated=True)
FASHION = Path("/usr/share/datasets/fashion-mnist")
SMALL_RUN = {
    "dataset": "fashion-mnist",
    "subset": 256,
    "test_subset": 200,
    "resize": 12,
    "widths": (8, 12),
    "blocks": (1, 1),
    "embed_dim": 16,
    "batch_size": 64,
    "latency_repeats": 5,
}


def _trained_gated(seed: int = 0) -> ResNetEmbed:
    """A gated net with random gates, some channels removed and non-trivial BN statistics."""
    torch.manual_seed(seed)
    m = ResNetEmbed(TINY)
    with torch.no_grad():
        for g in m.gates():
            g.gate.uniform_(0.1, 1.0)
            g.mask[torch.randperm(len(g.mask))[: len(g.mask) // 2]] = 0
    m.train()
    for _ in range(3):
        m(torch.randn(16, 1, 12, 12))
    return m.eval()


def test_gate_masking_silences_a_channel_and_open_gates_are_the_plain_net() -> None:
    torch.manual_seed(0)
    gated = ResNetEmbed(TINY).eval()
    plain = ResNetEmbed(TINY.with_inner(TINY.inner_widths(), gated=False)).eval()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if ".gate." not in k})
    x = torch.randn(4, 1, 12, 12)
    assert torch.equal(gated(x), plain(x))  # gates at 1, all alive: no effect
    block = gated.blocks[0]
    block.gate.mask[2] = 0
    before = gated(x)
    with torch.no_grad():
        block.conv1.weight[2].normal_()  # a removed channel's weights no longer matter
    assert torch.equal(gated(x), before)
    assert not torch.equal(before, plain(x))


def test_capacity_cost_is_exact_for_pruned_networks() -> None:
    m = _trained_gated()
    ctl = CDDController(m, CDDConfig(metric="params"), compression_steps=10)
    small = prune_gated(m)
    kept = ctl.kept()
    assert kept["params"] == pytest.approx(count_params(small) / ctl.cost.params, abs=1e-12)
    assert kept["flops"] == pytest.approx(count_flops(small, TINY.input_shape) / ctl.cost.flops, abs=1e-12)


def test_gradient_resetting_zeroes_compression_exactly_where_it_conflicts() -> None:
    task = torch.tensor([-1.0, 2.0, 0.0, -0.5])
    comp = torch.tensor([0.3, 0.3, 0.3, -0.2])
    assert torch.equal(reset_conflicts(task, comp), torch.tensor([0.0, 0.3, 0.3, -0.2]))

    torch.manual_seed(0)
    for reset in (True, False):
        m = ResNetEmbed(TINY)
        ctl = CDDController(m, CDDConfig(budget=0.3, reset=reset, conflict_ema=0.0), compression_steps=10)
        gate = ctl.gates[0].gate
        n = len(gate)
        # retrieval wants the even gates larger (negative gradient): a conflict with L1 shrinking them
        task_grad = torch.where(torch.arange(n) % 2 == 0, -0.01, 0.02)
        for g in ctl.gates:
            g.gate.grad = torch.zeros_like(g.gate)
        gate.grad = task_grad.clone()
        stats = ctl.add_compression_grad()
        push = ctl.lam * ctl.weights[0]  # d/dg of λ·w·|g| at g = 1
        even = torch.arange(n) % 2 == 0
        if reset:
            assert torch.equal(gate.grad[even], task_grad[even])  # compression removed exactly there
            assert stats["reset"] == int(even.sum())
        else:
            assert torch.allclose(gate.grad[even], task_grad[even] + push)
            assert stats["reset"] == 0
        assert torch.allclose(gate.grad[~even], task_grad[~even] + push)  # no conflict: pushed
        assert torch.allclose(ctl.gates[1].gate.grad, torch.full_like(ctl.gates[1].gate, ctl.lam * ctl.weights[1]))


def test_compression_stops_at_the_budget_and_removal_respects_threshold_and_budget() -> None:
    m = ResNetEmbed(TINY)
    ctl = CDDController(m, CDDConfig(budget=0.5, metric="flops", threshold=0.2), compression_steps=10)
    with torch.no_grad():
        ctl.gates[0].gate[:3] = 0.1  # under the threshold
    assert ctl.remove_below_threshold() == 3
    assert ctl.alive()[0] == TINY.inner_widths()[0] - 3
    assert ctl.remove_below_threshold() == 0  # nothing else is under it
    assert ctl.over_budget() and ctl.compression_loss().item() > 0
    ctl.enforce_budget()
    assert ctl.kept_share() <= 0.5 and min(ctl.alive()) >= 1
    assert ctl.compression_loss().item() == 0.0
    assert ctl.add_compression_grad() == {"reset": 0, "pushed": 0}


def test_pruning_keeps_outputs_and_makes_a_plain_smaller_network() -> None:
    m = _trained_gated()
    small = prune_gated(m)
    assert not small.cfg.gated and small.gates() == []
    assert list(small.cfg.inner) == [int(g.mask.sum()) for g in m.gates()]
    assert count_params(small) < count_params(m)
    assert max_output_diff(m, small, batch=16, seed=3) <= 1e-5
    reloaded = ResNetEmbed(ResNetConfig.from_dict(small.cfg.to_dict()))
    reloaded.load_state_dict(small.state_dict())  # a plain instance: rebuilt from its config alone


def test_bad_input_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--budget 1\.5: .*between 0 and 1"):
        run_retrieval(role="cdd", teacher="t.pt", budget=1.5, run_dir=tmp_path / "a")
    with pytest.raises(UserError, match=r"--teacher .*missing\.pt: no such model file"):
        run_retrieval(role="cdd", teacher=str(tmp_path / "missing.pt"), run_dir=tmp_path / "b")
    with pytest.raises(UserError, match="needs --teacher"):
        run_retrieval(role="cdd", run_dir=tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert run(["retrieval", "--teacher", str(tmp_path / "missing.pt")]) == 2
    assert run(["retrieval", "--budget", "1.5", "--teacher", "t.pt"]) == 2


# ------------------------------------------------------------------ real runs (small data)
@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not FASHION.is_dir():
        pytest.skip(f"Fashion-MNIST is not installed at {FASHION}")
    out = tmp_path_factory.mktemp("teacher") / "t"
    res = run_retrieval(role="teacher", epochs=2, finetune_epochs=0, run_dir=out, device="cpu", quiet=True, **SMALL_RUN)
    assert 0 < res["metrics"]["map"] <= 1
    return out / "model.pt"


CDD_RUN = {"role": "cdd", "budget": 0.4, "epochs": 2, "finetune_epochs": 1, "warmup_epochs": 0, **SMALL_RUN}


def test_a_short_cdd_run_gives_a_smaller_model_and_an_onnx_file(teacher_file: Path, tmp_path: Path) -> None:
    res = run_retrieval(teacher=str(teacher_file), run_dir=tmp_path / "cdd", device="cpu", quiet=True, **CDD_RUN)
    teacher, _ = load_embedding_model(teacher_file)
    student, _ = load_embedding_model(tmp_path / "cdd" / "model.pt")
    assert not student.cfg.gated
    assert res["params"] == count_params(student) < 0.45 * count_params(teacher)
    assert (tmp_path / "cdd" / "model.onnx").is_file() and res["onnx_max_abs_diff"] <= 1e-4
    assert res["prune_max_abs_diff"] <= 1e-5
    assert res["latency_ms"] > 0 and 0 <= res["metrics"]["map"] <= 1
    assert set(res["stages"]) == {"compress", "prune", "finetune", "evaluate", "export"}
    # the static-KD baseline takes the CDD student's size
    static = run_retrieval(
        role="static",
        teacher=str(teacher_file),
        student_like=str(tmp_path / "cdd" / "model.pt"),
        run_dir=tmp_path / "static",
        device="cpu",
        quiet=True,
        **{k: v for k, v in CDD_RUN.items() if k not in ("role", "budget", "warmup_epochs")},
    )
    assert static["params"] == res["params"] and static["inner"] == res["inner"]


@contextmanager
def _interrupted(stage: str, epochs_done: int, step: int | None = None) -> Iterator[None]:
    """Stop like a Ctrl-C in `stage`: with `step`, at that step of the epoch after `epochs_done`
    (mid-epoch); without, once `epochs_done` epochs are checkpointed."""
    save, after_step = Trainer.save_checkpoint, RetrievalHooks.after_step

    def save_then_maybe_stop(self: Trainer) -> None:
        save(self)
        if step is None and self.name == stage and self.epoch >= epochs_done:
            raise KeyboardInterrupt

    def step_then_maybe_stop(self: RetrievalHooks, trainer: Trainer, i: int) -> None:
        after_step(self, trainer, i)
        if step is not None and self.stage == stage and trainer.epoch == epochs_done and i == step:
            raise KeyboardInterrupt

    Trainer.save_checkpoint = save_then_maybe_stop  # type: ignore[method-assign]
    RetrievalHooks.after_step = step_then_maybe_stop  # type: ignore[method-assign]
    try:
        yield
    finally:
        Trainer.save_checkpoint = save  # type: ignore[method-assign]
        RetrievalHooks.after_step = after_step  # type: ignore[method-assign]


def _same_model(a: Path, b: Path) -> bool:
    sa = torch.load(a / "model.pt", weights_only=True)["state_dict"]
    sb = torch.load(b / "model.pt", weights_only=True)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    ("stage", "epochs_done", "step"),
    [("compress", 1, None), ("compress", 1, 1), ("finetune", 0, 1)],
    ids=["compress-after-epoch", "compress-mid-epoch", "finetune-mid-epoch"],
)
def test_resume_after_an_interruption_gives_the_same_model(
    teacher_file: Path, tmp_path: Path, stage: str, epochs_done: int, step: int | None
) -> None:
    opts = {"teacher": str(teacher_file), "device": "cpu", "quiet": True, **CDD_RUN, "epochs": 3, "warmup_epochs": 1}
    straight = run_retrieval(run_dir=tmp_path / "a", **opts)
    with _interrupted(stage, epochs_done, step), pytest.raises(Interrupted, match="edgenas retrieval --resume"):
        run_retrieval(run_dir=tmp_path / "b", **opts)
    assert not (tmp_path / "b" / "results.json").exists()
    ckpt = torch.load(tmp_path / "b" / f"ckpt-{stage}.pt", weights_only=False) if epochs_done else None
    if ckpt is not None:  # only the running epoch was lost, and CDD's state was kept with the rest
        assert ckpt["epoch"] == epochs_done
        assert set(ckpt.get("hooks", {})) == ({"gate_optimizer", "cdd"} if stage == "compress" else set())
    resumed = run_retrieval(resume=tmp_path / "b", device="cpu", quiet=True)
    assert resumed["stages"][stage].get("resumed_from_epoch") == (epochs_done or None)
    assert resumed["inner"] == straight["inner"]
    assert resumed["metrics"] == straight["metrics"]
    assert _same_model(tmp_path / "a", tmp_path / "b")
    events = [e["event"] for e in RunDir(tmp_path / "b").events()]
    assert events.count("interrupted") == 1 and events[-1] == "done"


def test_each_role_is_a_declared_list_of_stages() -> None:
    base = {"teacher": None, "student_like": None}
    cdd = stages_for(RetrievalOptions(role="cdd", epochs=4, finetune_epochs=2, lr=0.2, finetune_lr=0.02, **base))
    assert cdd == [
        TrainStage("compress", 4, 0.2, "onecycle", cdd=True),
        PruneStage(),
        TrainStage("finetune", 2, 0.02, "cosine"),
    ]
    assert [s.name for s in stages_for(RetrievalOptions(role="cdd", finetune_epochs=0, **base))] == [
        "compress",
        "prune",
    ]
    assert stages_for(RetrievalOptions(role="static", epochs=4, finetune_epochs=2, **base)) == [
        TrainStage("train", 6, 0.1, "onecycle")
    ]
    assert stages_for(RetrievalOptions(role="teacher", epochs=4, finetune_epochs=2, **base)) == [
        TrainStage("train", 4, 0.1, "onecycle")
    ]


def test_ablation_switches_sit_under_experimental_and_flat_keys_still_work(tmp_path: Path) -> None:
    assert CDDConfig(reset=False).experimental == CDDExperimental(reset=False)
    assert CDDConfig(experimental={"reset": False}) == CDDConfig(reset=False)
    assert CDDConfig(reset=True, experimental={"reset": True}).experimental.reset
    with pytest.raises(ValueError, match="reset is given twice"):
        CDDConfig(reset=True, experimental={"reset": False})
    # a run config written before the group existed (cdd.reset flat) still loads
    old = {"role": "cdd", "teacher": "t.pt", "cdd": {"budget": 0.3, "reset": False, "warmup_epochs": 0}}
    opts = RetrievalOptions(**old)
    assert opts.cdd.experimental.reset is False and opts.cdd.budget == 0.3
    assert "reset" not in opts.model_dump()["cdd"] and opts.model_dump()["cdd"]["experimental"] == {"reset": False}
    assert RetrievalOptions(**opts.model_dump(mode="json")) == opts  # today's config.yaml round-trips
    # the flat keyword of `edgenas retrieval --no-reset` (reset=False)
    teacher = tmp_path / "t.pt"
    teacher.write_bytes(b"")
    assert make_options(teacher=str(teacher), reset=False).cdd.experimental.reset is False
    assert make_options(teacher=str(teacher)).cdd.experimental.reset is True
    with pytest.raises(ConfigError, match="--reset"):
        make_options(teacher=str(teacher), reset="sometimes")


# ------------------------------------------------------------ run folders of older code
LEGACY = Path(__file__).parent / "fixtures" / "legacy_runs"
WRITTEN_AT = "/tmp/legacy_runs"  # where make_retrieval.py wrote them; the run configs point there


@pytest.mark.parametrize("name", ["retrieval-cdd-compress", "retrieval-cdd-finetune"])
def test_a_run_interrupted_by_the_code_before_the_shared_trainer_resumes(
    tmp_path: Path, name: str, monkeypatch
) -> None:
    """`ckpt-<stage>.pt` of the old `Stage` loop (commit 02491f0) load into the shared trainer with
    every tensor as saved (network, classifier, optimiser, CDD gates), and the run finishes.

    The resumed run is not compared with a fresh one: the epochs before the interruption ran on
    the machine that wrote the fixture, and another CPU's kernels round differently.
    (Same-machine exactness of resume is `test_resume_after_an_interruption_gives_the_same_model`.)
    """
    from edgenas.train.trainer import Trainer

    if not FASHION.is_dir():
        pytest.skip(f"Fashion-MNIST is not installed at {FASHION}")
    for sub in ("retrieval-teacher", name):
        shutil.copytree(LEGACY / sub, tmp_path / sub)
    config = tmp_path / name / "config.yaml"
    config.write_text(config.read_text().replace(WRITTEN_AT, str(tmp_path)))
    options = RunDir(tmp_path / name).read_config()["options"]
    assert options["cdd"]["reset"] is True  # the flat form of before `experimental`
    stage = "compress" if name.endswith("compress") else "finetune"
    old = torch.load(tmp_path / name / f"ckpt-{stage}.pt", weights_only=True)
    loaded: dict = {}
    real_load = Trainer.load_checkpoint

    def watched(self: Trainer) -> bool:
        done = real_load(self)
        if done and (path := self.checkpoint_path()) is not None and path.name == f"ckpt-{stage}.pt":
            loaded["model"] = {k: v.clone() for k, v in self.model.state_dict().items()}
            loaded["optimizer"] = copy.deepcopy(self.opt.state_dict())  # state tensors change in place later
            loaded["hooks"] = copy.deepcopy(self.hooks.state_dict())
        return done

    monkeypatch.setattr(Trainer, "load_checkpoint", watched)
    resumed = run_retrieval(resume=tmp_path / name, device="cpu", quiet=True)
    assert resumed["stages"][stage]["resumed_from_epoch"] == (2 if stage == "compress" else 1)
    saved = {f"net.{k}": v for k, v in old["model"].items()} | {
        f"classifier.{k}": v for k, v in old["classifier"].items()
    }
    assert loaded["model"].keys() == saved.keys()
    assert all(torch.equal(loaded["model"][k], saved[k]) for k in saved)
    _assert_same_tree(loaded["optimizer"], old["optimizer"])
    if old.get("cdd") is not None:
        _assert_same_tree(loaded["hooks"]["cdd"], old["cdd"])
    assert 0 <= resumed["metrics"]["map"] <= 1 and (tmp_path / name / "model.pt").is_file()


def _assert_same_tree(a, b) -> None:
    """Nested dicts/lists of tensors and plain values, equal leaf by leaf."""
    if isinstance(b, dict):
        assert a.keys() == b.keys()
        for k in b:
            _assert_same_tree(a[k], b[k])
    elif isinstance(b, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same_tree(x, y)
    elif isinstance(b, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


# ------------------------------------------------------------------ issue 22: open set, CDD paper
DIGITS_RUN = {
    "dataset": "digits",
    "subset": 320,
    "test_subset": 200,
    "widths": (8, 12),
    "blocks": (1, 1),
    "embed_dim": 16,
    "batch_size": 32,
    "latency_repeats": 5,
}


def test_open_set_split_never_leaks_a_test_identity_into_training() -> None:
    from edgenas.data.datasets import load_dataset
    from edgenas.tasks.retrieval.data import load_retrieval

    full = load_dataset("digits", seed=3, val_fraction=0.0)
    draws = set()
    for split_seed in range(4):
        d = load_retrieval("digits", seed=3, protocol="open", test_ids=4, split_seed=split_seed)
        held, kept = set(d.test_ids), set(d.train_ids)
        assert len(held) == 4 and len(kept) == 6 and not held & kept
        # every training image is of a kept identity (compare images: labels are renumbered 0..5)
        train_orig = torch.tensor(d.train_ids)[d.train.labels]
        assert not set(train_orig.tolist()) & held
        assert d.info.num_classes == 6 and set(d.train.labels.tolist()) == set(range(6))
        kept_rows = torch.isin(full.train.labels, torch.tensor(sorted(kept)))
        assert len(d.train) == int(kept_rows.sum())
        # no held-out image trained on (compared in pixel units: the open split renormalises)
        pixels = d.train.images * torch.tensor(d.std).view(1, -1, 1, 1) + torch.tensor(d.mean).view(1, -1, 1, 1)
        raw = full.train.images[kept_rows] * full.std[0] + full.mean[0]
        assert torch.allclose(pixels, raw, atol=1e-5)
        # nor its pixel statistics: mean/std are the training identities' alone
        assert d.mean[0] == pytest.approx(float(raw.double().mean()), abs=1e-6)
        assert d.std[0] == pytest.approx(float(raw.double().std(unbiased=False)), abs=1e-6)
        assert d.mean[0] != pytest.approx(full.mean[0], abs=1e-4)
        assert float(d.train.images.mean()) == pytest.approx(0.0, abs=1e-5)
        assert set(d.query.labels.tolist()) | set(d.gallery.labels.tolist()) <= held
        draws.add(d.test_ids)
        # the draw depends on split_seed only, not on the run's seed
        assert (
            load_retrieval("digits", seed=7, protocol="open", test_ids=4, split_seed=split_seed).test_ids == d.test_ids
        )
    assert len(draws) > 1
    closed = load_retrieval("digits", protocol="closed")
    assert closed.test_ids == () and closed.info.num_classes == 10


def test_pk_batches_hold_p_identities_of_k_images() -> None:
    from edgenas.data.base import Split
    from edgenas.tasks.retrieval.data import PKBatchLoader

    labels = torch.arange(60) % 6
    labels[:3] = 5  # uneven identities
    loader = PKBatchLoader(Split(torch.randn(60, 1, 4, 4), labels), 12, 4, seed=1)
    loader.set_epoch(2)
    batches = [y for _, y in loader]
    assert len(batches) == len(loader) == 5
    for y in batches:
        ids, counts = torch.unique(y, return_counts=True)
        assert len(ids) == 3 and counts.tolist() == [4, 4, 4]
    loader.set_epoch(2)
    assert all(torch.equal(a, b) for a, (_, b) in zip(batches, loader, strict=True))  # (seed, epoch) decides
    with pytest.raises(UserError, match="identities"):
        PKBatchLoader(Split(torch.randn(60, 1, 4, 4), labels), 32, 4)


def test_group_lasso_gradient_matches_hand_values_and_autograd() -> None:
    from edgenas.tasks.retrieval.cdd import group_lasso_grad

    w = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]]).view(3, 2, 1, 1)
    g = group_lasso_grad(w, 0.5).view(3, 2)
    assert torch.allclose(g, torch.tensor([[0.3, 0.4], [0.0, 0.0], [0.0, -0.5]]))
    v = torch.randn(5, 5, 1, 1, requires_grad=True)
    (0.004 * v.flatten(1).norm(dim=1).sum()).backward()
    assert torch.allclose(group_lasso_grad(v.detach(), 0.004), v.grad)


def test_neighbour_mask_on_a_constructed_batch() -> None:
    from edgenas.tasks.retrieval.cdd import neighbour_mask

    # bank: 3 teacher features over 4 channels; a sample's nearest neighbours are itself and the next
    bank = torch.tensor([[1.0, 1.0, 0.0, 0.1], [1.0, 0.9, 0.0, 0.2], [0.0, 0.0, 1.0, 1.0]])
    teacher = bank[:2]
    student = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 0.5]])
    # |t_nn · s| for both samples and both neighbours (bank rows 0 and 1): channel 2 is 0 and
    # channel 3 the next smallest every time, so {2, 3} is the intersection
    mask = neighbour_mask(student, teacher, bank, k=2, ratio=0.5)
    assert mask.tolist() == [False, False, True, True]
    # a sample whose neighbours weigh channels 2 and 3 empties the intersection
    student2 = torch.cat([student, torch.tensor([[0.1, 0.1, 5.0, 9.0]])])
    teacher2 = torch.cat([teacher, bank[2:]])
    assert neighbour_mask(student2, teacher2, bank, k=2, ratio=0.5).tolist() == [False, False, False, False]
    assert neighbour_mask(student, teacher, bank, k=1, ratio=0.25).tolist() == [False, False, True, False]
    assert not neighbour_mask(student, teacher, bank, k=2, ratio=0.0).any()


def test_neighbour_mask_equals_a_stable_sort_of_the_whole_bank_with_copied_rows() -> None:
    import torch.nn.functional as F

    from edgenas.tasks.retrieval.cdd import neighbour_mask

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(40, 6, generator=g)
    bank = torch.cat([feats, feats[:25], feats[10:]])  # the same images pushed again: tied rows
    for seed in range(20):
        g.manual_seed(seed)
        idx = torch.randint(0, 40, (8,), generator=g)
        teacher, student = feats[idx], torch.randn(8, 6, generator=g)
        for k, ratio in ((1, 0.5), (2, 0.5), (3, 0.34)):
            t, s, b = (F.normalize(v.double(), dim=1) for v in (teacher, student, bank))
            nn = torch.sort(t @ b.t(), dim=1, descending=True, stable=True).indices[:, :k]
            contrib = (b[nn] * s[:, None, :]).abs()
            low = torch.sort(contrib, dim=2, stable=True).indices[..., : int(6 * ratio)]
            want = torch.zeros_like(contrib, dtype=torch.bool).scatter_(2, low, True).flatten(0, 1).all(0)
            assert torch.equal(neighbour_mask(student, teacher, bank, k, ratio), want)


def _compactor_net(seed: int = 0) -> ResNetEmbed:
    torch.manual_seed(seed)
    net = ResNetEmbed(ResNetConfig(1, 12, 4, (6, 8), (2, 1), 8, compactor=True))
    for b in net.blocks:  # a trained-looking network: BN statistics and compactors away from init
        b.bn1.running_mean.uniform_(-1, 1)
        b.bn1.running_var.uniform_(0.5, 2)
        b.bn1.weight.data.uniform_(0.5, 2)
        b.bn1.bias.data.uniform_(-1, 1)
        b.compactor.conv.weight.data.normal_()
    return net


def test_compactor_removal_is_exact_and_identity_compactors_are_the_plain_net() -> None:
    from edgenas.tasks.retrieval.prune import merge_compactors

    net = _compactor_net()
    for b in net.blocks:
        b.compactor.conv.weight.data[::2] = 0.0  # rows the lasso drove to zero
        b.compactor.conv.weight.data[1] *= 1e-7  # and one under the threshold
    small = merge_compactors(net, 1e-5)
    assert small.cfg.inner == (2, 2, 3) and not small.cfg.compactor
    assert max_output_diff(net, small) <= 1e-5
    assert count_params(small) < count_params(net)
    # identity compactors compute the network without them
    fresh = ResNetEmbed(ResNetConfig(1, 12, 4, (6, 8), (2, 1), 8, compactor=True))
    plain = ResNetEmbed(fresh.cfg.with_inner(fresh.cfg.inner_widths()))
    plain.load_state_dict(fresh.state_dict(), strict=False)
    assert max_output_diff(fresh, plain) == 0.0


def test_phase_switch_resets_the_task_gradient_only_after_the_full_capacity_epochs() -> None:
    from types import SimpleNamespace

    from edgenas.tasks.retrieval.cdd import CompactorController, group_lasso_grad

    net = _compactor_net()
    opts = make_options(role="teacher", variant="paper", lasso=0.1)
    ctrl = CompactorController(net, opts.cdd)
    comp = net.compactors()[0]
    comp.grad_mask[:3] = 0.0
    hooks = RetrievalHooks("compress", opts, None, ctrl, full_epochs=2)
    for epoch, resetting in ((0, False), (1, False), (2, True), (3, True)):
        hooks.before_epoch(SimpleNamespace(epoch=epoch))  # type: ignore[arg-type]
        assert hooks.compress is resetting
        task = torch.randn_like(comp.conv.weight)
        comp.conv.weight.grad = task.clone()
        hooks.after_backward(None, 0)  # type: ignore[arg-type]
        lasso = group_lasso_grad(comp.conv.weight.detach(), 0.1)
        kept = task * (comp.grad_mask.view(-1, 1, 1, 1) if resetting else 1.0)
        assert torch.allclose(comp.conv.weight.grad, kept + lasso)
    assert opts.cdd.full_capacity_epochs(120) == 20 and opts.cdd.threshold == 1e-5


@pytest.fixture(scope="module")
def digits_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dteacher") / "t"
    run_retrieval(role="teacher", epochs=2, run_dir=out, device="cpu", quiet=True, **DIGITS_RUN)
    return out / "model.pt"


PAPER_RUN = {
    "role": "cdd",
    "variant": "paper",
    "epochs": 3,
    "full_epochs": 1,
    "lasso": 0.5,
    "threshold": 0.8,
    "bank_size": 100,
    **DIGITS_RUN,
}


def test_a_paper_cdd_run_starts_as_the_teacher_and_removes_channels_exactly(
    digits_teacher: Path, tmp_path: Path
) -> None:
    teacher, blob = load_embedding_model(digits_teacher)
    assert blob["meta"]["test_ids"] and "classifier" in blob
    res = run_retrieval(teacher=str(digits_teacher), run_dir=tmp_path / "p", device="cpu", quiet=True, **PAPER_RUN)
    opts = res["options"]
    assert opts["init"] == "teacher" and opts["finetune_epochs"] == 0 and opts["rkd_weight"] == 0
    assert opts["cdd"]["kl_weight"] == 1 and opts["cdd"]["feature_weight"] == 0.5
    assert set(res["stages"]) == {"compress", "prune", "evaluate", "export"}
    hist = res["stages"]["compress"]["history"]
    assert [h["phase"] for h in hist] == ["full-capacity", "reset", "reset"]
    assert sum(res["reset_channels"]) > 0
    assert res["params"] < count_params(teacher) and 0 < res["params_reduction"] < 1
    assert res["inner"] == hist[-1]["alive"]
    with pytest.raises(ConfigError, match="held out"):
        run_retrieval(teacher=str(digits_teacher), run_dir=tmp_path / "x", split_seed=5, **PAPER_RUN)
    assert not (tmp_path / "x").exists()


def test_init_teacher_computes_the_teacher(digits_teacher: Path) -> None:
    from edgenas.tasks.retrieval.api import _init_model

    teacher, _ = load_embedding_model(digits_teacher)
    cfg = teacher.cfg.with_inner(teacher.cfg.inner_widths(), compactor=True)
    student, _ = _init_model(cfg, 6, 0, (teacher, None))
    assert max_output_diff(teacher, student) == 0.0


@pytest.mark.parametrize(("epochs_done", "step"), [(1, None), (1, 2)], ids=["after-epoch", "mid-epoch"])
def test_a_paper_cdd_run_resumes_bit_exactly(digits_teacher: Path, tmp_path: Path, epochs_done: int, step) -> None:
    opts = {"teacher": str(digits_teacher), "device": "cpu", "quiet": True, **PAPER_RUN}
    straight = run_retrieval(run_dir=tmp_path / "a", **opts)
    with _interrupted("compress", epochs_done, step), pytest.raises(Interrupted):
        run_retrieval(run_dir=tmp_path / "b", **opts)
    ckpt = torch.load(tmp_path / "b" / "ckpt-compress.pt", weights_only=False)
    assert ckpt["epoch"] == epochs_done and set(ckpt["hooks"]) == {"cdd"}
    resumed = run_retrieval(resume=tmp_path / "b", device="cpu", quiet=True)
    assert resumed["stages"]["compress"]["resumed_from_epoch"] == epochs_done
    assert resumed["inner"] == straight["inner"] and resumed["metrics"] == straight["metrics"]
    assert _same_model(tmp_path / "a", tmp_path / "b")


def test_runs_made_before_the_open_protocol_resume_as_closed_set() -> None:
    opts = RetrievalOptions(**{"protocol": "closed", **{"role": "teacher"}})
    assert opts.protocol == "closed" and make_options(role="teacher").protocol == "open"


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "streamed"])
def test_open_set_holds_out_whole_identity_folders(tmp_path: Path, in_memory: bool) -> None:
    from PIL import Image

    from edgenas.data.base import make_loader
    from edgenas.tasks.retrieval.data import load_retrieval

    for ident in range(6):  # every image's grey level says whose it is: 40·id + j
        (tmp_path / f"id{ident}").mkdir()
        for j in range(6):
            Image.fromarray(np.full((8, 8), 40 * ident + j, dtype=np.uint8)).save(tmp_path / f"id{ident}" / f"{j}.png")
    d = load_retrieval("folder", tmp_path, protocol="open", test_ids=2, split_seed=1, in_memory=in_memory)

    def owners(split) -> set[int]:
        x = torch.cat([xb for xb, _ in make_loader(split, 64)])
        grey = (x[:, 0, 0, 0] * d.std[0] + d.mean[0]) * 255
        return {int(v) // 40 for v in grey.round().tolist()}

    held = set(d.test_ids)
    assert len(held) == 2 and owners(d.train) == set(d.train_ids) and not owners(d.train) & held
    assert owners(d.query) | owners(d.gallery) == held
