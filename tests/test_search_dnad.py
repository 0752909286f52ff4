"""DNAD (SNPS): entropy loss, adaptive coefficient, deletion, live FLOPs, Pareto/hypervolume, search, resume, CLI."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from edgenas.cli import run
from edgenas.core.errors import ConfigError, Interrupted, UserError
from edgenas.core.space import NetShape
from edgenas.cost import count_flops, count_params
from edgenas.search.methods.dnad import (
    SNPSConfig,
    SNPSSearch,
    adapt_coefficient,
    auto_levels,
    binary_entropy,
    costliest_arch,
    deletion_step,
    flops_pressure,
    live_flops,
    live_points,
    metered_coefficient,
    reading_tolerance,
    sparsity_entropy,
    strongest_arch,
    target_flops,
    target_live,
)
from edgenas.search.pareto import hypervolume_2d, pareto_front
from edgenas.search.run import resume_search, search
from edgenas.spaces.nb201 import EDGES, OPS, NB201Arch, NB201Network, NB201Space
from edgenas.spaces.nb201.cost_terms import flops_terms
from edgenas.spaces.nb201.supernet import NB201SuperNet

SHAPE = NetShape(width=8, cells=1, in_channels=1, resolution=12, num_classes=10)
CONV3, CONV1, SKIP, POOL = (OPS.index(o) for o in ("nor_conv_3x3", "nor_conv_1x1", "skip_connect", "avg_pool_3x3"))
NONE = OPS.index("none")
NB201 = NB201Space()
# A short search that does shrink: a fast θ optimiser, an early threshold, a short patience.
FAST = {"epochs": 4, "warmup_epochs": 1, "batch_size": 64, "search_width": 4, "k": 2, "alpha_lr": 0.3,
        "lambda_init": 5.0, "delete_threshold": 0.2, "delete_patience": 2, "bn_batches": 2, "auto_levels": 6,
        "eval_images": 300}  # fmt: skip


def all_alive() -> torch.Tensor:
    alive = torch.ones(len(EDGES), len(OPS), dtype=torch.bool)
    alive[:, NONE] = False
    return alive


# -- sparsity entropy, schedule, coefficient ------------------------------------------------
def test_sparsity_entropy_matches_a_hand_computed_value() -> None:
    alive = torch.zeros(len(EDGES), len(OPS), dtype=torch.bool)
    alive[0, [SKIP, CONV1, CONV3]] = True
    att = torch.zeros(len(EDGES), len(OPS))
    att[0, [SKIP, CONV1, CONV3]] = torch.tensor([0.5, 0.25, 0.25])
    # p = (0.5, 0.25, 0.25): H = -(0.5 ln 0.5 + 2 · 0.25 ln 0.25) = 1.0397, / ln 3
    expected = (0.5 * math.log(2) + 0.5 * math.log(4)) / math.log(3)
    assert sparsity_entropy(att, alive, "cell").item() == pytest.approx(expected, rel=1e-6)
    assert sparsity_entropy(att, alive, "edge").item() == pytest.approx(expected, rel=1e-6)
    # a second edge with two equal ops: entropy 1 there; "edge" averages, "cell" pools all five
    alive[1, [SKIP, POOL]] = True
    att[1, [SKIP, POOL]] = 0.5
    assert sparsity_entropy(att, alive, "edge").item() == pytest.approx((expected + 1.0) / 2, rel=1e-6)
    p = torch.tensor([0.5, 0.25, 0.25, 0.5, 0.5]) / 2.0
    assert sparsity_entropy(att, alive, "cell").item() == pytest.approx(
        float(-(p * p.log()).sum() / math.log(5)), rel=1e-6
    )
    # of="logits": the same p from θ = log(a), softmax instead of a/Σa
    assert sparsity_entropy(att.clamp_min(1e-9).log(), alive, "edge", of="logits").item() == pytest.approx(
        (expected + 1.0) / 2, rel=1e-6
    )


def test_sparsity_entropy_pushes_the_weaker_ops_down() -> None:
    alive = all_alive()
    theta = torch.zeros(len(EDGES), len(OPS))
    theta[:, CONV3] = 1.0  # conv3 is the strong op of every edge
    theta.requires_grad_(True)
    for of in ("weights", "logits"):
        theta.grad = None
        values = torch.sigmoid(theta) * alive if of == "weights" else theta
        sparsity_entropy(values, alive, "cell", of=of).backward()
        g = theta.grad
        assert (g[:, CONV3] < 0).all()  # gradient descent raises the strong op ...
        assert (g[:, [SKIP, CONV1, POOL]] > 0).all()  # ... and lowers the weak ones
        assert (g[:, NONE] == 0).all()  # dead ops get nothing
    # why logits is the default: saturated sigmoids look equal and pass no gradient
    sat = torch.full((len(EDGES), len(OPS)), 8.0, requires_grad=True)
    with torch.no_grad():
        sat[:, CONV3] = 12.0
    sparsity_entropy(torch.sigmoid(sat) * alive, alive, "cell").backward()
    assert sat.grad.abs().max() < 1e-4
    sat.grad = None
    sparsity_entropy(sat, alive, "cell", of="logits").backward()
    assert sat.grad[:, [SKIP, CONV1, POOL]].min() > 1e-3


def test_binary_entropy_is_one_at_half_and_pushes_away_from_it() -> None:
    alive = torch.zeros(len(EDGES), len(OPS), dtype=torch.bool)
    alive[0, [SKIP, CONV3]] = True
    att = torch.zeros(len(EDGES), len(OPS))
    att[0, [SKIP, CONV3]] = torch.tensor([0.5, 0.25])
    h25 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) / math.log(2)  # 0.8113
    assert binary_entropy(att, alive).item() == pytest.approx((1.0 + h25) / 2, rel=1e-5)
    theta = torch.tensor([-1.0, 2.0], requires_grad=True)
    binary_entropy(torch.sigmoid(theta), torch.ones(2, dtype=torch.bool)).backward()
    assert theta.grad[0] > 0 and theta.grad[1] < 0  # descent: the low weight down, the high one up


def test_schedule_and_adaptive_coefficient_move_the_right_way() -> None:
    assert target_live(0.0, 24, 2) == 24 and target_live(1.0, 24, 2) == 2 and target_live(0.5, 24, 2) == 13
    assert adapt_coefficient(1.0, live=20, target=13, rate=0.1, lo=0.01, hi=10) == pytest.approx(math.exp(0.1))
    assert adapt_coefficient(1.0, live=10, target=13, rate=0.1, lo=0.01, hi=10) == pytest.approx(math.exp(-0.1))
    assert adapt_coefficient(1.0, live=13, target=13, rate=0.1, lo=0.01, hi=10) == 1.0
    assert adapt_coefficient(9.9, live=20, target=13, rate=0.1, lo=0.01, hi=10) == 10  # clipped
    assert target_flops(0.0, 20e6, 4e6) == 20e6 and target_flops(1.0, 20e6, 4e6) == 4e6
    assert target_flops(0.25, 20e6, 4e6) == pytest.approx(16e6) and target_flops(2.0, 20e6, 4e6) == 4e6


def test_flops_schedule_meters_deletions_one_level_at_a_time() -> None:
    """Ops that sink together die when the schedule reaches them; free (0-FLOPs) ones at once."""
    terms = flops_terms(SHAPE)
    alive, under = all_alive(), torch.zeros(len(EDGES), len(OPS), dtype=torch.long)
    att = torch.full((len(EDGES), len(OPS)), 0.8) * alive
    for e in (1, 3):  # two 3x3 convs and a pool sink together
        att[e, CONV3] = 0.01
    att[4, POOL] = 0.01
    target = {"now": live_flops(alive, terms)}

    def allow(now: torch.Tensor, after: torch.Tensor) -> bool:
        f_now, f_after = live_flops(now, terms), live_flops(after, terms)
        return f_after >= f_now or f_now > target["now"]

    deletion_step(att, alive, under, 0.05, 2, True, allow, space=NB201)
    assert deletion_step(att, alive, under, 0.05, 2, True, allow, space=NB201) == [(4, POOL)]  # free: not held back
    target["now"] -= 1.0  # the schedule moves a little below the supernet: one conv may go
    assert deletion_step(att, alive, under, 0.05, 2, True, allow, space=NB201) == [(1, CONV3)]
    assert alive[3, CONV3] and under[3, CONV3] == 3  # held, still counting
    assert deletion_step(att, alive, under, 0.05, 2, True, allow, space=NB201) == []
    target["now"] = 0.0
    assert deletion_step(att, alive, under, 0.05, 2, True, allow, space=NB201) == [(3, CONV3)]


# -- deletion ---------------------------------------------------------------------------------
def test_deletion_needs_patience_and_a_deleted_op_never_returns() -> None:
    alive, under = all_alive(), torch.zeros(len(EDGES), len(OPS), dtype=torch.long)
    att = torch.full((len(EDGES), len(OPS)), 0.8) * alive
    att[2, POOL] = 0.01
    assert deletion_step(att, alive, under, 0.05, 3, True, space=NB201) == []
    assert deletion_step(att, alive, under, 0.05, 3, True, space=NB201) == []
    att[2, POOL] = 0.5  # back above the threshold: the count restarts
    assert deletion_step(att, alive, under, 0.05, 3, True, space=NB201) == [] and under[2, POOL] == 0
    att[2, POOL] = 0.01
    for _ in range(2):
        assert deletion_step(att, alive, under, 0.05, 3, True, space=NB201) == []
    assert deletion_step(att, alive, under, 0.05, 3, True, space=NB201) == [(2, POOL)]
    assert not alive[2, POOL]
    att[2, POOL] = 0.99  # whatever the weight does now, the op stays deleted
    for _ in range(5):
        deletion_step(att, alive, under, 0.05, 3, True, space=NB201)
    assert not alive[2, POOL] and int(alive.sum()) == 23


def test_deletion_keeps_the_cell_connected() -> None:
    alive = torch.zeros(len(EDGES), len(OPS), dtype=torch.bool)
    alive[3, SKIP] = True  # the only path: 0 -> 3
    alive[1, CONV1] = True  # 0 -> 2 leads nowhere (2 -> 3 is dead)
    under = torch.zeros(len(EDGES), len(OPS), dtype=torch.long)
    att = alive.float() * 0.01
    deleted = deletion_step(att, alive, under, 0.05, 1, keep_connected=True, space=NB201)
    assert deleted == [(1, CONV1)]  # the dangling op goes, the last path stays
    assert alive[3, SKIP] and live_points(alive, NB201) == [3]
    assert deletion_step(att, alive, under, 0.05, 1, keep_connected=False, space=NB201) == [(3, SKIP)]


def test_metered_coefficient_holds_while_refused_ops_wait_ahead_of_the_schedule() -> None:
    args = (0.02, 1e-3, 100.0)
    # ahead of the schedule (live < target) with ops waiting: held, not lowered
    assert metered_coefficient(1.0, 5.0, 6.0, True, True, *args) == 1.0
    # nothing waiting, or the hold off: lowered as the spec's adaptive coefficient does
    assert metered_coefficient(1.0, 5.0, 6.0, False, True, *args) == pytest.approx(math.exp(-0.02))
    assert metered_coefficient(1.0, 5.0, 6.0, True, False, *args) == pytest.approx(math.exp(-0.02))
    # behind the schedule: raised either way
    assert metered_coefficient(1.0, 7.0, 6.0, True, True, *args) == pytest.approx(math.exp(0.02))


def test_flops_pressure_presses_each_op_by_its_share_of_the_live_flops() -> None:
    terms = flops_terms(SHAPE)
    weights = torch.as_tensor(terms.weights, dtype=torch.float32)
    alive = all_alive()
    theta = torch.zeros(len(EDGES), len(OPS), requires_grad=True)
    att = torch.sigmoid(theta) * alive
    f = flops_pressure(att, alive, weights)
    live_w = weights[alive]
    assert f.item() == pytest.approx(0.5, rel=1e-6)  # every weight at 0.5: half the live FLOPs
    (grad,) = torch.autograd.grad(f, [theta])
    # d/dθ = σ'(0) · FLOPs(op) / Σ live FLOPs: a 3×3 conv pressed ~9× a 1×1, free ops and dead ones not at all
    assert grad[0, CONV3].item() == pytest.approx(0.25 * weights[0, CONV3].item() / live_w.sum().item(), rel=1e-5)
    assert grad[0, CONV3] > 5 * grad[0, CONV1] > 0
    assert grad[0, SKIP] == 0 and grad[0, POOL] == 0 and grad[0, NONE] == 0
    alive[0, CONV3] = False  # a deleted op leaves the denominator: the rest are pressed harder
    (g2,) = torch.autograd.grad(flops_pressure(torch.sigmoid(theta) * alive, alive, weights), [theta])
    assert g2[0, CONV3] == 0 and g2[1, CONV3] > grad[1, CONV3]


# -- exact live FLOPs, snapshot arch ------------------------------------------------------------
def test_live_flops_is_the_exact_flops_of_the_live_multi_op_cell() -> None:
    terms = flops_terms(SHAPE)
    alive = all_alive()
    alive[0, CONV3] = alive[4, CONV1] = alive[5, SKIP] = False
    net = NB201SuperNet(SHAPE, k=1)  # k=1: every op at full width, as deployed
    net.alive.copy_(alive)
    ones = torch.ones(len(EDGES), len(OPS))
    assert live_flops(alive, terms) == count_flops(_Fixed(net, ones), SHAPE.input_shape)
    # only edge 3 (0 -> 3) live, plus ops on 2 -> 1 ... 3 <- 1 that no path reaches: they cost nothing
    alive = torch.zeros(len(EDGES), len(OPS), dtype=torch.bool)
    alive[3, CONV3] = alive[2, CONV1] = True  # edge 2 (2 <- 1) reads node 1, which nothing feeds
    assert live_points(alive, NB201) == [3]
    only = NB201Network(NB201Arch(("none", "none", "none", "nor_conv_3x3", "none", "none")), SHAPE)
    assert live_flops(alive, terms) == count_flops(only, SHAPE.input_shape)


class _Fixed(torch.nn.Module):
    """The supernet with fixed op weights, as a plain module for the FLOP counter."""

    def __init__(self, net: NB201SuperNet, weights: torch.Tensor) -> None:
        super().__init__()
        self.net, self.weights = net, weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.weights)


def test_strongest_arch_and_auto_levels() -> None:
    alive = all_alive()
    alive[5] = False  # edge 5 fully deleted -> "none"
    att = torch.rand(len(EDGES), len(OPS), generator=torch.Generator().manual_seed(0)) * alive
    att[0, POOL] = 2.0
    arch = strongest_arch(att, alive, NB201)
    assert arch.ops[0] == "avg_pool_3x3" and arch.ops[5] == "none" and "none" not in arch.ops[:5]
    levels = auto_levels(100.0, 10.0, 3)
    assert levels == pytest.approx([10 * 10**0.75, 10 * 10**0.5, 10 * 10**0.25])


def test_costliest_arch_follows_the_deletions_down_in_flops() -> None:
    weights = flops_terms(SHAPE).weights
    alive = all_alive()
    assert costliest_arch(alive, weights, NB201).ops == ("nor_conv_3x3",) * len(EDGES)
    last = count_flops(NB201Network(costliest_arch(alive, weights, NB201), SHAPE), SHAPE.input_shape)
    for op in (CONV3, CONV1, POOL, SKIP):  # delete op by op on edge 2: 3×3 → 1×1 → a free op → none
        alive[2, op] = False
        arch = costliest_arch(alive, weights, NB201)
        flops = count_flops(NB201Network(arch, SHAPE), SHAPE.input_shape)
        assert flops <= last
        last = flops
    assert arch.ops[2] == "none" and arch.ops[0] == "nor_conv_3x3"
    alive[0, CONV3] = False
    assert costliest_arch(alive, weights, NB201).ops[0] == "nor_conv_1x1"


# -- Pareto and hypervolume ---------------------------------------------------------------------
def test_pareto_front_and_hypervolume_on_hand_made_points() -> None:
    flops = [1.0, 2.0, 3.0, 4.0, 2.0]
    acc = [0.5, 0.7, 0.6, 0.9, 0.65]
    assert pareto_front(flops, acc) == [0, 1, 3]  # (3, 0.6) and (2, 0.65) are dominated by (2, 0.7)
    # with a tolerance a lead must exceed it: (2, 0.65) trails (2, 0.7) by 0.05 < 0.06 and stays,
    # (3, 0.6) trails by 0.1 and still goes
    assert pareto_front(flops, acc, tolerance=0.06) == [0, 1, 4, 3]
    assert reading_tolerance([0.85, 0.85], 2000) == pytest.approx(math.sqrt(2 * 0.85 * 0.15 / 2000))
    # (2-1)·0.5 + (4-2)·0.7 + (5-4)·0.9
    assert hypervolume_2d(flops, acc, ref_flops=5.0, ref_accuracy=0.0) == pytest.approx(2.8)
    # floor 0.6: (2-1)·0 ... the 0.5 point is under the floor: (4-2)·0.1 + (5-4)·0.3
    assert hypervolume_2d(flops, acc, ref_flops=5.0, ref_accuracy=0.6) == pytest.approx(0.5)
    assert hypervolume_2d([6.0], [0.9], ref_flops=5.0, ref_accuracy=0.0) == 0.0
    assert hypervolume_2d([], [], 5.0, 0.0) == 0.0


# -- a real search on a small Fashion-MNIST subset ----------------------------------------------
@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A small all-3x3 teacher trained for one epoch on 600 Fashion-MNIST images."""
    from edgenas.cli import TEACHER_ARCH
    from edgenas.train.train_arch import train_arch
    from edgenas.train.trainer import TrainConfig

    out = tmp_path_factory.mktemp("teacher") / "t"
    train_arch(TEACHER_ARCH, dataset="fashion-mnist", width=4, subset=600, train=TrainConfig(epochs=1, batch_size=64),
               device="cpu", run_dir=out, quiet=True, command="teacher")  # fmt: skip
    return out / "model.pt"


def _kw(teacher: Path) -> dict:
    return {"method": "dnad", "teacher": teacher, "dataset": "fashion-mnist", "subset": 1200, "width": 8,
            "options": FAST, "compute": "cpu", "quiet": True}  # fmt: skip


@pytest.fixture(scope="module")
def straight(teacher: Path, tmp_path_factory) -> dict:
    """One uninterrupted search, watched: the alive mask after every α-step."""
    masks: list[torch.Tensor] = []
    real = SNPSSearch.after_alpha_step

    def watched(self):
        real(self)
        masks.append(self.net.alive.cpu().clone())

    SNPSSearch.after_alpha_step = watched
    try:
        res = search(**_kw(teacher), run_dir=tmp_path_factory.mktemp("s") / "a")
    finally:
        SNPSSearch.after_alpha_step = real
    res["_masks"] = masks
    return res


@pytest.mark.slow  # the suite stays under 6 min; faster cousins run in CI
def test_search_shrinks_harvests_and_writes_its_results(straight: dict) -> None:
    res, out = straight, Path(straight["run_dir"])
    masks = straight["_masks"]
    assert len(masks) == 3 * 9  # 3 search epochs of 600/64 batches
    for before, after in itertools.pairwise(masks):
        assert not (after & ~before).any()  # a deleted op never comes back
    assert res["final_live_ops"] < 24 and res["deletions"]
    assert len(res["snapshots"]) >= 2 and res["snapshots"][-1]["reason"] == "end"
    shape = NetShape(**res["target_shape"])
    for s in res["snapshots"]:
        net = NB201Network(NB201Arch.parse(s["arch"]), shape)
        assert s["flops"] == count_flops(net, shape.input_shape) and s["params"] == count_params(net)
        assert 0.0 <= s["val_accuracy"] <= 1.0 and s["live_flops"] <= res["full_supernet_flops"]
    levels = [s for s in res["snapshots"] if s["reason"] == "level"]
    assert all(s["live_flops"] <= min(s["levels"]) for s in levels)
    # snapshot_on "change": a snapshot after every deletion that changed the strongest arch, never a repeat
    deletion_steps = {d["step"] for d in res["deletions"]}
    taken = [s for s in res["snapshots"] if s["reason"] != "end"]
    assert all(s["step"] in deletion_steps for s in taken)
    changes = [s for s in taken if s["reason"] == "change"]
    assert all(s["arch"] != prev["arch"] for prev, s in itertools.pairwise(taken) if s in changes)
    # every arch read again from the final supernet (one footing), its reading when taken kept
    assert all(s["val_accuracy_from"] == "end" and 0 <= s["val_accuracy_at_snapshot"] <= 1 for s in res["snapshots"])
    front = res["pareto"]
    assert res["pareto_on"] == "arch"
    assert front and [s["flops"] for s in front] == sorted(s["flops"] for s in front)
    # no member trails a cheaper snapshot by more than the reading tolerance; the strict front is inside it
    tol = res["pareto_tolerance"]
    assert 0 < tol < 0.1
    for s in front:
        assert all(c["val_accuracy"] <= s["val_accuracy"] + tol for c in res["snapshots"] if c["flops"] <= s["flops"])
    assert set(res["pareto_strict_archs"]) <= set(res["pareto_archs"])
    assert res["pareto_archs"] == list(dict.fromkeys(s["arch"] for s in front))
    saved = json.loads((out / "results.json").read_text())
    assert saved["schema_version"] == 1 and saved["method"] == "dnad" and saved["pareto"] == front
    assert (out / "pareto.png").stat().st_size > 0 and (out / "shrink.png").stat().st_size > 0
    kinds = {e["event"] for e in map(json.loads, (out / "events.jsonl").read_text().splitlines())}
    assert {"start", "epoch", "delete", "snapshot", "done"} <= kinds


@pytest.mark.slow  # the suite stays under 6 min; faster cousins run in CI
def test_search_resumes_exactly_after_an_interruption(teacher: Path, straight: dict, tmp_path: Path, monkeypatch):
    real = SNPSSearch.train_epoch
    calls = {"n": 0}

    def flaky(self, bar, task):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, bar, task)

    monkeypatch.setattr(SNPSSearch, "train_epoch", flaky)
    with pytest.raises(Interrupted, match="edgenas search --resume"):
        search(**_kw(teacher), run_dir=tmp_path / "b")
    monkeypatch.setattr(SNPSSearch, "train_epoch", real)
    resumed = resume_search(tmp_path / "b", compute="cpu", quiet=True)
    assert resumed["resumed_from_epoch"] == 2
    assert resumed["snapshots"] == straight["snapshots"]
    assert resumed["deletions"] == straight["deletions"]
    assert resumed["history"][-1]["attention"] == straight["history"][-1]["attention"]
    # and the deleted ops stayed deleted across the resume
    assert resumed["final_live_ops"] == straight["final_live_ops"]


# -- bad input ----------------------------------------------------------------------------------
def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="warm-up"):
        SNPSConfig.from_options({"epochs": 2, "warmup_epochs": 2})
    with pytest.raises(ConfigError, match="delete_threshold"):
        SNPSConfig.from_options({"delete_threshold": 1.5})
    with pytest.raises(ConfigError, match="levels"):
        SNPSConfig.from_options({"levels": [-1.0]})
    with pytest.raises(ConfigError, match="penalty"):
        SNPSConfig.from_options({"penalty": "hinge"})  # a DCA option
    with pytest.raises(ConfigError, match=r"^experimental\.penalty: Extra inputs"):
        SNPSConfig.from_options({"experimental": {"penalty": "hinge"}})
    with pytest.raises(ConfigError, match=r"^schedule_on: Input should be 'flops', 'soft' or 'hard'"):
        SNPSConfig.from_options({"schedule_on": "steps"})
    with pytest.raises(ConfigError, match=r"^experimental\.cost_weight: Input should be greater"):
        SNPSConfig.from_options({"experimental": {"cost_weight": -1}})
    both = {"cost_weight": 0, "polarize": True, "experimental": {"cost_weight": 1, "polarize": True}}
    with pytest.raises(ConfigError, match=r"^cost_weight, polarize: given both flat and under experimental"):
        SNPSConfig.from_options(both)


def test_experimental_options_given_flat_or_nested_are_the_same_config() -> None:
    flat = {"epochs": 4, "cost_weight": 0.0, "snapshot_arch": "strongest", "schedule_on": "soft", "final_live": 3}
    nested = {"epochs": 4, "experimental": {k: v for k, v in flat.items() if k != "epochs"}}
    a, b = SNPSConfig.from_options(flat), SNPSConfig.from_options(nested)
    assert a == b and a.experimental.schedule_on == "soft" and a.experimental.final_live == 3
    assert not {"cost_weight", "snapshot_arch"} & a.model_dump().keys()
    assert a.flat() == {**SNPSConfig(epochs=4).flat(), **flat}
    assert SNPSConfig(**a.model_dump()) == a


def test_a_run_stored_flat_resumes_with_the_same_options(tmp_path: Path) -> None:
    """Runs made before `experimental` stored every option flat; their checkpoints still match."""
    from edgenas.search.bilevel import flat_options

    cfg = SNPSConfig.from_options(FAST | {"cost_weight": 0.5})
    stored_flat = cfg.flat()
    assert "experimental" not in stored_flat and stored_flat["cost_weight"] == 0.5
    assert SNPSConfig(**stored_flat) == cfg
    assert flat_options(stored_flat) == flat_options(cfg.model_dump()) == cfg.flat()


def _cli(run_dir: Path, *extra: str) -> list[str]:
    return ["search", "--method", "dnad", "--dataset", "fashion-mnist", "--subset", "1200", "--epochs", "2",
            "--warmup-epochs", "1", "--run-dir", str(run_dir), "--quiet", *extra]  # fmt: skip


def test_cli_dnad_needs_a_matching_teacher(teacher: Path, tmp_path: Path, capsys) -> None:
    assert run(_cli(tmp_path / "r")) == 2
    assert "needs --teacher" in capsys.readouterr().err
    assert run(_cli(tmp_path / "r", "--teacher", str(tmp_path / "nope.pt"))) == 2
    assert "no such model file" in capsys.readouterr().err
    # a Fashion-MNIST teacher cannot teach 8x8 digits
    assert run([*_cli(tmp_path / "r", "--teacher", str(teacher)), "--dataset", "digits"]) == 2
    err = capsys.readouterr().err
    assert "teacher" in err and "Traceback" not in err
    assert run(_cli(tmp_path / "r", "--teacher", str(teacher), "--lower", "0.5")) == 2
    assert "DCA-NAS options" in capsys.readouterr().err
    # --option: an unknown key is named, a key given by its own flag too is refused, neither starts a run
    assert run(_cli(tmp_path / "r", "--teacher", str(teacher), "--option", "cost_wieght=0")) == 2
    err = capsys.readouterr().err
    assert "cost_wieght" in err and "Traceback" not in err
    assert run(_cli(tmp_path / "r", "--teacher", str(teacher), "--option", "epochs=3")) == 2
    assert "already given by its own flag" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    with pytest.raises(SystemExit):
        run(_cli(tmp_path / "r", "--teacher", str(teacher), "--levels", "many"))
    with pytest.raises(SystemExit):
        run(_cli(tmp_path / "r", "--teacher", str(teacher), "--option", "cost_weight"))


def test_cli_dnad_search_prints_the_pareto_set(teacher: Path, tmp_path: Path, capsys) -> None:
    args = _cli(tmp_path / "r", "--teacher", str(teacher), "--width", "8", "--search-width", "4", "--levels", "8M,5M")
    args += ["--option", "cost-weight=0", "--option", "snapshot_arch=strongest"]
    assert run(args) == 0
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["levels"] == [8e6, 5e6] and res["config"]["levels"] == [8e6, 5e6]
    assert res["config"]["experimental"]["cost_weight"] == 0
    assert res["config"]["experimental"]["snapshot_arch"] == "strongest"
    assert "DNAD Pareto set" in capsys.readouterr().out


def test_user_error_is_the_base_of_search_errors() -> None:
    assert issubclass(ConfigError, UserError)
