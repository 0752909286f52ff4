"""The searches through the space contract: NB201 numbers as before the contract (fixture made by
`tests/fixtures/contract/make.py` at commit 5142dc9), the Lagrangian derivation, and the
`keep_per_node` moves on a small space that keeps two inputs per node (as DARTS does)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from edgenas.core.device import Budgets
from edgenas.core.errors import ArchError, ConfigError
from edgenas.core.space import Arch, ChoicePoint, NetShape, SearchSpace
from edgenas.cost.lut import LatencyTable
from edgenas.cost.terms import CostTerms, terms_for_budgets
from edgenas.search import run as search_run
from edgenas.search.derive import derive, derive_lagrangian, derive_map
from edgenas.search.methods.dca import node_normalised, op_histogram
from edgenas.search.methods.dnad import arch_mask, costliest_arch, deletion_step, live_flops, strongest_arch
from edgenas.spaces.nb201 import NB201Space
from edgenas.spaces.nb201.supernet import node_edge_weights

FIXTURES = Path(__file__).parent / "fixtures"
BEFORE = json.loads((FIXTURES / "contract" / "nb201_before.json").read_text())


def _make():
    import importlib.util

    spec = importlib.util.spec_from_file_location("contract_make", FIXTURES / "contract" / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE = _make()


# -- NB201: the same numbers as before the contract ----------------------------------------------
@pytest.fixture(scope="module")
def nb201_terms() -> dict[str, CostTerms]:
    """Every budget's terms through the contract's default `SearchSpace.cost_terms`."""
    every = Budgets(max_params=1, max_flops=1, max_peak_memory_bytes=1, max_latency_ms=1)
    return NB201Space().cost_terms(every, MAKE.SHAPE, LatencyTable.load(MAKE.TABLE), seed=0)


def test_nb201_cost_terms_are_unchanged(nb201_terms: dict[str, CostTerms]) -> None:
    terms = nb201_terms
    for name, old in BEFORE["terms"].items():
        # least-squares fits: equal up to the last bits, which BLAS kernels differ in from CPU to CPU
        assert terms[name].fixed == pytest.approx(old["fixed"], rel=1e-9, abs=1e-9), name
        assert np.allclose(terms[name].weights, old["weights"], rtol=1e-9, atol=1e-9), name
        assert terms[name].fit == pytest.approx(old["fit"], rel=1e-9), name


def test_nb201_derivations_are_unchanged(nb201_terms: dict[str, CostTerms]) -> None:
    space, terms = NB201Space(), nb201_terms
    cost = MAKE.exact_cost(LatencyTable.load(MAKE.TABLE))
    rows = iter(BEFORE["derivations"])
    for probs, budgets in MAKE.cases():
        for method in ("map", "greedy"):
            for lower in (0.0, 0.85):
                mine = {k: terms[k] for k, _ in budgets.items()}
                d = derive(probs, budgets, mine, cost, lower=lower, method=method, space=space)
                got = {"method": method, "lower": lower, "arch": str(d.arch), "argmax": str(d.argmax),
                       "repairs": d.repairs, "costs": d.costs, "fits": d.fits, "how": d.method}  # fmt: skip
                assert json.loads(json.dumps(got)) == next(rows)
    assert next(rows, None) is None


def test_node_normalisation_is_nb201s_and_per_node_in_any_order() -> None:
    beta = torch.randn(6, generator=torch.Generator().manual_seed(0))
    nodes = list(NB201Space().node_points().values())
    assert nodes == [[0], [1, 2], [3, 4, 5]]
    assert torch.equal(node_normalised(beta, nodes), node_edge_weights(beta))
    mixed = node_normalised(beta, [[0, 3], [1, 4, 5], [2]])  # points of a node need not be adjacent
    assert torch.allclose(mixed[[0, 3]], torch.softmax(beta[[0, 3]], 0)) and mixed[2] == 1.0


def test_lagrangian_map_fits_and_mostly_finds_the_exhaustive_maps_arch() -> None:
    space = NB201Space()
    terms = terms_for_budgets(space, Budgets(max_params=1, max_flops=1), MAKE.SHAPE)
    cost = MAKE.exact_cost(LatencyTable.load(MAKE.TABLE))
    full = cost(
        space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    )
    rng = np.random.default_rng(1)
    same = 0
    for i in range(8):
        probs = rng.dirichlet(np.full(5, 0.5), size=6)
        budgets = Budgets(
            max_params=int(full["params"] * (0.3 + 0.02 * i)), max_flops=int(full["flops"] * (0.9 - 0.02 * i))
        )
        best = derive_map(probs, budgets, terms, cost, space=space)
        lag = derive_lagrangian(probs, budgets, terms, cost, space=space)
        assert best is not None and lag is not None and lag.method == "lagrangian"
        assert lag.costs["params"] <= budgets.max_params and lag.costs["flops"] <= budgets.max_flops
        logp = [float(np.log(probs[np.arange(6), space.encode(d.arch)]).sum()) for d in (best, lag)]
        assert logp[1] <= logp[0] + 1e-9  # the exhaustive map is the most probable arch in the budget
        same += best.arch == lag.arch
    assert same >= 6  # 7 of 8 when written


def test_latency_terms_need_a_table_of_the_same_space_with_position_terms(monkeypatch) -> None:
    space = NB201Space()
    table = LatencyTable.load(MAKE.TABLE)
    with pytest.raises(ConfigError, match="lookup table"):
        terms_for_budgets(space, Budgets(max_latency_ms=1), MAKE.SHAPE)
    other = LatencyTable(**{**table.__dict__, "space": "darts"})
    with pytest.raises(ConfigError, match="'darts' space, not 'nb201'"):
        terms_for_budgets(space, Budgets(max_latency_ms=1), MAKE.SHAPE, other)
    monkeypatch.delattr(table.kernels, "position_terms")
    with pytest.raises(ConfigError, match="no per-position terms"):
        table.position_terms(MAKE.SHAPE)


# -- a space that keeps two inputs per node (as DARTS does) -------------------------------------
OPS = ("none", "skip", "cheap", "dear")
PRICE = {"none": 0.0, "skip": 0.0, "cheap": 3.0, "dear": 10.0}


class TwoInputArch(Arch):
    space_name = "two_input"

    def __init__(self, ops: tuple[str, ...]) -> None:
        self.ops = ops

    @classmethod
    def parse(cls, text: str) -> TwoInputArch:
        return TwoInputSpace().decode(np.array([OPS.index(t) for t in text.split(",")]))

    def __str__(self) -> str:
        return ",".join(self.ops)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TwoInputArch) and other.ops == self.ops

    def __hash__(self) -> int:
        return hash(self.ops)


class TwoInputSpace(SearchSpace):
    """Node "a" has inputs 0..2 (points 0-2), node "b" inputs 0..3 (points 3-6); each keeps exactly 2."""

    name = "two_input"
    choice_ops = OPS
    none_op = "none"
    keep_per_node = 2
    NODES = ("a",) * 3 + ("b",) * 4

    def choice_points(self) -> tuple[ChoicePoint, ...]:
        return tuple(ChoicePoint(f"{n}<-{i}", n) for i, n in enumerate(self.NODES))

    def encode(self, arch: Arch) -> np.ndarray:
        return np.array([OPS.index(op) for op in arch.ops])

    def decode(self, index: np.ndarray) -> TwoInputArch:
        ops = tuple(OPS[int(i)] for i in index)
        for node in ("a", "b"):
            if sum(op != "none" for op, n in zip(ops, self.NODES, strict=True) if n == node) != 2:
                raise ArchError(f"node {node} must keep exactly 2 inputs: {ops}")
        return TwoInputArch(ops)

    def live_points(self, arch: Arch) -> np.ndarray:
        return np.array([op != "none" for op in arch.ops])

    def position_costs(self, kind: str, shape: NetShape) -> tuple[float, np.ndarray]:
        return 1.0, np.tile([PRICE[o] for o in OPS], (len(self.NODES), 1))

    def all_archs(self) -> Iterator[TwoInputArch]:
        for a in itertools.combinations(range(3), 2):
            for b in itertools.combinations(range(3, 7), 2):
                for ops in itertools.product(range(1, 4), repeat=4):
                    index = np.zeros(7, dtype=int)
                    index[[*a, *b]] = ops
                    yield self.decode(index)

    def sample(self, rng: np.random.Generator) -> TwoInputArch:
        archs = list(self.all_archs())
        return archs[int(rng.integers(len(archs)))]

    def size(self) -> None:
        return None  # as if too big to enumerate: the Lagrangian map runs

    def parse(self, text: str) -> TwoInputArch:
        return TwoInputArch.parse(text)

    def mutate(self, arch, rng):
        raise NotImplementedError

    def enumerate(self):
        raise NotImplementedError

    def build(self, arch, shape):
        raise NotImplementedError

    def cheapest(self):
        raise NotImplementedError

    def supernet(self, shape, k=1):
        raise NotImplementedError

    def subnet(self, supernet, arch):
        raise NotImplementedError


TWO = TwoInputSpace()
TERMS = {"max_params": CostTerms("params", 1.0, TWO.position_costs("params", MAKE.SHAPE)[1], space=TWO)}


def _cost(arch: TwoInputArch) -> dict[str, float]:
    return {"params": 1.0 + sum(PRICE[op] for op in arch.ops)}


def _logp(probs: np.ndarray, arch: TwoInputArch) -> float:
    return float(np.log(probs[np.arange(7), TWO.encode(arch)]).sum())


def test_top_weighted_keeps_two_inputs_and_the_description_is_complete() -> None:
    probs = np.full((7, 4), 0.1)
    probs[[0, 1, 3, 4], 3] = 0.7  # dear on a0, a1, b3, b4
    arch = TWO.top_weighted(probs)
    assert arch.ops == ("dear", "dear", "none", "dear", "dear", "none", "none")
    assert TWO.supernet_gaps() == [] and op_histogram(arch, TWO) == {"none": 0, "skip": 0, "cheap": 0, "dear": 4}


def test_repair_may_move_a_nodes_input_and_stays_an_arch() -> None:
    probs = np.full((7, 4), 0.01)
    probs[[0, 1, 3, 4], 3] = 0.9
    probs[2, 2] = 0.8  # node a's third input likes the cheap op
    budgets = Budgets(max_params=34)  # the argmax costs 41: one dear op must go
    d = derive(probs, budgets, TERMS, _cost, method="greedy")
    assert d.fits and d.costs["params"] <= 34
    assert d.repairs[0]["moved_to"] == {"edge": 2, "op": "cheap"} and d.repairs[0]["to"] == "none"
    assert d.arch.ops[:3] == ("none", "dear", "cheap")


def test_lagrangian_and_fill_on_a_space_too_big_to_enumerate() -> None:
    rng = np.random.default_rng(0)
    archs = list(TWO.all_archs())
    for _ in range(6):
        probs = rng.dirichlet(np.ones(4), size=7)
        budgets = Budgets(max_params=int(rng.integers(12, 30)))
        inside = [a for a in archs if _cost(a)["params"] <= budgets.max_params]
        d = derive(probs, budgets, TERMS, _cost, method="map")
        assert d.method == "lagrangian" and d.fits and d.arch in inside
        assert _logp(probs, d.arch) == pytest.approx(max(_logp(probs, a) for a in inside))  # brute force agrees
        filled = derive(probs, budgets, TERMS, _cost, method="map", lower=0.85)
        assert filled.fits and 0.85 * budgets.max_params <= filled.costs["params"] <= budgets.max_params
        greedy = derive(probs, budgets, TERMS, _cost, method="greedy", lower=0.85)
        assert greedy.fits and greedy.arch in inside


def test_dnad_pieces_respect_two_inputs_per_node() -> None:
    alive = torch.ones(7, 4, dtype=torch.bool)
    alive[:, 0] = False
    weights = TWO.position_costs("flops", MAKE.SHAPE)[1]
    att = torch.full((7, 4), 0.5) * alive
    att[2, 1] = att[6, 1] = att[5, 2] = 0.9
    strong = strongest_arch(att, alive, TWO)
    assert sum(op != "none" for op in strong.ops[:3]) == 2 and strong.ops[2] == "skip"
    assert strong.ops[5:] == ("cheap", "skip")
    assert costliest_arch(alive, weights, TWO).ops.count("dear") == 4
    mask = arch_mask(strong, TWO)
    assert int(mask.sum()) == 4 and TWO.mask_admits_arch(mask.numpy())
    terms = CostTerms("flops", 1.0, weights, space=TWO)
    assert live_flops(mask, terms) == _cost(strong)["params"]
    # node a down to two inputs: its last ops cannot go, node b's can
    alive = arch_mask(strong, TWO) | torch.zeros(7, 4, dtype=torch.bool)
    alive[3, 3] = True
    under = torch.zeros(7, 4, dtype=torch.long)
    low = alive.float() * 0.01
    deleted = deletion_step(low, alive, under, 0.05, 1, True, space=TWO)
    assert [e for e, _ in deleted] == [3] and TWO.mask_admits_arch(alive.numpy())


def test_search_refuses_a_space_with_an_incomplete_description(monkeypatch) -> None:
    class NoPoints(TwoInputSpace):
        name = "no_points"

        def choice_points(self):
            raise NotImplementedError("choice_points")

    monkeypatch.setattr(search_run, "get_space", lambda name: NoPoints())
    with pytest.raises(ConfigError, match="lacks choice_points"):
        search_run.searchable("no_points")
    monkeypatch.setattr(search_run, "get_space", lambda name: TwoInputSpace())
    assert isinstance(search_run.searchable("two_input"), TwoInputSpace)
