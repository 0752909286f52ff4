"""The `paper` variants of DCA-NAS and DNAD: their losses against hand-computed values, the γ/μ
controller, deletion at the threshold, the lookup graph, the supernet options, resume, and
tiny end-to-end searches (`--option variant=paper`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from edgenas.cli import run
from edgenas.core.device import Budgets, DeviceProfile
from edgenas.core.errors import ConfigError, Interrupted
from edgenas.core.space import NetShape
from edgenas.cost.terms import CostTerms
from edgenas.distill.losses import StageFeatureKD, stage_outputs
from edgenas.search.derive import derive
from edgenas.search.lookup import LookupGraph, search_budget_for
from edgenas.search.methods.dca import VARIANTS as DCA_VARIANTS
from edgenas.search.methods.dca import DCAConfig, DCASearch, dual_ascent, lagrangian
from edgenas.search.methods.dnad import (
    DeletionController,
    SNPSConfig,
    SNPSSearch,
    deletion_step,
    multiplicative_loss,
    node_relu_weights,
    sparsity,
)
from edgenas.search.run import resume_search, search
from edgenas.spaces.nb201 import EDGES, OPS, NB201Arch, NB201Space
from edgenas.spaces.nb201.supernet import BankedCell, NB201SuperNet, SuperCell

NB201 = NB201Space()
DCA_FAST = {"epochs": 2, "warmup_epochs": 1, "batch_size": 64, "search_width": 4}


# -- DCA-NAS: the signed Lagrangian ---------------------------------------------------------------
def test_signed_lagrangian_gradient_on_alpha_and_lambda_matches_hand_values() -> None:
    w = np.array([[0.0, 2.0, 6.0], [0.0, 1.0, 3.0]])  # per-point op costs
    terms = CostTerms("params", 4.0, w)
    alpha = torch.tensor([[0.0, 0.5, 1.0], [1.0, 0.0, -1.0]], dtype=torch.float64, requires_grad=True)
    search_budget, lam = 8.0, 0.7
    p = torch.softmax(alpha, -1)
    r = terms.expected(p) / search_budget
    loss = torch.zeros((), dtype=torch.float64)
    total = lagrangian(loss, {"max_params": r}, {"max_params": lam}, {"max_params": 0.0}, "signed", 0.0)
    (grad,) = torch.autograd.grad(total, alpha)
    pn = p.detach().numpy()
    e = 4.0 + (pn * w).sum()
    assert float(total.detach()) == pytest.approx(lam * (e / search_budget - 1))
    # d/dα_po of λ(E/K − 1) = λ/K · p_o (w_o − Σ_o' p_o' w_o')
    hand = lam / search_budget * pn * (w - (pn * w).sum(1, keepdims=True))
    np.testing.assert_allclose(grad.numpy(), hand, rtol=1e-12)
    # under budget the signed term still pulls (the hinge would be 0 there)
    under = lagrangian(loss, {"max_params": r * 0 + 0.5}, {"max_params": lam}, {"max_params": 0.0}, "signed", 0.0)
    hinge = lagrangian(loss, {"max_params": r * 0 + 0.5}, {"max_params": lam}, {"max_params": 0.0}, "hinge", 0.0)
    assert float(under.detach()) == pytest.approx(-0.35) and float(hinge.detach()) == 0.0
    # dL/dλ = r − 1: gradient ascent, projected onto λ ≥ 0
    lam2, low2 = dual_ascent({"max_params": lam}, {"max_params": 0.0}, {"max_params": 1.25}, 0.4, 0.0)
    assert lam2["max_params"] == pytest.approx(0.7 + 0.4 * 0.25) and low2 == {"max_params": 0.0}
    lam3, _ = dual_ascent({"max_params": 0.05}, {}, {"max_params": 0.5}, 0.4, 0.0)
    assert lam3["max_params"] == 0.0


def test_the_variant_fills_its_parts_and_a_part_set_alone_wins() -> None:
    paper = DCAConfig.from_options({"variant": "paper"})
    assert (paper.k, paper.bottleneck, paper.share_sources, paper.lower) == (1, 2, True, 0.0)
    assert paper.alpha_cells == "per-type"
    assert (paper.experimental.penalty, paper.experimental.derive, paper.experimental.edge_norm) == (
        "signed",
        "top",
        False,
    )
    ours = DCAConfig.from_options({})
    assert {k: ours.flat()[k] for k in DCA_VARIANTS["edgenas"]} == DCA_VARIANTS["edgenas"]
    mixed = DCAConfig.from_options({"variant": "paper", "derive": "map", "bottleneck": 1})
    assert mixed.experimental.derive == "map" and mixed.bottleneck == 1 and mixed.share_sources
    assert DCAConfig(**mixed.model_dump()) == mixed  # what a run stores gives the same config back
    with pytest.raises(ConfigError, match="not both"):
        DCAConfig.from_options({"k": 2, "bottleneck": 2})


def test_top_derivation_takes_the_top_weighted_arch_as_it_is() -> None:
    probs = np.full((len(EDGES), len(OPS)), 0.1)
    probs[:, OPS.index("nor_conv_3x3")] = 0.6
    top = NB201Arch(("nor_conv_3x3",) * 6)
    d = derive(probs, Budgets(max_params=10), {}, lambda a: {"params": 1000.0}, method="top", space=NB201)
    assert d.arch == d.argmax == top and d.repairs == [] and not d.fits and d.method == "top"


# -- the supernet options -------------------------------------------------------------------------
def test_shared_sources_and_bottleneck_build_banked_cells() -> None:
    shape = NetShape(width=8, cells=1, in_channels=1, resolution=8, num_classes=10)
    plain, shared = NB201SuperNet(shape, k=1), NB201SuperNet(shape, k=1, share_sources=True)
    assert isinstance(plain.blocks[0], SuperCell) and isinstance(shared.blocks[0], BankedCell)
    assert len(shared.blocks[0].banks) == 3  # one op bank per source node (Eq. 5), not one per edge
    convs = sum(p.numel() for p in plain.blocks[0].parameters())
    assert sum(p.numel() for p in shared.blocks[0].parameters()) * 2 == convs  # 3 of 6 op sets
    narrow = NB201SuperNet(shape, k=1, bottleneck=2, share_sources=True)
    x = torch.randn(2, 1, 8, 8)
    weights = torch.softmax(torch.randn(len(EDGES), len(OPS)), -1)
    logits, feats = narrow.forward_features(x, weights)
    assert logits.shape == (2, 10) and feats[1].shape == (2, 8, 8, 8)
    assert narrow.blocks[0].banks[0].ops[OPS.index("nor_conv_3x3")][1].in_channels == 4  # ops at C/2
    # an edge that reads a shared op gets its gradient through that one module
    (g,) = torch.autograd.grad(shared(x, weights).sum(), [shared.blocks[0].banks[0].ops[3][1].weight])
    assert g.abs().sum() > 0
    with pytest.raises(ConfigError, match="not divisible"):
        NB201SuperNet(shape, k=1, bottleneck=3)


def test_a_space_without_the_options_refuses_them_in_one_line() -> None:
    class Plain(NB201Space):
        supernet_options = frozenset()

    shape = NetShape(width=8, cells=1, in_channels=1, resolution=8)
    assert isinstance(Plain().build_supernet(shape, 2).blocks[0], SuperCell)  # defaults: not passed at all
    with pytest.raises(ConfigError, match="supernet has no bottleneck or share_sources option"):
        Plain().build_supernet(shape, 1, bottleneck=2, share_sources=True)


@pytest.mark.parametrize("space_name", ["nb201", "darts"])
def test_cells_without_alpha_run_the_fixed_arch(space_name: str) -> None:
    """With `alpha_cells="per-type"` only the first cell of each type mixes with the decision weights;
    the others compute the one-hot `fixed` arch, exactly as a supernet whose every cell runs it."""
    from edgenas.spaces import get_space

    space = get_space(space_name)
    cells = 3 if space_name == "darts" else 2
    shape = NetShape(width=4, cells=cells, in_channels=1, resolution=8, num_classes=10)
    torch.manual_seed(0)
    every = space.build_supernet(shape, 1).eval()
    typed = space.build_supernet(shape, 1, alpha_cells="per-type").eval()
    typed.load_state_dict(every.state_dict())
    # one carrier per cell type (DARTS: normal and reduction; NB201: one type)
    blocks = typed.cells if space_name == "darts" else typed.blocks
    kinds = {getattr(blocks[i], "reduction", False) for i in typed.carriers}
    assert len(typed.carriers) == (2 if space_name == "darts" else 1) and len(kinds) == len(typed.carriers)
    arch = space.sample(np.random.default_rng(3))
    hot = space.onehot(arch)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(typed(x, hot, fixed=hot), every(x, hot), atol=1e-5)
        mixed = torch.softmax(torch.randn(hot.shape), -1)
        assert not torch.allclose(typed(x, mixed, fixed=hot), every(x, mixed), atol=1e-4)
        assert torch.equal(typed(x, mixed), every(x, mixed))  # without `fixed` every cell mixes
    # the decision weights reach the output only through the carriers
    w = mixed.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(typed(x, w, fixed=hot).sum(), [w])
    assert g.abs().sum() > 0
    with pytest.raises(ConfigError, match="alpha_cells"):
        space.build_supernet(shape, 1, alpha_cells="two")


# -- the lookup graph ----------------------------------------------------------------------------
def test_lookup_curve_is_made_monotone_then_inverted() -> None:
    pts = [(10.0, 8.0), (20.0, 15.0), (30.0, 14.0), (40.0, 30.0)]
    # isotonic fit: 8, 14.5, 14.5, 30 -> levels 8, 14.5, 30 at budgets 10, 25 (mean of 20, 30), 40
    assert search_budget_for(pts, 20.0) == pytest.approx(25 + (20 - 14.5) / (30 - 14.5) * 15)
    assert search_budget_for(pts, 14.5) == pytest.approx(25.0)
    assert search_budget_for(pts, 4.0) == pytest.approx(5.0)  # below: the first point scaled
    assert search_budget_for(pts, 60.0) == pytest.approx(40.0)  # above: the largest calibrated budget
    assert search_budget_for([(10.0, 12.0)], 6.0) == pytest.approx(5.0)


def test_lookup_graph_round_trips_and_refuses_another_setting(tmp_path: Path) -> None:
    g = LookupGraph("nb201", "digits", {"width": 8}, {"max_params": [(10.0, 8.0), (20.0, 16.0)]}, {"seed": 0})
    path = g.save(tmp_path / "g.json")
    back = LookupGraph.load(path)
    assert back == g
    assert back.search_budget("max_params", 20.0, 0.8) == pytest.approx(20.0)  # 16 wanted: the second point
    assert back.search_budget("max_flops", 20.0, 0.8) is None
    with pytest.raises(ConfigError, match="calibrated for space nb201, dataset digits"):
        back.check_matches("nb201", "fashion-mnist", {"width": 8}, str(path))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a DCA-NAS lookup graph"):
        LookupGraph.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="no such file"):
        LookupGraph.load(tmp_path / "none.json")


def _calibrate_kw(tmp_path: Path) -> dict:
    prof = DeviceProfile(name="t", budgets=Budgets(max_params=40_000))
    opts = DCA_FAST | {"variant": "paper", "calibration_budgets": [0.5, 1.0]}
    return {"profile": prof, "dataset": "digits", "subset": 600, "width": 8, "options": opts, "compute": "cpu"}


def test_calibration_writes_a_graph_that_a_later_search_reads_and_resumes(tmp_path: Path, monkeypatch) -> None:
    kw = _calibrate_kw(tmp_path)
    real = DCASearch.train_epoch
    calls = {"n": 0}

    def flaky(self, bar, task):
        calls["n"] += 1
        if calls["n"] == 3:  # the second calibration search, after its first epoch
            raise KeyboardInterrupt
        return real(self, bar, task)

    monkeypatch.setattr(DCASearch, "train_epoch", flaky)
    with pytest.raises(Interrupted):
        search(**kw, calibrate=True, run_dir=tmp_path / "cal", quiet=True)
    monkeypatch.setattr(DCASearch, "train_epoch", real)
    assert (tmp_path / "cal" / "calibration" / "budget-0.500" / "results.json").is_file()
    cal = resume_search(tmp_path / "cal", compute="cpu", quiet=True)
    assert calls["n"] == 3  # the finished first search was not run again
    graph = LookupGraph.load(cal["lookup_graph"])
    assert [b for b, _ in graph.points["max_params"]] == [20_000.0, 40_000.0]
    assert [c for _, c in graph.points["max_params"]] == [r["costs"]["params"] for r in cal["searches"]]
    want = graph.search_budget("max_params", 40_000, 0.925)
    assert cal["search_budgets_for_device"]["max_params"] == pytest.approx(want)
    kw["options"] = kw["options"] | {"lookup_graph": cal["lookup_graph"]}
    res = search(**kw, run_dir=tmp_path / "s", quiet=True)
    assert res["search_budgets"]["max_params"] == pytest.approx(want) and res["budgets"]["max_params"] == 40_000
    assert json.loads((tmp_path / "s" / "search_budgets.json").read_text())["lookup_graph"] == cal["lookup_graph"]


def test_a_profile_names_its_lookup_graph(tmp_path: Path) -> None:
    from edgenas.core.device import load_device

    LookupGraph("nb201", "digits", {}, {"max_params": [(1.0, 1.0)]}).save(tmp_path / "lug.json")
    (tmp_path / "dev.yaml").write_text("name: d\nbudgets: {max_params: 10k}\nlookup_graph: lug.json\n")
    assert load_device(tmp_path / "dev.yaml").lookup_graph == str(tmp_path / "lug.json")
    (tmp_path / "bad.yaml").write_text("name: d\nbudgets: {max_params: 10k}\nlookup_graph: nope.json\n")
    with pytest.raises(ConfigError, match=r"lookup_graph .*nope\.json: no such file"):
        load_device(tmp_path / "bad.yaml")


# -- DCA-NAS paper: resume and end to end --------------------------------------------------------
def test_dca_paper_resumes_bit_exactly(tmp_path: Path, monkeypatch) -> None:
    prof = DeviceProfile(name="t", budgets=Budgets(max_params=30_000))
    kw = {"profile": prof, "dataset": "digits", "subset": 600, "width": 8, "compute": "cpu", "quiet": True}
    kw["options"] = DCA_FAST | {"variant": "paper"}
    straight = search(**kw, run_dir=tmp_path / "a")
    real = DCASearch.train_epoch
    calls = {"n": 0}

    def flaky(self, bar, task):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, bar, task)

    monkeypatch.setattr(DCASearch, "train_epoch", flaky)
    with pytest.raises(Interrupted):
        search(**kw, run_dir=tmp_path / "b")
    monkeypatch.setattr(DCASearch, "train_epoch", real)
    resumed = resume_search(tmp_path / "b", compute="cpu", quiet=True)
    assert resumed["resumed_from_epoch"] == 1
    assert resumed["final_probs"] == straight["final_probs"] and resumed["arch"] == straight["arch"]
    assert resumed["history"][-1]["lambda"] == straight["history"][-1]["lambda"]
    assert straight["derivation"] == "top" and straight["repairs"] == []


def test_cli_dca_paper_variant_end_to_end(tmp_path: Path, capsys) -> None:
    dev = tmp_path / "dev.yaml"
    dev.write_text("name: tiny\nbudgets:\n  max_params: 40k\n")
    out = tmp_path / "run"
    args = ["search", "--method", "dca", "--device", str(dev), "--dataset", "digits", "--subset", "600",
            "--epochs", "2", "--warmup-epochs", "1", "--width", "8", "--search-width", "4", "--run-dir", str(out),
            "--quiet", "--option", "variant=paper"]  # fmt: skip
    assert run(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["variant"] == "paper" and res["derivation"] == "top"
    assert res["search_budgets"] == res["budgets"]  # no lookup graph named: K_d' = K_d
    assert res["arch"] == str(NB201.top_weighted(np.array(res["final_probs"])))


# -- DNAD paper: weights, sparsity, loss, controller, deletion ------------------------------------
def test_node_relu_weights_sparsity_and_its_gradient_match_hand_values() -> None:
    nodes = NB201.node_points()  # node 1: edge 0; node 2: edges 1, 2; node 3: edges 3, 4, 5
    alive = torch.ones(len(EDGES), len(OPS), dtype=torch.bool)
    alive[:, 0] = False
    theta = torch.full((len(EDGES), len(OPS)), 2.0, dtype=torch.float64)
    theta[0, 1], theta[0, 2] = 1.0, -0.5  # node 1: relu → (1, 0, 2, 2) over its 4 live ops
    theta.requires_grad_(True)
    w = node_relu_weights(theta, alive, list(nodes.values()))
    np.testing.assert_allclose(w[0].detach().numpy(), [0, 0.2, 0, 0.4, 0.4])
    np.testing.assert_allclose(w[1:3, 1:].detach().numpy(), np.full((2, 4), 1 / 8))
    np.testing.assert_allclose(w[3:, 1:].detach().numpy(), np.full((3, 4), 1 / 12))
    assert float(w.detach().sum()) == pytest.approx(3.0)  # one per node
    s = sparsity(w)
    hand = math.log(11) + 2 * math.log(21) + 8 * math.log(1 + 50 / 8) + 12 * math.log(1 + 50 / 12)
    assert float(s.detach()) == pytest.approx(hand)
    (g,) = torch.autograd.grad(s, theta)
    # node 1: dS/dθ_j = (1/Σr)(50/(1+50 w_j) − Σ_k w_k 50/(1+50 w_k)) for θ_j > 0, 0 where ReLU is flat
    wn = np.array([0.2, 0.0, 0.4, 0.4])
    d = 50 / (1 + 50 * wn)
    mean = float((wn * d).sum())
    expect = np.array([(d[0] - mean) / 5, 0.0, (d[2] - mean) / 5, (d[3] - mean) / 5])
    np.testing.assert_allclose(g[0, 1:].numpy(), expect, rtol=1e-10)
    assert float(g[1:, 1:].abs().max()) < 1e-12  # equal weights: S is at its maximum in those nodes
    assert float(g[:, 0].abs().max()) == 0.0  # dead ops get nothing


def test_multiplicative_loss_value_and_gradients() -> None:
    task = torch.tensor(2.0, requires_grad=True)
    s = torch.tensor(40.0, requires_grad=True)
    loss = multiplicative_loss(task, s, gamma=0.01, mu=0.5)
    assert loss.item() == pytest.approx(2.0 * 1.4 + 0.01 * 0.5 * 40)
    gt, gs = torch.autograd.grad(loss, [task, s])
    assert float(gt) == pytest.approx(1.4) and float(gs) == pytest.approx(0.01 * 2.0 + 0.01 * 0.5)


def test_the_controller_on_a_scripted_deletion_sequence() -> None:
    kw = {"n_max": 0.3, "tau": 0.5, "up": 2.0, "down": 0.5, "gamma_max": 4.0, "stall_steps": 2, "growth": 3.0}
    c = DeletionController(gamma=1.0, mu=1.0)
    seen = []
    for deleted in [0, 0, 0, 0, 1, 0, 0, 0, 0]:
        stall = c.step(deleted, **kw)
        seen.append((round(c.rate, 5), c.gamma, c.mu, c.stalled, stall))
    assert seen == [
        (0.0, 2.0, 1.0, 0, False),  # γ < γ_max: up, no count
        (0.0, 4.0, 1.0, 0, False),
        (0.0, 8.0, 1.0, 1, False),  # began at γ_max: one stalled step
        (0.0, 16.0, 3.0, 0, True),  # the second: a Pareto genotype, μ grows, the count restarts
        (0.5, 8.0, 3.0, 0, False),  # a deletion lifts p̄ over n_max: γ down
        (0.25, 16.0, 3.0, 1, False),  # p̄ back under: γ up again from above γ_max
        (0.125, 32.0, 9.0, 0, True),
        (0.0625, 64.0, 9.0, 1, False),
        (0.03125, 128.0, 27.0, 0, True),
    ]


def test_deletion_at_the_threshold_is_immediate() -> None:
    alive = torch.ones(len(EDGES), len(OPS), dtype=torch.bool)
    alive[:, 0] = False
    w = torch.full((len(EDGES), len(OPS)), 0.2)
    w[1, 2], w[4, 3] = 0.0099, 0.01
    under = torch.zeros(len(EDGES), len(OPS), dtype=torch.long)
    deleted = deletion_step(w, alive, under, 0.01, 1, True, space=NB201)
    assert deleted == [(1, 2)] and not alive[1, 2] and alive[4, 3]


def test_stage_outputs_and_stage_feature_kd() -> None:
    feats = [torch.zeros(1, 2, 8, 8), torch.ones(1, 2, 8, 8), torch.zeros(1, 4, 4, 4), torch.ones(1, 4, 4, 4)]
    feats.append(torch.ones(1, 8, 2, 2))
    stages = stage_outputs(feats, 3)
    assert [tuple(f.shape[1:]) for f in stages] == [(2, 8, 8), (4, 4, 4), (8, 2, 2)]
    assert all(float(f.mean()) == 1.0 for f in stages)
    with pytest.raises(ValueError, match="fewer than the 4"):
        stage_outputs(feats, 4)
    kd = StageFeatureKD([2, 4, 8], [3, 5, 7], [0.2, 0.3, 0.5])
    torch.manual_seed(0)
    s = [torch.randn(4, c, h, h) for c, h in ((2, 8), (4, 4), (8, 2))]
    t = [torch.randn(4, c, h, h) for c, h in ((3, 8), (5, 4), (7, 2))]
    hand = sum(w * torch.nn.functional.mse_loss(kd.project[i](s[i]), kd.teacher_bn[i](t[i]))
               for i, w in enumerate([0.2, 0.3, 0.5]))  # fmt: skip
    assert kd(s, t).item() == pytest.approx(hand.item(), rel=1e-6)


def test_dnad_variant_fills_its_parts() -> None:
    paper = SNPSConfig.from_options({"variant": "paper"})
    assert (paper.attention, paper.objective, paper.one_level, paper.feature_kd, paper.harvest) == (
        "node_relu", "multiplicative", True, "stages", "stalls",
    )  # fmt: skip
    assert (paper.w_optimizer, paper.theta_optimizer, paper.w_lr, paper.alpha_lr, paper.alpha_init) == (
        "adam", "sgd", 5e-4, 0.2, 2.0,
    )  # fmt: skip
    assert (paper.delete_threshold, paper.delete_patience, paper.kd_weight, paper.feature_weight) == (0.01, 1, 0, 1)
    assert SNPSConfig.from_options({"variant": "paper", "kd_weight": 1}).kd_weight == 1  # the logit-KD flag
    with pytest.raises(ConfigError, match="one_level steps need objective=multiplicative"):
        SNPSConfig.from_options({"one_level": True})
    ours = SNPSConfig.from_options({})
    assert (ours.attention, ours.w_lr, ours.delete_threshold, ours.experimental.snapshot_arch) == (
        "sigmoid", 0.05, 0.05, "costliest",
    )  # fmt: skip


# -- DNAD paper: end to end and resume -----------------------------------------------------------
# a search that deletes and stalls in 12 steps: a fast θ step, γ at γ_max from the start, a high n_max
DNAD_FAST = {"variant": "paper", "epochs": 3, "batch_size": 64, "search_width": 4, "bn_batches": 2,
             "eval_images": 200, "snapshot_finetune": 5, "alpha_lr": 5.0, "gamma_init": 0.06, "gamma_max": 0.06,
             "deletion_rate": 0.5, "stall_steps": 3, "stop_sparsity": 0.1}  # fmt: skip


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    from edgenas.cli import TEACHER_ARCH
    from edgenas.train.train_arch import train_arch
    from edgenas.train.trainer import TrainConfig

    out = tmp_path_factory.mktemp("teacher") / "t"
    train_arch(TEACHER_ARCH, dataset="fashion-mnist", width=4, subset=400, train=TrainConfig(epochs=1, batch_size=64),
               device="cpu", run_dir=out, quiet=True, command="teacher")  # fmt: skip
    return out / "model.pt"


def test_dnad_paper_end_to_end_and_resume_bit_exact(teacher: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "a"
    args = ["search", "--method", "dnad", "--teacher", str(teacher), "--dataset", "fashion-mnist", "--subset", "600",
            "--width", "8", "--run-dir", str(out), "--quiet"]  # fmt: skip
    for k, v in DNAD_FAST.items():
        args += ["--option", f"{k}={v}"]
    assert run(args) == 0
    straight = json.loads((out / "results.json").read_text())
    assert straight["config"]["one_level"] and straight["config"]["feature_kd"] == "stages"
    assert straight["deletions"] and straight["final_live_ops"] < 24
    reasons = [s["reason"] for s in straight["snapshots"]]
    assert reasons.count("epoch") == len([h for h in straight["history"] if h["searching"]]) and reasons[-1] == "end"
    assert "stall" in reasons and straight["stall_archs"]
    assert straight["history"][-1]["sparsity"] < straight["sparsity_start"]
    assert "DNAD Pareto set" in capsys.readouterr().out

    real = SNPSSearch.train_epoch
    calls = {"n": 0}

    def flaky(self, bar, task):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, bar, task)

    monkeypatch.setattr(SNPSSearch, "train_epoch", flaky)
    with pytest.raises(Interrupted):
        search(method="dnad", teacher=teacher, dataset="fashion-mnist", subset=600, width=8, options=DNAD_FAST,
               compute="cpu", quiet=True, run_dir=tmp_path / "b")  # fmt: skip
    monkeypatch.setattr(SNPSSearch, "train_epoch", real)
    resumed = resume_search(tmp_path / "b", compute="cpu", quiet=True)
    assert resumed["resumed_from_epoch"] == 1
    for key in ("snapshots", "deletions", "controller", "stopped_at_epoch", "final_live_ops"):
        assert resumed[key] == straight[key], key
    assert resumed["history"][-1]["attention"] == straight["history"][-1]["attention"]
