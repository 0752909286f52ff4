"""The mobile space (OFA-MobileNetV3 style) and the stock MobileNet baselines: block costs by hand,
the canonical string, the depth choice as an identity in the supernet, the baseline multiplier search,
and every command on a tiny mobile setting (width 4 on the 8x8 digits resized to 12x12)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgenas.cli import run
from edgenas.core.device import Budgets, DeviceProfile
from edgenas.core.errors import ArchError, ConfigError
from edgenas.core.space import NetShape
from edgenas.cost.flops import count_flops
from edgenas.cost.params import count_params
from edgenas.spaces import get_space
from edgenas.spaces.mobile.network import BlockSpec, active_specs, macro
from edgenas.spaces.mobile.stock import StockMobileNet

MOBILE = get_space("mobile")
SHAPE = NetShape(4, 1, 1, 12, 10)
NET = ["--space", "mobile", "--width", "4", "--dataset", "digits", "--resize", "12"]
TRAIN = [*NET, "--subset", "300", "--epochs", "1", "--batch-size", "64", "--quiet"]
ARCH = "k3e3-k5e4|k3e3-k3e3-k7e6|k5e3-k3e3|k3e4-k3e3|k3e3-k3e3-k3e3-k5e6"


def results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def device(tmp_path: Path, budgets: str, latency: str = "{threads: 1, warmup: 2, repeats: 5}") -> Path:
    path = tmp_path / "dev.yaml"
    path.write_text(f"name: dev\nbudgets: {budgets}\nlatency: {latency}\n")
    return path


def test_a_k5e4_block_with_se_costs_what_the_formulas_say() -> None:
    # 16 -> 24 channels, stride 2 on 28x28, ReLU, SE: hidden 4*16 = 64, SE squeeze 64/4 = 16
    spec = BlockSpec(stage=1, index=0, c_in=16, c_out=24, stride=2, side=28, act="relu", se=True)
    block = spec.block(5, 4)
    params = (16 * 64 + 2 * 64) + (64 * 5 * 5 + 2 * 64) + (64 * 16 + 16 + 16 * 64 + 64) + (64 * 24 + 2 * 24)
    assert count_params(block) == params == 6592
    # 2 FLOPs per multiply-add: expand at 28x28, depthwise and project at 14x14, SE on 1x1 maps
    flops = 2 * (28 * 28 * 16 * 64 + 14 * 14 * 64 * 25 + (64 * 16 + 16 * 64) + 14 * 14 * 64 * 24)
    assert count_flops(block, (16, 28, 28)) == flops == 2_839_040
    assert not block.residual and spec.block(5, 4).se is not None


def test_parse_format_round_trip_and_errors_name_the_token() -> None:
    arch = MOBILE.parse(ARCH)
    assert str(arch) == ARCH and MOBILE.parse(str(arch)) == arch and arch.depths == (2, 3, 2, 2, 4)
    assert MOBILE.parse(" k3e3 - k5e4 |" + ARCH.split("|", 1)[1]) == arch  # spacing is free
    for bad, token in (
        (ARCH.replace("k7e6", "k9e6"), "k9e6"),
        (ARCH.replace("k5e4", "k5e5"), "k5e5"),
        (ARCH.replace("k5e4", "x5"), "x5"),
        ("k3e3-k3e3|k3e3-k3e3", "5 stages"),
        (ARCH.replace("k3e3-k5e4", "k3e3"), "stage 1"),
    ):
        with pytest.raises(ArchError, match=token) as err:
            MOBILE.parse(bad)
        assert "\n" not in str(err.value)


def test_both_macros_and_the_mutations() -> None:
    small, large = macro(NetShape(16, 1, 1, 28, 10)), macro(NetShape(16, 1, 3, 224, 1000))
    assert small.widths == large.widths == (24, 40, 80, 112, 160) and (small.head_side, large.head_side) == (4, 7)
    net = MOBILE.build(MOBILE.parse(ARCH), NetShape(16, 1, 3, 224, 1000))
    assert net(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    rng = np.random.default_rng(0)
    a = MOBILE.parse(ARCH)
    kinds = set()
    for _ in range(60):
        b = MOBILE.mutate(a, rng)
        assert b != a
        kinds.add("depth" if b.depths != a.depths else "block")
    assert kinds == {"depth", "block"}


def test_a_skipped_block_is_the_identity_in_the_supernet_and_costs_what_the_derived_net_does() -> None:
    torch.manual_seed(0)
    arch = MOBILE.parse(ARCH)
    w = MOBILE.onehot(arch)
    skip = MOBILE.choice_ops.index("skip")
    assert w[2, skip] == 1 and w[3, skip] == 1 and w[19, skip] == 0  # stage 1 depth 2: blocks 3, 4 skipped
    sup = MOBILE.supernet(SHAPE).eval()
    x = torch.randn(2, *SHAPE.input_shape)
    with torch.no_grad():
        _, feats = sup.forward_features(x, w)
        assert torch.equal(feats[3], feats[2]) and torch.equal(feats[4], feats[2])  # identity at blocks 3, 4
        derived = MOBILE.subnet(sup, arch).eval()
        torch.testing.assert_close(derived(x), sup(x, w), rtol=1e-5, atol=1e-5)
    terms = MOBILE.cost_terms(Budgets(max_params=1, max_flops=1), SHAPE)
    assert float(terms["max_params"].expected(w)) == count_params(derived) == count_params(MOBILE.build(arch, SHAPE))
    assert float(terms["max_flops"].expected(w)) == count_flops(derived, SHAPE.input_shape)
    # a skip at block 3 under a built block 4 is depth 3 (same shape, same cost)
    index = MOBILE.encode(arch)
    index[4 + 2], index[4 + 3] = skip, MOBILE.choice_ops.index("k7e6")
    assert MOBILE.decode(index) == arch
    assert not MOBILE.op_mask()[0, skip] and MOBILE.op_mask()[2, skip]
    with pytest.raises(ArchError, match="blocks 1 and 2"):
        index[0] = skip
        MOBILE.decode(index)


def test_the_baseline_multiplier_search_takes_the_largest_that_fits() -> None:
    from edgenas.core.cost import Cost
    from edgenas.pipeline.baseline import largest_fitting, multipliers

    grid = multipliers()
    assert grid[0] == 2.0 and grid[-1] == 0.05 and len(grid) == 40
    shape = NetShape(16, 1, 1, 28, 10)
    for family in ("mbv2", "mbv3-small"):
        params = count_params(StockMobileNet(family, 0.5, shape))
        profile = DeviceProfile(name="hand", budgets=Budgets(max_params=params))

        def exact_params(m: float, latency: bool, family: str = family) -> Cost:
            return Cost(count_params(StockMobileNet(family, m, shape)), 0, 0)

        m, cost = largest_fitting(family, profile, shape, cost_fn=exact_params, largest=1.0)
        assert m >= 0.5 and cost.params <= params
        bigger = [x for x in multipliers(largest=1.0) if x > m]
        assert all(count_params(StockMobileNet(family, x, shape)) > params for x in bigger)

    # a hand-made cost: params 1000·m, latency 1 ms per 0.1 of m; the latency budget decides
    def cost_fn(m: float, latency: bool) -> Cost:
        return Cost(int(1000 * m), 1, 1, 10 * m if latency else None)

    profile = DeviceProfile(name="hand", budgets=Budgets(max_params=1500, max_latency_ms=7.2))
    assert largest_fitting("mbv2", profile, shape, cost_fn=cost_fn)[0] == 0.7
    profile = DeviceProfile(name="hand", budgets=Budgets(max_params=10))
    with pytest.raises(ConfigError, match="no mbv2 multiplier"):
        largest_fitting("mbv2", profile, shape, cost_fn=cost_fn)


def test_the_multiplier_bisection_finds_what_a_walk_down_the_grid_finds() -> None:
    """Static costs non-decreasing in the multiplier (ties included), latency anything: the bisection
    returns the first multiplier, largest first, that meets every budget, with a handful of static costs."""
    from edgenas.core.cost import Cost
    from edgenas.pipeline.baseline import largest_fitting, multipliers
    from edgenas.spaces.ops import make_divisible

    widths = [make_divisible(v) for v in np.arange(0.05, 2600.0, 0.05)]  # every width grows with α
    assert np.all(np.diff(widths) >= 0)
    grid = multipliers()
    rng = np.random.default_rng(0)
    shape = NetShape(16, 1, 1, 28, 10)
    for _ in range(200):
        params = dict(zip(reversed(grid), np.cumsum(rng.integers(0, 3, len(grid))).tolist(), strict=True))
        latency = {m: float(rng.uniform(0, 10)) for m in grid}
        budgets = Budgets(max_params=int(rng.integers(1, max(params.values()) + 2)))
        if rng.random() < 0.5:
            budgets = budgets.model_copy(update={"max_latency_ms": float(rng.uniform(0, 10))})
        static_calls = []

        def cost_fn(m: float, lat: bool, params=params, latency=latency, calls=static_calls) -> Cost:
            calls.append(not lat)
            return Cost(params[m], 1, 1, latency[m] if lat else None)

        lat_ok = [budgets.max_latency_ms is None or latency[m] <= budgets.max_latency_ms for m in grid]
        walk = [m for m, ok in zip(grid, lat_ok, strict=True) if params[m] <= budgets.max_params and ok]
        try:
            got = largest_fitting("mbv2", DeviceProfile(name="r", budgets=budgets), shape, cost_fn=cost_fn)[0]
        except ConfigError:
            got = None
        assert got == (walk[0] if walk else None)
        assert sum(static_calls) <= 6  # ⌈log2(40 + 1)⌉, not 40


def test_stock_networks_match_the_papers_at_224() -> None:
    shape = NetShape(16, 1, 3, 224, 1000)
    v2, v3 = StockMobileNet("mbv2", 1.0, shape), StockMobileNet("mbv3-small", 1.0, shape)
    assert 3.4e6 < count_params(v2) < 3.6e6 and 2.4e6 < count_params(v3) < 2.6e6  # 3.4M, 2.5M in the papers
    assert 295e6 < count_flops(v2, (3, 224, 224)) / 2 < 305e6  # 300M multiply-adds
    assert 54e6 < count_flops(v3, (3, 224, 224)) / 2 < 58e6  # 56M multiply-adds


# -- every command on a tiny mobile setting ------------------------------------------------------
@pytest.mark.slow
def test_train_then_export(tmp_path: Path) -> None:
    """About 25 s here, most of it torch.export."""
    t = tmp_path / "t"
    assert run(["train", "--arch", ARCH, *TRAIN, "--run-dir", str(t)]) == 0
    assert results(t)["space"] == "mobile" and results(t)["arch"] == ARCH
    assert run(["export", str(t), "--onnx", "--repeats", "3"]) == 0
    report = json.loads((t / "model.json").read_text())
    assert report["max_abs_diff"] <= report["atol"]


def test_devices_check_and_screen(tmp_path: Path) -> None:
    dev = device(tmp_path, "{max_params: 150k, max_flops: 50M, max_latency_ms: 500}")
    assert run(["devices", "check", "--arch", ARCH, "--device", str(dev), *NET]) == 1  # over 150k params
    s = tmp_path / "s"
    dev = device(tmp_path, "{max_params: 300k}")
    args = ["screen", *NET, "--n", "4", "--top", "2", "--batch", "8", "--device", str(dev), "--run-dir", str(s)]
    assert run([*args, "--quiet"]) == 0
    assert all(MOBILE.parse(r["arch"]) and r["params"] <= 300_000 for r in results(s)["candidates"])


@pytest.mark.slow
def test_search_dca_and_dnad(tmp_path: Path) -> None:
    """About 80 s here: DCA-NAS (2 epochs) and DNAD on the mobile supernet at width 4."""
    dev = device(tmp_path, "{max_params: 250k}")
    out = tmp_path / "dca"
    args = ["search", "--device", str(dev), *NET, "--subset", "200", "--epochs", "2", "--warmup-epochs", "1",
            "--search-width", "4", "--batch-size", "32", "--run-dir", str(out), "--quiet"]  # fmt: skip
    assert run(args) == 0
    res = results(out)
    assert res["fits"] and res["costs"]["params"] <= 250_000 and MOBILE.parse(res["arch"])
    t = tmp_path / "t"
    assert run(["teacher", *TRAIN, "--run-dir", str(t)]) == 0
    out = tmp_path / "dnad"
    fast = {"epochs": 2, "warmup_epochs": 1, "batch_size": 32, "search_width": 4, "k": 1, "bn_batches": 2,
            "eval_images": 64, "snapshot_finetune": 2, "delete_patience": 1, "delete_threshold": 0.3}  # fmt: skip
    args = ["search", "--method", "dnad", "--teacher", str(t / "model.pt"), *NET, "--subset", "200"]
    for k, v in fast.items():
        args += ["--option", f"{k}={v}"]
    assert run([*args, "--run-dir", str(out), "--quiet"]) == 0
    assert all(MOBILE.parse(s["arch"]) for s in results(out)["pareto"])


def test_the_latency_table_keys_blocks_by_shape_and_adds_them_up() -> None:
    """A synthetic table (every entry a distinct number, no timing): what `predict_ms` and the
    per-position terms add up is overhead + stem + frame + head + the arch's blocks."""
    from edgenas.cost.lut import LatencyTable
    from edgenas.spaces.mobile import latency as kernels

    keys = kernels.required_keys(SHAPE)
    blocks = [k for k in keys if k.startswith("mb_")]
    assert "mb_k5e4/s2:8x12x12->16 relu+se" in blocks and len(blocks) == 9 * len(kernels._positions(macro(SHAPE)))
    entries = {k: 0.001 * (i + 1) for i, k in enumerate(keys)}
    fusion = dict.fromkeys(kernels.fusion_keys(SHAPE), "nchwc")
    table = LatencyTable("mobile", 12, 1, 10, [4], 1, 1, 1, 0.5, entries, fusion)
    arch = MOBILE.parse(ARCH)
    m = macro(SHAPE)
    frame = 0.5 + sum(entries[k] for k in keys if not k.startswith("mb_"))
    used = [kernels.block_key(f"k{k}e{e}", spec) for spec, k, e in active_specs(arch, m)]
    assert table.predict_ms(arch, SHAPE) == pytest.approx(frame + sum(entries[k] for k in used))
    terms = MOBILE.cost_terms(Budgets(max_latency_ms=1.0), SHAPE, table)["max_latency_ms"]
    assert float(terms.expected(MOBILE.onehot(arch))) == pytest.approx(table.predict_ms(arch, SHAPE))
    with pytest.raises(ConfigError, match="widths 4, not 8"):
        table.predict_ms(arch, NetShape(8, 1, 1, 12, 10))


def test_the_entries_are_chain_slopes_and_differences_of_scripted_timings() -> None:
    """Timings scripted from known block costs (no timing): `profile_entries` recovers each cost from the
    graphs `graph_names` lists: a later block from its chains' slope, a first block from its chain less
    its conv and the later blocks, and the frame so that the cheapest network adds up."""
    from edgenas.cost.lut.timing import CHAIN_EXTRA
    from edgenas.spaces.mobile import latency as kernels

    spec = kernels.profile_spec(12, in_channels=1, num_classes=10, widths=[4, 8])
    rng = np.random.default_rng(0)
    cost: dict[str, float] = {}  # the scripted per-block and per-part costs (ms)

    def c(key: str) -> float:
        return cost.setdefault(key, float(rng.uniform(0.01, 0.2)))

    overhead = 0.005
    ms = {"overhead": overhead}
    for shape in spec.shapes():
        m = macro(shape)
        for gname, op, specs in kernels.chains(m):
            first = specs[0]
            ms[gname] = overhead + c(f"conv:{kernels.dims(first.c_in, first.side)}")
            ms[gname] += sum(c(kernels.block_key(op, s)) for s in specs)
        for cs in kernels.conv_shapes(m):
            ms[f"conv:{kernels.dims(*cs)}"] = overhead + c(f"conv:{kernels.dims(*cs)}")
        stem, head = kernels.stem_key(shape, m), kernels.head_key(shape, m)
        ms[stem] = overhead + c(stem)
        ms[head] = overhead + c(f"conv:{kernels.dims(m.last_width, m.head_side)}") + c(head)
        used = [kernels.block_key(f"k{k}e{e}", p) for p, k, e in active_specs(kernels.REFERENCE, m)]
        ms[f"frame@{shape.width}"] = overhead + cost[stem] + cost[head] + sum(cost[k] for k in used) + 0.03
    assert set(ms) == set(kernels.graph_names(spec))
    assert sum(n.endswith(f"#{1 + CHAIN_EXTRA}") for n in ms) == 2 * 10 * 9  # every block of both widths
    entries = kernels.profile_entries(spec, ms, {})
    for shape in spec.shapes():
        assert set(kernels.required_keys(shape)) <= set(entries)
        m = macro(shape)
        assert entries[kernels.frame_key(shape, m)] == pytest.approx(0.03)
    for key, value in entries.items():
        if not key.startswith("frame:"):
            assert value == pytest.approx(cost[key]), key


def test_block_chains_copy_the_exported_block_with_distinct_weights(tmp_path: Path) -> None:
    """A chain is the exporter's block graph copied after a 1×1 conv; each copy reads weights of its own."""
    import onnxruntime as ort
    from onnx import numpy_helper

    from edgenas.spaces.mobile import latency as kernels

    later = macro(SHAPE).blocks[5]  # stage 2's later blocks: 16x6x6 -> 16, ReLU, SE
    (block,) = kernels.block_graphs(later, tmp_path, ("k3e4",)).values()
    chain = kernels.chain_model(later.c_in, later.side, [block] * 3)
    nodes = [n.op_type for n in chain.graph.node]
    assert nodes[0] == "Conv" and nodes[1 : 1 + len(block.graph.node)] == [n.op_type for n in block.graph.node]
    weights = {i.name: numpy_helper.to_array(i) for i in chain.graph.initializer}
    a, b = weights[f"b1/{block.graph.initializer[0].name}"], weights[f"b2/{block.graph.initializer[0].name}"]
    assert a.shape == b.shape and not np.array_equal(a, b) and np.array_equal(np.sort(a, None), np.sort(b, None))
    sess = ort.InferenceSession(chain.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": np.ones((1, later.c_in, later.side, later.side), np.float32)})
    assert out.shape == (1, later.c_out, later.side, later.side)


@pytest.mark.slow
def test_a_mobile_kit_round_trip(tmp_path: Path) -> None:
    """About 1 min here: a mobile kit (width 4, 12 px, 2 check networks) timed by its runner, imported, checked."""
    import subprocess
    import sys

    from edgenas.cost.lut.kit import check_kit, import_timings, write_kit
    from edgenas.spaces.mobile import latency as kernels

    folder = tmp_path / "kit"
    write_kit(folder, space="mobile", resolution=12, widths=[4], n=2, warmup=1, repeats=3, name="m", quiet=True)
    manifest = json.loads((folder / "kit.json").read_text())
    spec = kernels.profile_spec(12, in_channels=1, num_classes=10, widths=[4])
    assert set(manifest["graphs"]) == set(kernels.graph_names(spec))
    done = subprocess.run([sys.executable, "runner.py", "--threads", "1"], cwd=folder, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table, data = import_timings(folder / "m.timings.json")
    assert table.space == "mobile" and table.covers(SHAPE) and set(table.fusion) == set(kernels.fusion_keys(SHAPE))
    (res,) = check_kit(table, data)
    assert res["n"] == 2 and "kendall_tau" in res


@pytest.mark.slow
def test_profile_device_and_check_for_the_mobile_space(tmp_path: Path) -> None:
    """About 1 min on the loaded 2-core machine: 13 exports (the 9 blocks of a position in one), 145 graphs."""
    from edgenas.cost.lut import LatencyTable

    table = tmp_path / "m.lut.json"
    args = ["profile-device", "--name", "m", "--space", "mobile", "--resolution", "12", "--widths", "4",
            "--warmup", "1", "--repeats", "3", "--out", str(table), "--quiet"]  # fmt: skip
    assert run(args) == 0
    lut = LatencyTable.load(table)
    arch = MOBILE.parse(ARCH)
    fixed, w = lut.position_terms(SHAPE)
    index = MOBILE.encode(arch)
    assert lut.predict_ms(arch, SHAPE) == pytest.approx(fixed + w[np.arange(20), index].sum())
    check = ["profile-device", "--check", str(table), "--n", "3", "--width", "4", "--repeats", "3", "--quiet"]
    assert run(check) == 0 and json.loads(table.with_name("m.lut.check.json").read_text())["n"] == 3


@pytest.mark.slow
def test_a_mobile_ground_truth_its_reliability_and_the_proxies_on_it(tmp_path: Path) -> None:
    """`bench truth --space mobile` (3 archs × 2 seeds), `--reliability` and `bench proxies` on it."""
    out = tmp_path / "truth.jsonl"
    truth = ["bench", "truth", "--n", "3", "--seeds", "2", "--out", str(out), "--workers", "1", *TRAIN]
    assert run(truth) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["seed_index"] for r in rows) == [0, 0, 0, 1, 1, 1]
    assert all(MOBILE.parse(r["arch"]) and r["params"] > 0 and r["test_images"] > 0 for r in rows)
    assert json.loads(out.with_name("truth.jsonl.protocol.json").read_text())["protocol"]["space"] == "mobile"
    assert run(["bench", "truth", "--reliability", str(out)]) == 0
    p = tmp_path / "p"
    proxies = ["bench", "proxies", "--truth", str(out), "--proxies", "az", "--batch", "8", "--run-dir", str(p)]
    assert run([*proxies, "--quiet"]) == 0
    assert (p / "proxies.csv").is_file()


@pytest.mark.slow
def test_run_and_baseline_on_a_tiny_mobile_config(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "name: tiny-mobile\nseed: 0\ndataset: {name: digits, subset: 300, val_fraction: 0.1, resize: 12}\n"
        "space: {name: mobile, width: 4}\ndevices:\n  - name: small\n    budgets: {max_params: 400k}\n"
        "screen: {n: 4, top: 2, batch: 8, latency_tries: 2}\nsearch: {method: screen}\n"
        "teacher: {kind: plain, width: 4, epochs: 1}\ntrain: {epochs: 1, batch_size: 64}\n"
        "executor: {kind: local, workers: 1}\n"
    )
    r = tmp_path / "run"
    assert run(["run", str(cfg), "--run-dir", str(r), "--quiet"]) == 0
    assert all(MOBILE.parse(d["arch"]) for d in results(r)["devices"])
    dev = device(tmp_path, "{max_params: 60k}")
    b = tmp_path / "b"
    args = ["baseline", "--family", "mbv3-small", "--device", str(dev), "--dataset", "digits", "--resize", "12",
            "--subset", "300", "--epochs", "1", "--batch-size", "64", "--run-dir", str(b), "--quiet"]  # fmt: skip
    assert run(args) == 0
    res = results(b)
    assert res["fits"] and res["cost"]["params"] <= 60_000 and res["family"] == "mbv3-small"


def test_the_mobile_example_config_is_valid() -> None:
    from edgenas.pipeline.config import load_run_config

    cfg, profiles = load_run_config(Path(__file__).resolve().parents[1] / "examples" / "fashion_mobile.yaml")
    assert cfg.space.name == "mobile" and len(profiles) == 3
    assert all(p.budgets.max_latency_ms is not None for p in profiles)
