"""DCA-NAS and DNAD on the DARTS cell space: the supernet's DCA-NAS forms (channel bottleneck,
Eq. 5 shared op banks), both methods and both variants end to end on a tiny setting (C=4,
3 cells, digits at 12×12), the command hints the CLI prints, and `edgenas run` with DARTS
devices that search."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch

from edgenas.cli import build_parser, run
from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.cost.params import count_params
from edgenas.spaces import get_space
from edgenas.spaces.darts.arch import EDGES, OPS
from edgenas.spaces.darts.network import cell_layout
from edgenas.spaces.darts.supernet import BankedCell, DartsSuperNet, SuperCell, extract_subnet

DARTS = get_space("darts")
SHAPE = NetShape(width=8, cells=3, in_channels=1, resolution=12, num_classes=10)
NET = ["--space", "darts", "--width", "4", "--cells", "3", "--dataset", "digits", "--resize", "12"]
SEARCH = [*NET, "--subset", "300", "--epochs", "2", "--warmup-epochs", "1", "--search-width", "4", "--batch-size", "32"]


def results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def hint(out: str, prefix: str) -> list[str]:
    """The words of the command hint after `prefix` in the CLI's output (a shell parse of it)."""
    (line,) = [ln for ln in out.splitlines() if ln.startswith(prefix)]
    return shlex.split(line[len(prefix) :])


# -- the supernet's DCA-NAS forms ---------------------------------------------------------------
def test_banks_and_bottleneck_build_banked_cells() -> None:
    plain = DartsSuperNet(SHAPE, k=1)
    shared = DartsSuperNet(SHAPE, k=1, share_sources=True)
    assert isinstance(plain.cells[0], SuperCell) and isinstance(shared.cells[0], BankedCell)
    assert len(shared.cells[0].banks) == 5  # one op bank per source state 0..4 (Eq. 5), not one per edge
    ops = sum(p.numel() for p in plain.cells[0].edges.parameters())
    assert sum(p.numel() for p in shared.cells[0].banks.parameters()) == ops * 5 // 14  # same ops at every edge
    narrow = DartsSuperNet(SHAPE, k=1, bottleneck=2, share_sources=True)
    sep = narrow.cells[1].banks[0].ops[OPS.index("sep_conv_3x3")]
    assert sep[1].in_channels == SHAPE.width and sep[1].stride == (2, 2)  # C/2 at the reduction's 2C
    assert len(narrow.cells[0].expand) == len(EDGES)  # back to C: one 1×1 conv-BN per edge
    x = torch.randn(2, 1, 12, 12)
    weights = torch.softmax(torch.randn(2 * len(EDGES), len(OPS)), -1)
    logits, feats = narrow.forward_features(x, weights)
    ref = plain.forward_features(x, weights)[1]
    assert logits.shape == (2, 10) and [f.shape for f in feats] == [f.shape for f in ref]
    (g,) = torch.autograd.grad(
        shared(x, weights).sum(), [shared.cells[0].banks[0].ops[OPS.index("sep_conv_3x3")][1].weight]
    )
    assert g.abs().sum() > 0  # an edge that reads a shared op gets its gradient through that module


def test_refused_settings_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"partial channels .* or a channel bottleneck"):
        DartsSuperNet(SHAPE, k=2, bottleneck=2)
    with pytest.raises(ConfigError, match="not divisible"):
        DartsSuperNet(SHAPE, k=1, bottleneck=3)
    with pytest.raises(ConfigError, match="bottleneck or shared source ops"):
        extract_subnet(DartsSuperNet(SHAPE, k=1, share_sources=True), DARTS.cheapest())
    assert isinstance(DARTS.build_supernet(SHAPE, 1, bottleneck=2).cells[0], BankedCell)


@pytest.mark.parametrize("k", [1, 2])
def test_a_banked_cell_without_sharing_or_bottleneck_computes_the_plain_cell(k: int) -> None:
    """One bank per edge, b = 1: the same modules as the PC-DARTS cell, so with its weights it
    computes the same (normal and reducing edges, partial channels and their bypass)."""
    torch.manual_seed(0)
    for spec in cell_layout(SHAPE)[:2]:
        plain, banked = SuperCell(spec, k).eval(), BankedCell(spec, k, 1, False).eval()
        banked.load_state_dict({n.replace("edges.", "banks."): t for n, t in plain.state_dict().items()})
        s0 = torch.randn(2, spec.c_pp, spec.side_pp, spec.side_pp)
        s1 = torch.randn(2, spec.c_p, spec.side, spec.side)
        w, beta = torch.rand(len(EDGES), len(OPS)), torch.rand(len(EDGES))
        alive = torch.rand(len(EDGES), len(OPS)) > 0.3
        torch.testing.assert_close(banked(s0, s1, w, beta, alive), plain(s0, s1, w, beta, alive))


def test_a_shared_bank_runs_once_and_skips_ops_dead_on_every_edge_leaving_it() -> None:
    net = DartsSuperNet(SHAPE, k=1, share_sources=True)
    cell = net.cells[0]
    bank_calls: list[int] = []
    for b, bank in enumerate(cell.banks):
        bank.register_forward_hook(lambda *_, b=b: bank_calls.append(b))
    conv_calls: list[int] = []
    sep = OPS.index("sep_conv_3x3")
    cell.banks[0].ops[sep].register_forward_hook(lambda *_: conv_calls.append(1))
    out_of_0 = [e for e, (_i, j) in enumerate(EDGES) if j == 0]
    net.alive[out_of_0[:-1], sep] = False  # still alive on one edge leaving state 0
    x, w = torch.randn(1, 1, 12, 12), torch.rand(2 * len(EDGES), len(OPS))
    net(x, w)
    assert bank_calls == [0, 1, 2, 3, 4] and conv_calls == [1]
    net.alive[out_of_0, sep] = False
    net(x, w)
    assert conv_calls == [1]  # dead on every edge leaving state 0: not computed


# -- searches end to end ------------------------------------------------------------------------
@pytest.mark.slow  # ~60-100 s; test_dca_paper_variant_on_darts covers a fast DCA search on darts
def test_dca_on_darts_prints_a_train_command_that_parses_back(tmp_path: Path, capsys) -> None:
    dev = tmp_path / "dev.yaml"
    dev.write_text("name: tiny\nbudgets: {max_params: 6000}\n")
    out = tmp_path / "dca run"  # a space in the path: the hint must quote it too
    assert run(["search", "--device", str(dev), *SEARCH, "--k", "2", "--run-dir", str(out), "--quiet"]) == 0
    res = results(out)
    assert res["fits"] and res["costs"]["params"] <= 6000
    words = hint(capsys.readouterr().out, "train it: ")
    assert words[:2] == ["edgenas", "train"]
    args = build_parser().parse_args(words[1:])
    assert (args.space, args.width, args.cells, args.dataset, args.resize) == ("darts", 4, 3, "digits", 12)
    assert str(DARTS.parse(args.arch)) == res["arch"]


def test_dca_paper_variant_on_darts(tmp_path: Path) -> None:
    dev = tmp_path / "dev.yaml"
    dev.write_text("name: tiny\nbudgets: {max_params: 6000}\n")
    out = tmp_path / "paper"
    args = ["search", "--device", str(dev), *SEARCH, "--option", "variant=paper", "--run-dir", str(out), "--quiet"]
    assert run(args) == 0
    res = results(out)
    cfg = res["config"]
    assert (cfg["variant"], cfg["k"], cfg["bottleneck"], cfg["share_sources"]) == ("paper", 1, 2, True)
    assert res["derivation"] == "top" and res["arch"].startswith("Genotype(")
    assert res["costs"]["params"] == count_params(DARTS.build(DARTS.parse(res["arch"]), NetShape(4, 3, 1, 12, 10)))


# DNAD: a short search that deletes (fast θ, early threshold, short patience), few images to rate snapshots
DNAD_FAST = {"epochs": 3, "warmup_epochs": 1, "batch_size": 32, "search_width": 4, "k": 2, "alpha_lr": 0.3,
             "lambda_init": 5.0, "delete_threshold": 0.2, "delete_patience": 2, "bn_batches": 2, "auto_levels": 4,
             "eval_images": 100, "snapshot_finetune": 3}  # fmt: skip
DNAD_PAPER = {"variant": "paper", "epochs": 2, "batch_size": 32, "search_width": 4, "bn_batches": 2,
              "eval_images": 100, "snapshot_finetune": 3, "alpha_lr": 5.0, "gamma_init": 0.06, "gamma_max": 0.06,
              "deletion_rate": 0.5, "stall_steps": 3, "stop_sparsity": 0.1}  # fmt: skip


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """`edgenas teacher --space darts` (the DARTS-V2 cell), tiny."""
    t = tmp_path_factory.mktemp("teacher") / "t"
    args = ["teacher", *NET, "--subset", "300", "--epochs", "1", "--batch-size", "64", "--run-dir", str(t), "--quiet"]
    assert run(args) == 0
    return t / "model.pt"


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["edgenas", "paper"])
def test_dnad_on_darts_then_distill_its_hint(teacher: Path, tmp_path: Path, capsys, variant: str) -> None:
    """DNAD on DARTS, both variants (about 20 s each here), then the printed distill command runs."""
    out = tmp_path / "dnad"
    args = ["search", "--method", "dnad", "--teacher", str(teacher), *NET, "--subset", "300", "--run-dir", str(out)]
    for k, v in (DNAD_FAST if variant == "edgenas" else DNAD_PAPER).items():
        args += ["--option", f"{k}={v}"]
    assert run([*args, "--quiet"]) == 0
    res = results(out)
    assert res["config"]["variant"] == variant and res["pareto"] and res["deletions"]
    assert all(DARTS.parse(s["arch"]) for s in res["pareto"])
    words = hint(capsys.readouterr().out, "distill one: ")
    assert words[:2] == ["edgenas", "distill"] and words[words.index("--space") + 1] == "darts"
    s = tmp_path / "student"
    assert run([*words[1:], "--subset", "300", "--epochs", "1", "--run-dir", str(s), "--quiet"]) == 0
    assert results(s)["arch"] == res["pareto"][0]["arch"] and results(s)["space"] == "darts"


TINY_RUN = """name: tiny-darts-search
seed: 0
dataset: {name: digits, subset: 400, val_fraction: 0.1, resize: 12}
space: {name: darts, width: 4, cells: 3}
devices:
  - name: small
    budgets: {max_params: 6k}
    method: dca
  - name: big
    budgets: {max_params: 20k}
    method: dnad
screen: {n: 6, top: 2, batch: 16, latency_tries: 2}
search:
  subset: 300
  dca: {epochs: 2, warmup_epochs: 1, search_width: 4, batch_size: 32}
  dnad: DNAD
teacher: {kind: plain, width: 4, cells: 3, epochs: 1}
train: {epochs: 1, batch_size: 64}
executor: {kind: local, workers: 1}
""".replace("DNAD", json.dumps(DNAD_FAST))


@pytest.mark.slow
def test_run_with_darts_devices_that_search_by_dca_and_dnad(tmp_path: Path) -> None:
    """`edgenas run` on a DARTS config whose devices search (DCA-NAS, DNAD); 10 min on a loaded 2-core machine."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_RUN)
    r = tmp_path / "run"
    assert run(["run", str(cfg), "--run-dir", str(r), "--quiet"]) == 0
    res = results(r)
    assert [d["device"] for d in res["devices"]] == ["small", "big"] and res["all_pass"]
    assert all(d["arch"].startswith("Genotype(") for d in res["devices"])
    assert (r / "search" / "small" / "results.json").is_file() and (r / "search" / "dnad" / "results.json").is_file()
