"""Tests of minigrad.moe: routing with capacity, the two losses, the MoE layer against the
dense MLP, gradients through the router, expert parallelism against one device, bytes."""

import numpy as np
import pytest

import minigrad
from minigrad import Tensor, gradcheck, nn
from minigrad.distributed import VirtualCluster
from minigrad.models import GPTConfig, TinyGPT
from minigrad.moe import (MoE, MoEConfig, all_to_all_bytes, expert_capacity,
                          expert_parallel_forward, load_balancing_loss, moe_param_counts,
                          router_z_loss, top_k_routing)
from minigrad.moe.train import mlp_flops_per_token, model_sizes


def _route_by_hand(p, k, capacity):
    """Slots handed out one claim at a time: every first choice in token order, then seconds."""
    T, E = p.shape
    idx = np.array([sorted(range(E), key=lambda e: (-p[t, e], e))[:k] for t in range(T)])
    used, kept = [0] * E, np.zeros((T, k), bool)
    for j in range(k):
        for t in range(T):
            e = idx[t, j]
            kept[t, j] = capacity is None or used[e] < capacity
            used[e] += 1
    return idx, kept


@pytest.mark.parametrize("k,capacity", [(1, 2), (2, 3), (2, None), (3, 1), (4, 0)])
def test_top_k_routing_matches_claims_made_one_at_a_time(k, capacity):
    p = minigrad.get_rng().random((11, 4))
    p[3] = p[4]                                              # two tokens with equal scores
    p[5, :] = 0.25                                           # a token with a four-way tie
    r = top_k_routing(p, k, capacity)
    idx, kept = _route_by_hand(p, k, capacity)
    np.testing.assert_array_equal(r.expert_index, idx)
    np.testing.assert_array_equal(r.kept, kept)
    assert r.dropped == (~kept).sum()
    np.testing.assert_array_equal(r.tokens_per_expert, np.bincount(idx[kept], minlength=4))
    if capacity is not None:
        assert r.tokens_per_expert.max() <= capacity


def test_capacity_is_the_ceiling_of_the_fair_share():
    assert expert_capacity(100, 8, 2, 1.0) == 25
    assert expert_capacity(100, 8, 1, 1.25) == 16            # ceil(15.625)
    assert expert_capacity(10, 3, 1, None) is None


def test_load_balancing_loss_is_one_when_uniform_and_num_experts_when_collapsed():
    E, T = 4, 8
    uniform = Tensor(np.full((T, E), 1 / E))
    spread = np.arange(T)[:, None] % E
    assert load_balancing_loss(uniform, spread).item() == pytest.approx(1.0)
    collapsed = np.zeros((T, E))
    collapsed[:, 0] = 1.0
    assert load_balancing_loss(Tensor(collapsed), np.zeros((T, 1), int)).item() == pytest.approx(E)
    # the closed form on random routing
    p = minigrad.get_rng().dirichlet(np.ones(E), T)
    idx = top_k_routing(p, 2).expert_index
    f = np.bincount(idx.ravel(), minlength=E) / idx.size
    assert load_balancing_loss(Tensor(p), idx).item() == pytest.approx(E * (f * p.mean(0)).sum())


def test_z_loss_is_the_mean_squared_logsumexp_and_stays_finite_for_huge_logits():
    x = minigrad.get_rng().standard_normal((6, 5))
    want = np.mean(np.log(np.exp(x).sum(-1)) ** 2)
    assert router_z_loss(Tensor(x)).item() == pytest.approx(want, rel=1e-12)
    assert np.isfinite(router_z_loss(Tensor(x + 1e4)).item())
    t = Tensor(x, requires_grad=True)
    assert gradcheck(router_z_loss, (t,))


def test_one_expert_with_k1_is_the_dense_mlp():
    moe = MoE(6, 10, num_experts=1, k=1, dtype=np.float64)
    e = moe.experts[0]
    dense = nn.Sequential(nn.Linear(6, 10, dtype=np.float64), nn.GELU(), nn.Linear(10, 6, dtype=np.float64))
    for a, b in zip(dense.parameters(), e.parameters()):
        a.data[...] = b.data
    x = Tensor(minigrad.get_rng().standard_normal((3, 5, 6)), requires_grad=True)
    y = moe(x)
    np.testing.assert_array_equal(y.data, dense(x).data)
    y.sum().backward()
    gx = x.grad.copy()
    x.grad = None
    dense(x).sum().backward()
    np.testing.assert_allclose(gx, x.grad, rtol=1e-14)


def test_layer_equals_the_weighted_sum_of_chosen_experts_computed_directly():
    for k, cap, renorm in [(1, None, False), (2, None, True), (2, 0.5, True)]:
        moe = MoE(5, 7, num_experts=4, k=k, capacity_factor=cap, dtype=np.float64)
        x = minigrad.get_rng().standard_normal((9, 5))
        y = moe(Tensor(x)).data
        logits = x @ moe.router.weight.data.T
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        r = moe.last_routing
        want = np.zeros_like(x)
        for t in range(9):
            g = p[t, r.expert_index[t]]
            g = g / g.sum() if renorm else g
            for j in range(k):
                if r.kept[t, j]:
                    want[t] += g[j] * moe.experts[int(r.expert_index[t, j])](Tensor(x[t:t + 1])).data[0]
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
        if cap is not None:
            assert r.dropped > 0
            np.testing.assert_array_equal(y[np.all(~r.kept, axis=1)], 0.0)   # fully dropped: 0


def test_routing_gradients_pass_gradcheck():
    for k in (1, 2):
        moe = MoE(4, 6, num_experts=3, k=k, capacity_factor=1.0, dtype=np.float64)
        x = Tensor(minigrad.get_rng().standard_normal((7, 4)), requires_grad=True)
        w = moe.router.weight                       # a Parameter: gradcheck perturbs it in place
        assert gradcheck(lambda x, w, moe=moe: moe(x), (x, w))
        assert gradcheck(lambda x, w, moe=moe: (moe(x), moe.aux_loss)[1], (x, w))


def test_param_counts_and_flops_active_vs_total():
    c = moe_param_counts(8, 16, num_experts=4, k=2)
    moe = MoE(8, 16, 4, 2)
    assert c["total"] == sum(p.numel() for p in moe.parameters())
    assert c["active"] == c["total"] - 2 * c["expert"]
    assert mlp_flops_per_token(8, 16, 4, 2) == 2 * 4 * 8 * 16 + 2 * 8 * 4
    cfg = GPTConfig(vocab_size=12, block_size=8, n_layer=2, n_head=2, n_embd=8,
                    moe=MoEConfig(num_experts=4, k=2, mlp_ratio=2))
    sizes = model_sizes(TinyGPT(cfg))
    dense = sum(p.numel() for p in TinyGPT(GPTConfig(vocab_size=12, block_size=8, n_layer=2,
                                                     n_head=2, n_embd=8)).parameters())
    # 2 experts of width 2C are the dense MLP of width 4C, up to one bias and the router
    assert sizes["active"] == dense + 2 * (8 + 8 * 4)
    assert sizes["total"] - sizes["active"] == 2 * (4 - 2) * c["expert"]   # 2 layers, 2 idle experts


def test_tinygpt_with_moe_trains_its_aux_loss_into_the_graph():
    cfg = GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=8,
                    moe=MoEConfig(num_experts=4, k=1, aux_loss_coef=1.0, z_loss_coef=0.0))
    model = TinyGPT(cfg, dtype=np.float64)
    model(minigrad.get_rng().integers(0, 12, (2, 8)))
    loss = model.moe_loss()
    assert loss.item() == pytest.approx(model.h[0].mlp.aux_loss.item())
    loss.backward()
    assert np.abs(model.h[0].mlp.router.weight.grad).sum() > 0


@pytest.mark.parametrize("p,k,cap", [(1, 2, None), (2, 1, None), (4, 2, None), (4, 2, 1.0), (2, 2, 0.6)])
def test_expert_parallel_equals_one_device(p, k, cap):
    moe = MoE(6, 8, num_experts=4, k=k, capacity_factor=cap, dtype=np.float64)
    rng = minigrad.get_rng()
    shards = [rng.standard_normal((n, 6)) for n in [5, 9, 1, 7][:p]]
    res = expert_parallel_forward(VirtualCluster(p), moe, shards)
    for x, out in zip(shards, res.outputs):
        np.testing.assert_allclose(out, moe(Tensor(x)).data, rtol=1e-12, atol=1e-12)
    if cap is None:                               # no capacity: shards change nothing
        whole = moe(Tensor(np.concatenate(shards))).data
        np.testing.assert_allclose(np.concatenate(res.outputs), whole, rtol=1e-12, atol=1e-12)
    # the bytes are the rows that left each GPU, both ways
    off = res.send_counts * (1 - np.eye(p, dtype=int))
    np.testing.assert_array_equal(res.dispatch_bytes, off.sum(1) * 6 * 8)
    np.testing.assert_array_equal(res.combine_bytes, off.sum(0) * 6 * 8)
    np.testing.assert_array_equal(res.tokens_per_gpu, res.send_counts.sum(0))


def test_balanced_routing_sends_the_closed_form():
    """Tokens built so token t picks experts t and t+1 (mod E): exactly balanced."""
    E, p, T, C = 4, 4, 8, 6
    moe = MoE(C, 5, num_experts=E, k=2, dtype=np.float64)
    moe.router.weight.data[...] = 0.0
    moe.router.weight.data[np.arange(E), np.arange(E)] = 1.0     # logit e = x[e]
    shards = []
    for _ in range(p):
        x = np.zeros((T, C))
        x[np.arange(T), np.arange(T) % E] = 3.0
        x[np.arange(T), (np.arange(T) + 1) % E] = 2.0
        shards.append(x)
    cluster = VirtualCluster(p)
    res = expert_parallel_forward(cluster, moe, shards)
    want = all_to_all_bytes(T, 2, C, p, itemsize=8)
    np.testing.assert_array_equal(res.dispatch_bytes, want)
    np.testing.assert_array_equal(res.combine_bytes, want)
    np.testing.assert_array_equal(res.tokens_per_gpu, T * 2)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="k must be"):
        MoE(4, 4, num_experts=2, k=3)
    with pytest.raises(ValueError, match="k must be"):
        top_k_routing(np.ones((3, 2)), 0)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="capacity_factor"):
            MoE(4, 4, num_experts=2, k=1, capacity_factor=bad)
    with pytest.raises(ValueError, match="capacity_factor"):
        MoEConfig(capacity_factor=0)
    with pytest.raises(ValueError, match="world_size 3 must divide num_experts 4"):
        expert_parallel_forward(VirtualCluster(3), MoE(4, 4, 4, 1), [np.zeros((2, 4))] * 3)
