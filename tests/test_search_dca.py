"""DCA-NAS: supernet mechanics, expected costs, dual ascent, derivation/repair, resume and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from edgenas.cli import run
from edgenas.core.device import Budgets, DeviceProfile
from edgenas.core.errors import ConfigError, Interrupted, ResumeError
from edgenas.core.space import NetShape
from edgenas.cost import count_flops, count_params
from edgenas.cost.memory import peak_activation_bytes
from edgenas.data import load_dataset
from edgenas.search.derive import argmax_arch, connect, derive
from edgenas.search.methods.dca import DCAConfig, DCASearch
from edgenas.search.run import resume_search, search
from edgenas.spaces.nb201 import EDGES, OPS, NB201Arch, NB201Network, NB201Space
from edgenas.spaces.nb201.cost_terms import flops_terms, memory_terms, params_terms, terms_for_budgets
from edgenas.spaces.nb201.supernet import NB201SuperNet, PartialMixedOp, channel_shuffle, node_edge_weights

SHAPE = NetShape(width=8, cells=1, in_channels=1, resolution=8, num_classes=10)
FAST = {"epochs": 2, "warmup_epochs": 1, "batch_size": 64, "search_width": 4, "k": 2}


def onehot(arch: NB201Arch) -> torch.Tensor:
    p = torch.zeros(len(EDGES), len(OPS))
    p[torch.arange(len(EDGES)), [OPS.index(o) for o in arch.ops]] = 1.0
    return p


def test_channel_shuffle_is_a_permutation_that_interleaves_groups() -> None:
    x = torch.arange(8.0).view(1, 8, 1, 1)
    y = channel_shuffle(x, 2).flatten().tolist()
    assert y == [0, 4, 1, 5, 2, 6, 3, 7]
    assert torch.equal(channel_shuffle(x, 1), x)


def test_partial_mixed_op_passes_the_bypass_channels_through() -> None:
    op = PartialMixedOp(8, k=4).eval()
    x = torch.randn(2, 8, 5, 5)
    w = torch.softmax(torch.randn(len(OPS)), 0)
    y = op(x, w, torch.ones(len(OPS), dtype=torch.bool))
    assert y.shape == x.shape
    unshuffled = y.view(2, 2, 4, 5, 5).transpose(1, 2).reshape(2, 8, 5, 5)  # undo the shuffle
    assert torch.equal(unshuffled[:, 2:], x[:, 2:])  # 6 of 8 channels bypass the mixed op


def test_dead_ops_are_not_run_and_carry_no_gradient() -> None:
    net = NB201SuperNet(SHAPE, k=2)
    net.alive[:, OPS.index("nor_conv_3x3")] = False
    alpha = torch.zeros(len(EDGES), len(OPS), requires_grad=True)
    net(torch.randn(4, 1, 8, 8), torch.softmax(alpha, -1)).sum().backward()
    conv3 = net.blocks[0].edges[0].ops[OPS.index("nor_conv_3x3")]
    conv1 = net.blocks[0].edges[0].ops[OPS.index("nor_conv_1x1")]
    assert all(p.grad is None for p in conv3.parameters())
    assert all(p.grad is not None for p in conv1.parameters())
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0


def test_edge_normalisation_sums_to_one_per_node() -> None:
    w = node_edge_weights(torch.randn(len(EDGES)))
    assert torch.allclose(torch.stack([w[0:1].sum(), w[1:3].sum(), w[3:6].sum()]), torch.ones(3))


@pytest.mark.parametrize(
    "text", ["|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"]
)
def test_params_and_flops_terms_are_exact_for_all_live_cells(text: str) -> None:
    shape = NetShape(width=8, cells=2, in_channels=1, resolution=12, num_classes=10)
    arch = NB201Arch.parse(text)
    net = NB201Network(arch, shape)
    p, f = params_terms(shape), flops_terms(shape)
    assert p.of_arch(arch) == count_params(net)
    assert f.of_arch(arch) == count_flops(net, shape.input_shape)
    # the expectation under a one-hot distribution is the arch's own cost
    assert float(p.expected(onehot(arch))) == pytest.approx(p.of_arch(arch))


def test_memory_terms_fit_measured_peaks() -> None:
    m = memory_terms(SHAPE, seed=0, samples=48)
    assert m.fit["mape_percent"] < 25
    rng = np.random.default_rng(5)
    space = NB201Space()
    errs = []
    for _ in range(10):
        arch = space.sample(rng)
        true = peak_activation_bytes(NB201Network(arch, SHAPE), SHAPE.input_shape)
        errs.append(abs(m.of_arch(arch) - true) / true)
    assert np.mean(errs) < 0.3  # a guide for the search; the exact peak is what is checked


def test_connect_repairs_a_disconnected_argmax() -> None:
    probs = np.full((len(EDGES), len(OPS)), 0.1)
    probs[:, 0] = 0.6  # "none" wins everywhere
    probs[3, OPS.index("nor_conv_3x3")] = 0.3  # edge 3->0 has the likeliest non-zero op
    repairs: list[dict] = []
    arch = connect(argmax_arch(probs, NB201Space()), probs, repairs, NB201Space())
    assert arch.is_connected and arch.ops[3] == "nor_conv_3x3"
    assert repairs == [{"reason": "disconnected cell", "edge": 3, "from": "none", "to": "nor_conv_3x3"}]


def test_derive_repairs_until_the_exact_cost_fits() -> None:
    shape = SHAPE
    probs = np.full((len(EDGES), len(OPS)), 0.05)
    probs[:, OPS.index("nor_conv_3x3")] = 0.6
    probs[:, OPS.index("nor_conv_1x1")] = 0.2
    all_conv3 = NB201Arch(("nor_conv_3x3",) * 6)
    limit = count_params(NB201Network(all_conv3, shape)) - 1  # just misses: repair needed
    budgets = Budgets(max_params=limit)
    terms = terms_for_budgets(budgets, shape)

    def exact(arch: NB201Arch) -> dict[str, float]:
        return {"params": count_params(NB201Network(arch, shape))}

    d = derive(probs, budgets, terms, exact)
    assert d.argmax == all_conv3
    assert d.fits and d.costs["params"] <= limit
    assert len(d.repairs) == 1
    # the swap goes to the next op by α that is cheaper: 1x1 conv, not a free op
    assert d.repairs[0]["from"] == "nor_conv_3x3" and d.repairs[0]["to"] == "nor_conv_1x1"


def _params_exact(shape: NetShape):
    def exact(arch: NB201Arch) -> dict[str, float]:
        return {"params": count_params(NB201Network(arch, shape))}

    return exact


def _log_prob(probs: np.ndarray, arch: NB201Arch) -> float:
    return float(sum(np.log(probs[e, OPS.index(op)]) for e, op in enumerate(arch.ops)))


def test_map_derivation_gives_up_the_op_the_distribution_holds_least() -> None:
    # All edges prefer conv 3x3 and one must go. Edge 0 is sure of it (runner-up: a free
    # pool); edge 5 hesitates between 3x3 and 1x1. Greedy repair swaps edge 0 (first of the
    # equally costly edges) to its pool; the most probable arch in the budget drops edge 5's 3x3.
    probs = np.full((len(EDGES), len(OPS)), 0.02)
    probs[:, OPS.index("nor_conv_3x3")] = 0.8
    probs[:, OPS.index("avg_pool_3x3")] = 0.14
    probs[5] = [0.02, 0.02, 0.4, 0.45, 0.11]
    all_conv3 = NB201Arch(("nor_conv_3x3",) * 6)
    limit = count_params(NB201Network(all_conv3, SHAPE)) - 1
    budgets = Budgets(max_params=limit)
    terms = terms_for_budgets(budgets, SHAPE)
    exact = _params_exact(SHAPE)
    greedy = derive(probs, budgets, terms, exact, method="greedy")
    best = derive(probs, budgets, terms, exact, method="map")
    assert greedy.fits and greedy.arch.ops[0] == "avg_pool_3x3"
    assert best.fits and best.costs["params"] <= limit and best.method == "map"
    assert best.arch.ops == ("nor_conv_3x3",) * 5 + ("nor_conv_1x1",)
    assert _log_prob(probs, best.arch) > _log_prob(probs, greedy.arch)
    assert best.argmax == all_conv3
    assert [(r["edge"], r["from"], r["to"]) for r in best.repairs] == [(5, "nor_conv_3x3", "nor_conv_1x1")]
    assert best.repairs[0]["reason"].startswith("max_params")


def test_map_derivation_is_the_most_probable_arch_in_the_band() -> None:
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(len(OPS)), size=len(EDGES))
    probs[:, OPS.index("avg_pool_3x3")] += 1.0  # a collapsed argmax (all pools), far under the budget
    probs /= probs.sum(1, keepdims=True)
    biggest = count_params(NB201Network(NB201Arch(("nor_conv_3x3",) * 6), SHAPE))
    budgets = Budgets(max_params=biggest // 2)
    terms = terms_for_budgets(budgets, SHAPE)
    exact = _params_exact(SHAPE)
    d = derive(probs, budgets, terms, exact, lower=0.85, method="map")
    assert d.argmax == NB201Arch(("avg_pool_3x3",) * 6)
    assert d.fits and 0.85 * budgets.max_params <= d.costs["params"] <= budgets.max_params
    assert d.repairs and all(r["reason"].startswith("fill") for r in d.repairs)
    # brute force over a sample of in-band archs: none is more probable
    space = NB201Space()
    for arch in space.sample_distinct(300, np.random.default_rng(0)):
        if arch.is_connected and 0.85 * budgets.max_params <= exact(arch)["params"] <= budgets.max_params:
            assert _log_prob(probs, arch) <= _log_prob(probs, d.arch) + 1e-9


def test_map_derivation_falls_back_to_repair_when_the_cost_model_is_wrong() -> None:
    probs = np.full((len(EDGES), len(OPS)), 0.05)
    probs[:, OPS.index("nor_conv_3x3")] = 0.6
    probs[:, OPS.index("nor_conv_1x1")] = 0.2
    all_conv3 = NB201Arch(("nor_conv_3x3",) * 6)
    limit = count_params(NB201Network(all_conv3, SHAPE)) - 1
    budgets = Budgets(max_params=limit)
    terms = terms_for_budgets(budgets, SHAPE)
    exact = _params_exact(SHAPE)
    # a model that says every arch fits: its top candidate (the all-3x3 argmax) fails the exact check
    lying = {"max_params": replace(terms["max_params"], fixed=terms["max_params"].fixed - 10**6)}
    d = derive(probs, budgets, lying, exact, method="map", max_exact=1)
    assert d.fits and d.costs["params"] <= limit  # the greedy repair, on the exact cost
    assert len(d.repairs) == 1 and "most probable" not in d.repairs[0]["reason"]
    assert d.method == "greedy (map fallback)"
    with pytest.raises(ValueError, match="unknown derivation"):
        derive(probs, budgets, terms, exact, method="best")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", None, seed=0, val_fraction=0.5)


def _search(digits, budgets: Budgets, **cfg) -> DCASearch:
    shape = NetShape.for_data(digits.info, 8, 1)
    terms = terms_for_budgets(budgets, shape)
    return DCASearch(DCAConfig(**(FAST | cfg)), digits, shape, budgets, terms, torch.device("cpu"), quiet=True)


def test_dual_ascent_raises_lambda_over_budget_and_the_penalty_lowers_the_cost(digits) -> None:
    s = _search(digits, Budgets(max_params=1000), lower=0.0, alpha_lr=0.05, lambda_init=1.0)
    x, y = next(iter(s.val_batches))
    start = s.expected_ratios(s.op_probs())["max_params"].item()
    assert start > 1  # 1000 params is far below any cell
    for _ in range(10):
        s.alpha_step(x, y)
    assert s.lam["max_params"] > 1.0
    assert s.expected_ratios(s.op_probs())["max_params"].item() < start


def test_the_lower_side_pushes_the_cost_up_towards_the_budget(digits) -> None:
    shape = NetShape.for_data(digits.info, 8, 1)
    biggest = count_params(NB201Network(NB201Arch(("nor_conv_3x3",) * 6), shape))
    s = _search(digits, Budgets(max_params=biggest), lower=0.95, alpha_lr=0.05, eta_lambda=5.0)
    x, y = next(iter(s.val_batches))
    start = s.expected_ratios(s.op_probs())["max_params"].item()
    for _ in range(10):
        s.alpha_step(x, y)
    assert s.lam["max_params"] == 0.0 and s.lam_low["max_params"] > 0
    assert s.expected_ratios(s.op_probs())["max_params"].item() > start


def test_warmup_must_leave_search_epochs(digits) -> None:
    with pytest.raises(ConfigError, match="warm-up"):
        DCAConfig.from_options({"epochs": 2, "warmup_epochs": 2})
    with pytest.raises(ConfigError, match="alpha_lr"):
        DCAConfig.from_options({"alpha_lr": -1})


def test_search_resumes_exactly_after_an_interruption(digits, tmp_path: Path, monkeypatch) -> None:
    prof = DeviceProfile(name="t", budgets=Budgets(max_params=60_000))
    kw = {"profile": prof, "dataset": "digits", "subset": None, "width": 8, "options": FAST, "compute": "cpu"}
    straight = search(**kw, run_dir=tmp_path / "a", quiet=True)

    real = DCASearch.train_epoch
    calls = {"n": 0}

    def flaky(self, bar, task):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, bar, task)

    monkeypatch.setattr(DCASearch, "train_epoch", flaky)
    with pytest.raises(Interrupted, match="edgenas search --resume"):
        search(**kw, run_dir=tmp_path / "b", quiet=True)
    monkeypatch.setattr(DCASearch, "train_epoch", real)
    resumed = resume_search(tmp_path / "b", compute="cpu", quiet=True)
    assert resumed["resumed_from_epoch"] == 1
    assert resumed["final_probs"] == straight["final_probs"]
    assert resumed["arch"] == straight["arch"]


def _search_args(device_file: Path, run_dir: Path, *extra: str) -> list[str]:
    """A 2-epoch (1 warm-up) search on digits; later flags in `extra` override these."""
    return ["search", "--device", str(device_file), "--dataset", "digits", "--subset", "1400", "--epochs", "2",
            "--warmup-epochs", "1", "--run-dir", str(run_dir), "--quiet", *extra]  # fmt: skip


def test_cli_search_writes_arch_checks_and_plots(tmp_path: Path, capsys) -> None:
    dev = tmp_path / "dev.yaml"
    dev.write_text("name: tiny\nbudgets:\n  max_params: 40k\n  max_flops: 2M\n")
    out = tmp_path / "run"
    args = _search_args(dev, out, "--method", "dca", "--width", "8", "--search-width", "4")
    assert run(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["method"] == "dca" and res["fits"]
    assert {c["budget"] for c in res["checks"]} == {"max_params", "max_flops"}
    assert all(c["passed"] for c in res["checks"])
    net = NB201Network(NB201Arch.parse(res["arch"]), NetShape(8, 1, 1, 8, 10))
    assert count_params(net) == res["costs"]["params"] <= 40_000
    assert sum(res["op_histogram"].values()) == len(EDGES)
    assert len(res["history"]) == 2 and not res["history"][0]["searching_alpha"]
    assert (out / "alpha.png").stat().st_size > 0 and (out / "ops.png").stat().st_size > 0
    assert "edgenas train --arch" in capsys.readouterr().out


def test_cli_search_latency_budget_profiles_a_table_and_measures_the_result(tmp_path: Path) -> None:
    dev = tmp_path / "dev.yaml"
    dev.write_text("name: lat\nbudgets:\n  max_latency_ms: 5\nlatency:\n  threads: 1\n  repeats: 20\n")
    out = tmp_path / "run"
    args = _search_args(dev, out, "--width", "8", "--search-width", "4")
    assert run(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert (out / "latency_table.json").is_file()
    assert res["costs"]["latency_ms"] is not None and res["fits"] == (res["costs"]["latency_ms"] <= 5)


def test_entropy_ramp_sharpens_the_distribution(digits) -> None:
    cfg = {"epochs": 4, "warmup_epochs": 1, "lower": 0.0}
    plain = _search(digits, Budgets(max_params=10**6), **cfg)
    sharp = _search(digits, Budgets(max_params=10**6), **cfg, entropy_weight=2.0)
    assert [sharp.entropy_mu(e) for e in range(4)] == [0.0, 0.0, 1.0, 2.0]
    assert plain.entropy_mu(3) == 0.0
    x, y = next(iter(sharp.val_batches))
    for s in (plain, sharp):
        s.epoch = 3
        for _ in range(15):
            s.alpha_step(x, y)

    def entropy(s: DCASearch) -> float:
        p = s.op_probs().detach()
        return float(-(p * p.log()).sum(-1).mean())

    assert entropy(sharp) < entropy(plain) - 0.05


def test_a_checkpoint_from_before_the_new_options_resumes(digits, tmp_path: Path) -> None:
    from edgenas.core.rundir import RunDir
    from edgenas.search.methods.dca import CHECKPOINT, LEGACY_OPTIONS

    run = RunDir.create("search", tmp_path / "r")
    shape = NetShape.for_data(digits.info, 8, 1)
    budgets = Budgets(max_params=10**6)
    old = DCAConfig(**(FAST | LEGACY_OPTIONS))
    s = DCASearch(old, digits, shape, budgets, terms_for_budgets(budgets, shape), torch.device("cpu"), run=run)
    s.save_checkpoint()
    state = torch.load(run.file(CHECKPOINT), weights_only=False)
    # as written before these options existed: every option flat (no `experimental`), these two missing
    state["config"] = {k: v for k, v in old.flat().items() if k not in LEGACY_OPTIONS}
    torch.save(state, run.file(CHECKPOINT))
    again = DCASearch(old, digits, shape, budgets, terms_for_budgets(budgets, shape), torch.device("cpu"), run=run)
    assert again.load_checkpoint()
    new = DCAConfig(**FAST)  # today's defaults differ (derive="map"): refused, not silently mixed
    other = DCASearch(new, digits, shape, budgets, terms_for_budgets(budgets, shape), torch.device("cpu"), run=run)
    with pytest.raises(ResumeError):
        other.load_checkpoint()


@pytest.mark.parametrize(
    ("yaml_text", "extra", "message"),
    [
        ("name: none\n", [], "sets no budget"),
        ("name: x\nbudgets:\n  max_params: 40k\n", ["--epochs", "2", "--warmup-epochs", "2"], "warm-up"),
        ("name: x\nbudgets:\n  max_params: 40k\n", ["--val-fraction", "0"], "val-fraction"),
    ],
)
def test_cli_search_bad_input_is_one_line(tmp_path: Path, capsys, yaml_text: str, extra: list, message: str) -> None:
    dev = tmp_path / "dev.yaml"
    dev.write_text(yaml_text)
    args = _search_args(dev, tmp_path / "r", *extra)
    assert run(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing half-made to trip over on the next try


def test_resume_of_a_missing_run_is_a_user_error(tmp_path: Path, capsys) -> None:
    assert run(["search", "--resume", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_derive_fills_a_collapsed_cell_up_towards_the_budget() -> None:
    probs = np.full((len(EDGES), len(OPS)), 0.1)
    probs[:, OPS.index("avg_pool_3x3")] = 0.4  # collapse: a free op wins every edge
    probs[:, OPS.index("nor_conv_1x1")] = 0.3  # ... with a conv close behind
    budgets = Budgets(max_params=count_params(NB201Network(NB201Arch(("nor_conv_1x1",) * 6), SHAPE)))
    terms = terms_for_budgets(budgets, SHAPE)

    def exact(arch: NB201Arch) -> dict[str, float]:
        return {"params": count_params(NB201Network(arch, SHAPE))}

    plain = derive(probs, budgets, terms, exact)
    assert plain.arch == plain.argmax and not plain.repairs  # lower=0: the argmax as it is
    filled = derive(probs, budgets, terms, exact, lower=0.9)
    assert filled.fits
    assert filled.costs["params"] >= 0.9 * budgets.max_params
    assert all(r["reason"].startswith("fill") and r["to"] == "nor_conv_1x1" for r in filled.repairs)


def test_cli_passes_the_derivation_and_entropy_options(tmp_path: Path, monkeypatch) -> None:
    import edgenas.search.run as command

    seen: dict = {}

    def fake_search(**kw):
        seen.update(kw)
        raise ConfigError("stop here")

    monkeypatch.setattr(command, "search", fake_search)
    dev = tmp_path / "dev.yaml"
    dev.write_text("name: tiny\nbudgets:\n  max_params: 40k\n")
    args = _search_args(dev, tmp_path / "run", "--derive", "greedy", "--entropy-weight", "0.3")
    assert run(args) != 0
    assert seen["options"]["derive"] == "greedy" and seen["options"]["entropy_weight"] == 0.3
    cfg = DCAConfig.from_options({k: v for k, v in seen["options"].items()})
    assert cfg.experimental.derive == "greedy" and cfg.experimental.entropy_weight == 0.3
    assert DCAConfig().experimental.derive == "map" and DCAConfig().experimental.entropy_weight == 0.0


# -- experimental options: flat or nested, old runs ------------------------------------------
def test_experimental_options_given_flat_or_nested_are_the_same_config() -> None:
    flat = {"epochs": 4, "penalty": "signed", "derive": "greedy", "entropy_weight": 0.3, "edge_norm": False}
    nested = {"epochs": 4, "experimental": {"penalty": "signed", "derive": "greedy", "entropy_weight": 0.3,
                                            "edge_norm": False}}  # fmt: skip
    a, b = DCAConfig.from_options(flat), DCAConfig.from_options(nested)
    assert a == b and a.experimental.penalty == "signed" and not a.experimental.edge_norm
    assert a.model_dump()["experimental"]["derive"] == "greedy" and "derive" not in a.model_dump()
    assert a.flat() == {**DCAConfig(epochs=4).flat(), **flat}
    assert DCAConfig.from_options({"penalty": "signed", "experimental": {"derive": "greedy"}}) == DCAConfig(
        experimental={"penalty": "signed", "derive": "greedy"}
    )
    assert DCAConfig(**a.model_dump()) == a  # what a run stores reads back as it was


def test_an_experimental_option_given_both_ways_or_bad_is_a_one_line_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"^derive: given both flat and under experimental"):
        DCAConfig.from_options({"derive": "map", "experimental": {"derive": "greedy"}})
    with pytest.raises(ConfigError, match=r"^penalty: Input should be 'hinge' or 'signed'"):
        DCAConfig.from_options({"penalty": "soft"})
    with pytest.raises(ConfigError, match=r"^experimental\.entropy_weight: Input should be greater"):
        DCAConfig.from_options({"experimental": {"entropy_weight": -1}})
    with pytest.raises(ConfigError, match=r"^experimental\.derivee: Extra inputs"):
        DCAConfig.from_options({"experimental": {"derivee": "map"}})
    with pytest.raises(ConfigError, match=r"^experimental: Input should be a valid dictionary"):
        DCAConfig.from_options({"experimental": "greedy"})


def test_old_runs_take_the_legacy_values_and_new_runs_their_own() -> None:
    """`edgenas search --resume` builds the config from the stored options, legacy values filling the gaps."""
    from edgenas.search.bilevel import LEGACY
    from edgenas.search.methods import METHODS

    legacy = {LEGACY: dict(METHODS.get("dca").legacy_options)}
    before = DCAConfig(**(legacy | {"epochs": 4, "penalty": "hinge"}))  # flat, before derive/entropy_weight
    assert before.experimental.derive == "greedy" and before.experimental.entropy_weight == 0.0
    flat = DCAConfig(**(legacy | {"epochs": 4, "derive": "map"}))  # flat, after derive existed
    assert flat.experimental.derive == "map"
    new = DCAConfig.from_options({"epochs": 4})
    assert DCAConfig(**(legacy | new.model_dump())) == new  # nested: every option stored, nothing filled


def test_the_cli_takes_experimental_options_flat_or_nested(tmp_path: Path, monkeypatch) -> None:
    import edgenas.search.run as command

    seen: list[dict] = []

    def fake_search(**kw):
        seen.append(kw["options"])
        raise ConfigError("stop here")

    monkeypatch.setattr(command, "search", fake_search)
    dev = tmp_path / "dev.yaml"
    dev.write_text("name: tiny\nbudgets:\n  max_params: 40k\n")
    assert run(_search_args(dev, tmp_path / "a", "--option", "edge_norm=false")) != 0
    assert run(_search_args(dev, tmp_path / "b", "--option", "experimental={edge_norm: false}")) != 0
    flat, nested = (DCAConfig.from_options(o) for o in seen)
    assert flat == nested and not flat.experimental.edge_norm


def test_a_run_config_takes_experimental_options_flat_or_nested(tmp_path: Path) -> None:
    from edgenas.pipeline.config import load_run_config

    def load(dca: str) -> None:
        path = tmp_path / "run.yaml"
        path.write_text(f"devices:\n  - name: a\n    budgets: {{max_params: 100k}}\nsearch:\n  dca: {dca}\n")
        load_run_config(path)

    load("{epochs: 4, derive: greedy}")
    load("{epochs: 4, experimental: {derive: greedy}}")
    with pytest.raises(ConfigError, match=r":5: search\.dca: derive: given both flat and under experimental"):
        load("{derive: greedy, experimental: {derive: map}}")
    with pytest.raises(ConfigError, match=r"search\.dca: experimental\.derive: Input should be"):
        load("{experimental: {derive: best}}")


def test_cpu_search_runs_channels_last_and_a_resume_keeps_the_checkpoints_format(
    digits, tmp_path: Path, monkeypatch
) -> None:
    from edgenas.core.precision import CHANNELS_LAST_ENV
    from edgenas.core.rundir import RunDir
    from edgenas.search.methods.dca import CHECKPOINT

    shape = NetShape.for_data(digits.info, 8, 1)
    budgets = Budgets(max_params=10**6)

    def make(run: RunDir) -> DCASearch:
        return DCASearch(
            DCAConfig(**FAST), digits, shape, budgets, terms_for_budgets(budgets, shape), torch.device("cpu"), run=run
        )

    run = RunDir.create("search", tmp_path / "r")
    s = make(run)
    s.save_checkpoint()
    assert torch.load(run.file(CHECKPOINT), weights_only=False)["channels_last"] is True

    def conv_weight(search: DCASearch) -> torch.Tensor:
        convs = (m for m in search.net.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1:] == (4, 3, 3))
        return next(convs).weight

    assert conv_weight(s).is_contiguous(memory_format=torch.channels_last)
    # a checkpoint written before CPU searches ran channels_last (no key) resumes in NCHW
    state = torch.load(run.file(CHECKPOINT), weights_only=False)
    del state["channels_last"]
    torch.save(state, run.file(CHECKPOINT))
    old = make(run)
    assert old.load_checkpoint() and old.step_precision().channels_last is False
    assert not conv_weight(old).is_contiguous(memory_format=torch.channels_last)
    # the switch reaches a new search; a resume keeps what its checkpoint recorded, whatever the switch says
    monkeypatch.setenv(CHANNELS_LAST_ENV, "0")
    off = make(RunDir.create("search", tmp_path / "off"))
    assert off.step_precision().channels_last is False
    s.save_checkpoint()  # `s` keeps the format it chose on first use: channels_last
    again = make(run)
    assert again.load_checkpoint() and again.step_precision().channels_last is True
    assert conv_weight(again).is_contiguous(memory_format=torch.channels_last)
