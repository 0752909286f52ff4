"""Every command a user runs with NB201 also runs with `--space darts`: a tiny DARTS setting
(C=4, 3 cells: normal, reduce, reduce) on the 8x8 digits resized to 12x12; what is refused is
refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgenas.cli import run
from edgenas.spaces.darts import DARTS_V2

NET = ["--space", "darts", "--width", "4", "--cells", "3", "--dataset", "digits", "--resize", "12"]
TRAIN = [*NET, "--subset", "400", "--epochs", "1", "--batch-size", "64", "--quiet"]
REPO = Path(__file__).resolve().parents[1]
SMALL = (
    "Genotype(normal=[('skip_connect', 0), ('sep_conv_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), "
    "('avg_pool_3x3', 1), ('dil_conv_3x3', 3), ('skip_connect', 0), ('sep_conv_5x5', 4)], normal_concat=range(2, 6), "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 1), ('skip_connect', 2), "
    "('dil_conv_5x5', 0), ('skip_connect', 3), ('avg_pool_3x3', 1), ('skip_connect', 4)], reduce_concat=range(2, 6))"
)


def device(tmp_path: Path, budgets: str, latency: str = "{threads: 1, warmup: 2, repeats: 5}") -> Path:
    path = tmp_path / "dev.yaml"
    path.write_text(f"name: dev\nbudgets: {budgets}\nlatency: {latency}\n")
    return path


def results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def test_train_with_auxiliary_head_and_drop_path(tmp_path: Path) -> None:
    from edgenas.train.model_file import load_model_file

    t = tmp_path / "t"
    args = ["train", "--arch", DARTS_V2, *TRAIN, "--auxiliary-weight", "0.4", "--drop-path", "0.2"]
    assert run([*args, "--run-dir", str(t)]) == 0
    res = results(t)
    assert res["space"] == "darts" and res["auxiliary_weight"] == 0.4 and res["drop_path"] == 0.2
    model, blob = load_model_file(t)  # rebuilt from space + genotype: the auxiliary head was not saved
    assert blob["space"] == "darts" and not any("auxiliary" in k for k in blob["state_dict"])
    assert str(model.arch) == res["arch"] and model.auxiliary_head is None
    ckpt = torch.load(t / "checkpoint.pt", weights_only=False)  # it was trained: its weights are checkpointed
    assert any(k.startswith("auxiliary_head.") for k in ckpt["model"])


@pytest.mark.slow
def test_export_a_trained_darts_model(tmp_path: Path, capsys) -> None:
    """About 15 s: exporting a DARTS network to ONNX takes torch.export about 10 s here."""
    t = tmp_path / "t"
    assert run(["train", "--arch", SMALL, *TRAIN, "--run-dir", str(t)]) == 0
    capsys.readouterr()
    assert run(["export", str(t), "--onnx", "--repeats", "5"]) == 0
    assert "max abs diff" in capsys.readouterr().out
    from edgenas.cost.params import count_params
    from edgenas.train.model_file import load_model_file

    report = json.loads((t / "model.json").read_text())
    assert report["max_abs_diff"] <= report["atol"]
    assert report["cost"]["params"] == count_params(load_model_file(t)[0])


def test_devices_check_measures_latency_and_refuses_another_spaces_table(tmp_path: Path, capsys) -> None:
    dev = device(tmp_path, "{max_params: 2k, max_flops: 50M, max_latency_ms: 50}")
    assert run(["devices", "check", "--arch", DARTS_V2, "--device", str(dev), *NET]) == 1  # 2.6k params > 2k
    out = capsys.readouterr().out
    assert out.count("pass") == 2 and out.count("FAIL") == 1 and "C=4 N=3" in out
    (tmp_path / "t.lut.json").write_bytes((REPO / "tests/fixtures/lut/v1_table.lut.json").read_bytes())
    table = device(tmp_path, "{max_latency_ms: 5}", "{source: table, table: t.lut.json}")
    assert run(["devices", "check", "--arch", DARTS_V2, "--device", str(table), *NET]) == 2
    err = capsys.readouterr().err
    assert "covers nb201 networks; a darts network is not one" in err and "\n" not in err.strip()


def test_screen_random_with_a_budget_and_evolution(tmp_path: Path) -> None:
    dev = device(tmp_path, "{max_params: 9k, max_flops: 1.5M}")  # no latency budget: nothing exported
    s = tmp_path / "s"
    assert run(["screen", *NET, "--n", "5", "--top", "2", "--batch", "8", "--device", str(dev), "--run-dir", str(s),
                "--quiet"]) == 0  # fmt: skip
    res = results(s)
    assert res["space"] == "darts" and len(res["chosen"]) == 2
    assert all(r["params"] <= 9000 and r["arch"].startswith("Genotype(") for r in res["candidates"])
    e = tmp_path / "e"
    assert run(["screen", *NET, "--strategy", "evolution", "--population", "3", "--n", "6", "--top", "1",
                "--batch", "8", "--run-dir", str(e), "--quiet"]) == 0  # fmt: skip
    assert results(e)["strategy"] == "evolution" and len(results(e)["candidates"]) == 6


def test_plain_teacher_defaults_to_darts_v2_then_distill(tmp_path: Path) -> None:
    from edgenas.spaces import get_space

    t, s = tmp_path / "t", tmp_path / "s"
    assert run(["teacher", *TRAIN, "--run-dir", str(t)]) == 0
    assert get_space("darts").parse(results(t)["arch"]) == get_space("darts").parse(DARTS_V2)
    assert run(["distill", "--student", SMALL, "--teacher", str(t), *TRAIN, "--run-dir", str(s)]) == 0
    assert results(s)["teacher"] == str(t) and results(s)["space"] == "darts"


def test_generic_teacher_samples_darts_students_then_distils_with_their_capacity_code(tmp_path: Path) -> None:
    from edgenas.core.space import NetShape
    from edgenas.distill.generic_teacher import CapacityCoder
    from edgenas.train.model_file import load_model_file

    t, s = tmp_path / "t", tmp_path / "s"
    generic = ["--generic", "--student-width", "4", "--student-cells", "3"]
    assert run(["teacher", *generic, *TRAIN, "--run-dir", str(t)]) == 0
    _, blob = load_model_file(t)
    assert blob["meta"]["teacher"]["kind"] == "generic" and blob["meta"]["teacher"]["students_sampled"] > 0
    assert run(["distill", "--student", SMALL, "--teacher", str(t), *TRAIN, "--run-dir", str(s)]) == 0
    _, student = load_model_file(s)
    coder = CapacityCoder(NetShape(4, 3, 1, 12, 10), "darts")
    assert student["meta"]["capacity_code"] == pytest.approx(coder.code(coder._space.parse(SMALL)).tolist())
    assert torch.all(coder.code(coder._space.cheapest()) == -1)


def test_capacity_codes_span_minus_one_to_one_over_the_space() -> None:
    import numpy as np

    from edgenas.core.space import NetShape
    from edgenas.distill.generic_teacher import CapacityCoder

    shape = NetShape(4, 3, 1, 12, 10)
    coder = CapacityCoder(shape, "darts")
    sp = coder._space
    assert torch.all(coder.code(sp.cheapest()) == -1)
    for k, kind in enumerate(("flops", "params")):  # the costliest genotype: each node's two dearest inputs
        dearest = sp.top_weighted(sp.position_costs(kind, shape)[1])
        assert float(coder.code(dearest)[k]) == pytest.approx(1.0)
    codes = torch.stack([coder.code(a) for a in sp.sample_distinct(20, np.random.default_rng(0))])
    assert (codes > -1).all() and (codes < 1).all()


def test_what_darts_cannot_do_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    nb201 = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    args = ["train", "--arch", nb201, "--dataset", "digits", "--auxiliary-weight", "0.4", "--quiet"]
    assert run([*args, "--run-dir", str(tmp_path / "x")]) == 2
    assert "no auxiliary head or drop-path" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert run(["train", "--arch", nb201, *TRAIN, "--run-dir", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip()
    assert "a DARTS genotype reads Genotype(" in err and "\n" not in err


def test_the_darts_example_config_is_valid() -> None:
    from edgenas.pipeline.config import load_run_config

    cfg, profiles = load_run_config(REPO / "examples" / "fashion_darts.yaml")
    assert cfg.space.name == "darts" and len(profiles) == 3
    assert {cfg.method_for(i) for i in range(3)} == {"screen"} and cfg.teacher.kind == "plain"


TINY_RUN = """name: tiny-darts
seed: 0
dataset: {name: digits, subset: 600, val_fraction: 0.1, resize: 12}
space: {name: darts, width: 4, cells: 3}
devices:
  - name: small
    budgets: {max_params: 5k, max_flops: 900k, max_latency_ms: 50}
    latency: {threads: 1, warmup: 2, repeats: 5}
  - name: big
    budgets: {max_params: 20k, max_flops: 5M}
screen: {n: 8, top: 2, batch: 16, latency_tries: 3}
search: {method: screen}
teacher: {kind: plain, width: 4, cells: 3, epochs: 1}
train: {epochs: 1, batch_size: 64}
executor: {kind: local, workers: 1}
"""


@pytest.mark.slow
def test_truth_of_darts_genotypes(tmp_path: Path) -> None:
    out = tmp_path / "truth.jsonl"
    assert run(["bench", "truth", "--n", "2", "--out", str(out), "--workers", "1", *TRAIN]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(r["arch"].startswith("Genotype(") and r["params"] > 0 for r in rows)


@pytest.mark.slow
def test_run_on_screen_devices_then_bench_e2e(tmp_path: Path) -> None:
    """`edgenas run` on a DARTS config (about 2.5 min here), then `bench e2e` with one seed (about 4 min)."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_RUN)
    r = tmp_path / "run"
    assert run(["run", str(cfg), "--run-dir", str(r), "--quiet"]) == 0
    res = results(r)
    assert [d["device"] for d in res["devices"]] == ["small", "big"] and res["all_pass"]
    assert all(d["arch"].startswith("Genotype(") for d in res["devices"])
    assert (r / "report.html").is_file()
    args = ["bench", "e2e", str(r), "--seeds", "1", "--sample", "20", "--workers", "1", "--stock", "none", "--quiet"]
    assert run(args) == 0
    e2e = json.loads((r / "e2e.json").read_text())
    assert e2e["protocol"]["space"] == "darts" and e2e["pool"]["kind"] == "sample"
    assert {a for d in e2e["devices"] for a in d["arms"]} == {"pick", "largest", "random"}
