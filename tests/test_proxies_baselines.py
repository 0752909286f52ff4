"""Baseline zero-cost proxies: each formula checked against a case whose answer is known by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from edgenas.core.errors import UserError
from edgenas.core.seeding import torch_generator
from edgenas.core.space import NetShape
from edgenas.cost.flops import count_flops
from edgenas.cost.params import count_params
from edgenas.proxies import BASELINE_PROXIES, ProxyContext, available, get, score_network
from edgenas.proxies.jacob_cov import K, jacob_cov_from_jacobian
from edgenas.proxies.naswot import logdet_score, relu_code_kernel
from edgenas.proxies.zen import ALPHA, zen_score
from edgenas.spaces.nb201 import NB201Arch, NB201Network

SHAPE = NetShape(width=8, cells=1, in_channels=1, resolution=16, num_classes=10)
INPUT = (1, 16, 16)
CONV_CELL = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def nb201() -> NB201Network:
    return NB201Network(NB201Arch.parse(CONV_CELL), SHAPE)


class Features(nn.Module):
    """Wrap a plain module so it satisfies ProxyContext (forward_features -> (out, [out]))."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.body(x)
        return out, [out]


def test_every_baseline_registered_finite_and_deterministic():
    assert set(BASELINE_PROXIES) <= set(available())
    net = nb201()
    a, _ = score_network(net, INPUT, BASELINE_PROXIES, batch=8, seed=3)
    b, _ = score_network(net, INPUT, tuple(reversed(BASELINE_PROXIES)), batch=8, seed=3)
    for name in BASELINE_PROXIES:
        assert isinstance(a[name], float) and math.isfinite(a[name]), name
        assert a[name] == b[name], name  # same seed, any order -> identical value
    c, _ = score_network(net, INPUT, ("snip", "zen", "jacob_cov"), batch=8, seed=4)
    assert any(c[n] != a[n] for n in ("snip", "zen", "jacob_cov"))  # the seed matters


def test_baselines_leave_the_shared_model_alone():
    ctx = ProxyContext(nb201(), INPUT, batch=8, seed=1)
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    for name in BASELINE_PROXIES:
        get(name)(ctx)
    after = ctx.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in ctx.model.parameters())
    assert ctx.model.training


def test_synflow_linear_chain_by_hand():
    w1 = torch.tensor([[1.0, -2.0], [3.0, 0.5], [-1.0, 1.0]])
    w2 = torch.tensor([[2.0, -1.0, 0.5]])
    l1, l2 = nn.Linear(2, 3, bias=False), nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        l1.weight.copy_(w1)
        l2.weight.copy_(w2)
    # BN must be bypassed (not the identity-ish eval BN), ReLU is the identity on |θ|-networks.
    model = Features(nn.Sequential(l1, nn.BatchNorm1d(3), nn.ReLU(), l2))
    ctx = ProxyContext(model, (2,), batch=4, reinit=False)
    # R = Σ_j |w2_j| Σ_k |w1_jk| ; ∂R/∂w2_j = Σ_k |w1_jk| ; ∂R/∂w1_jk = |w2_j|  => score = 2 R
    rows = w1.abs().sum(dim=1)  # 3, 3.5, 2
    r = float((w2.abs()[0] * rows).sum())  # 6 + 3.5 + 1 = 10.5
    assert r == pytest.approx(10.5)
    assert get("synflow")(ctx) == pytest.approx(2 * r, rel=1e-12)


def test_naswot_identical_codes_singular_and_distinct_codes_larger():
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b = nn.Parameter(torch.tensor([1.0, -1.0, 2.0, -3.0]))
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(x.flatten(1)[:, :4] * 0.0 + self.b)  # same code for every sample

    same = get("naswot")(ProxyContext(Features(Constant()), (16,), batch=8))
    distinct = get("naswot")(ProxyContext(Features(nn.Sequential(nn.Flatten(), nn.ReLU())), (16,), batch=8))
    assert same == -math.inf
    assert math.isfinite(distinct) and distinct > same


def test_naswot_kernel_by_hand():
    relu = nn.Sequential(nn.ReLU())
    x = torch.tensor([[1.0, -1.0, 2.0], [-1.0, 1.0, 3.0]])  # codes 101, 011: agree on 1 of 3 units
    k = relu_code_kernel(relu, x)
    assert torch.equal(k, torch.tensor([[3.0, 1.0], [1.0, 3.0]], dtype=torch.float64))
    assert logdet_score(k) == pytest.approx(math.log(8.0))


def test_params_and_flops_equal_cost_model():
    net = nb201()
    ctx = ProxyContext(net, INPUT, batch=2)
    assert get("params")(ctx) == float(count_params(net))
    assert get("flops")(ctx) == float(count_flops(net, INPUT, batch=1))


def _linear_ctx(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> ProxyContext:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    return ProxyContext(Features(lin), (w.shape[1],), batch=2, reinit=False, real_batch=(x, y))


def _ce_grad(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂ mean_i CE(W x_i, y_i) / ∂W = mean_i (softmax(W x_i) − onehot(y_i)) x_iᵀ, written out."""
    p = torch.softmax(x @ w.T, dim=1)
    return (p - F.one_hot(y, w.shape[0]).to(p.dtype)).T @ x / x.shape[0]


def test_snip_and_grad_norm_single_linear_by_hand():
    g = torch_generator(0, "baseline-linear")
    x = torch.randn(5, 4, generator=g)
    y = torch.tensor([0, 2, 1, 1, 0])
    zero = torch.zeros(3, 4)
    ctx = _linear_ctx(zero, x, y)
    assert get("snip")(ctx) == 0.0  # θ = 0 => θ ⊙ ∂L/∂θ = 0 whatever the gradient
    expected = float(torch.linalg.vector_norm(_ce_grad(zero, x, y)))
    assert expected > 0 and get("grad_norm")(ctx) == pytest.approx(expected, rel=1e-5)

    w = torch.randn(3, 4, generator=g)
    ctx = _linear_ctx(w, x, y)
    grad = _ce_grad(w, x, y)
    assert get("snip")(ctx) == pytest.approx(float((w * grad).abs().sum()), rel=1e-5)
    assert get("grad_norm")(ctx) == pytest.approx(float(torch.linalg.vector_norm(grad)), rel=1e-5)


def test_real_batch_changes_snip_but_not_az_or_noise_proxies():
    net = nb201()
    g = torch_generator(0, "real-batch")
    images = torch.rand((8, *INPUT), generator=g)
    labels = torch.randint(0, 10, (8,), generator=g)
    names = ("snip", "grad_norm", "synflow", "naswot", "az_expressivity")
    noise, _ = score_network(net, INPUT, names, batch=8, seed=0)
    real, _ = score_network(net, INPUT, names, batch=8, seed=0, real_batch=(images, labels))
    assert real["snip"] != noise["snip"] and real["grad_norm"] != noise["grad_norm"]
    for name in ("synflow", "naswot", "az_expressivity"):
        assert real[name] == noise[name], name


def test_real_batch_is_validated():
    with pytest.raises(UserError, match="shape"):
        ProxyContext(nb201(), INPUT, batch=2, real_batch=(torch.zeros(2, 3, 16, 16), torch.zeros(2, dtype=torch.int64)))
    with pytest.raises(UserError, match="int64"):
        ProxyContext(nb201(), INPUT, batch=2, real_batch=(torch.zeros(2, *INPUT), torch.zeros(2)))
    with pytest.raises(UserError, match="one per image"):
        ProxyContext(nb201(), INPUT, batch=2, real_batch=(torch.zeros(2, *INPUT), torch.zeros(3, dtype=torch.int64)))


def test_jacob_cov_by_hand():
    # uncorrelated rows: corr = I, λ = 1 (twice)
    jac = torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]])
    assert jacob_cov_from_jacobian(jac) == pytest.approx(-2 * (math.log(1 + K) + 1 / (1 + K)), rel=1e-9)
    # a bias-free linear map has the same input Jacobian for every sample: corr = all ones,
    # λ = N once and 0 (N−1 times)
    n = 6
    ctx = ProxyContext(Features(nn.Linear(5, 3, bias=False)), (5,), batch=n)
    expected = -((n - 1) * (math.log(K) + 1 / K) + math.log(n + K) + 1 / (n + K))
    assert get("jacob_cov")(ctx) == pytest.approx(expected, rel=1e-6)
    # a constant Jacobian row has no correlation: failure -> -inf
    assert jacob_cov_from_jacobian(torch.tensor([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])) == -math.inf


def test_zen_formula_by_hand():
    g = torch_generator(0, "zen-hand")
    conv = nn.Conv2d(2, 3, 1, bias=False)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.randn(4, 2, 3, 3, generator=g)
    eps = torch.randn(4, 2, 3, 3, generator=g)
    w = conv.weight.detach()

    def branch(inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.conv2d(inp, w)
        mean, var = h.mean(dim=(0, 2, 3), keepdim=True), h.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        return torch.relu((h - mean) / torch.sqrt(var + bn.eps)), h.var(dim=(0, 2, 3), unbiased=True)

    f0, _ = branch(x)
    f1, var1 = branch(x + ALPHA * eps)
    delta = (f0 - f1).abs().sum(dim=(1, 2, 3)).mean()
    expected = math.log(float(delta)) + 0.5 * math.log(float(var1.mean()))
    assert zen_score(model, x, eps) == pytest.approx(expected, rel=1e-4)


def test_zen_ignores_the_context_reinit_scale():
    """Zen re-initialises N(0,1) itself, so the candidate's incoming weights do not matter."""
    net = nb201()
    a = get("zen")(ProxyContext(net, INPUT, batch=8, seed=2))
    b = get("zen")(ProxyContext(net, INPUT, batch=8, seed=2, reinit=False))
    assert a == pytest.approx(b, rel=1e-9)


@pytest.mark.parametrize(
    "arch",
    [
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|",  # no input-output path
        "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",  # identity cell
    ],
)
def test_every_proxy_survives_degenerate_cells(arch: str) -> None:
    """Uniform samples of NB201 contain such cells; a proxy must score them, not crash."""
    from edgenas.core.space import NetShape
    from edgenas.proxies import available, score_network
    from edgenas.spaces.nb201 import NB201Arch, NB201Space

    shape = NetShape(width=4, cells=1, in_channels=1, resolution=8)
    model = NB201Space().build(NB201Arch.parse(arch), shape)
    values, _ = score_network(model, shape.input_shape, available(), batch=8)
    assert set(values) == set(available())
    assert all(isinstance(v, float) and v == v for v in values.values())  # no NaN
