"""Parallel training equals serial training; memory and communication equal the
papers' formulas; pipelines idle exactly (p-1)/(m+p-1); split layers equal unsplit ones."""

import copy

import numpy as np
import pytest

from minigrad import Tensor, nn, optim
from minigrad import functional as F
from minigrad.distributed import OutOfMemoryError, VirtualCluster
from minigrad.distributed.ddp import DistributedDataParallel, ddp_vs_one_gpu, max_divergence
from minigrad.distributed.parameter_server import ParameterServer
from minigrad.distributed.pipeline import (SCHEDULES, PipelineParallel, bubble_fraction,
                                    simulate_schedule, split_stages)
from minigrad.distributed.strategy import recommend_strategy
from minigrad.distributed.tensor_parallel import (SequenceParallelMLPBlock, TensorParallelAttention,
                                           TensorParallelMLP)
from minigrad.distributed.zero import FSDP, ZeRO, zero_comm_bytes_per_gpu, zero_memory_per_gpu


def _data(n=16, d=8, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, classes, n)


def _serial(model, X, Y, make_opt, steps):
    opt = make_opt(list(model.parameters()))
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(Tensor(X)), Y).backward()
        opt.step()
    return model


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))


def adamw(ps):
    return optim.AdamW(ps, lr=1e-2, weight_decay=0.1)


# -- data parallel -------------------------------------------------------------------------------

@pytest.mark.parametrize("bucket_cap", [1, 600, 10**9])
def test_ddp_on_4_gpus_equals_serial_training_on_the_whole_batch(bucket_cap):
    model = nn.MLP([8, 16, 16, 4], dtype=np.float64)
    serial = copy.deepcopy(model)
    X, Y = _data()
    ddp = DistributedDataParallel(model, VirtualCluster(4), adamw, bucket_cap_bytes=bucket_cap)
    for _ in range(4):
        ddp.train_step(X, Y, F.cross_entropy)
    _serial(serial, X, Y, adamw, 4)
    for rep in ddp.replicas:
        assert _max_diff([p.data for p in rep.parameters()], [p.data for p in serial.parameters()]) < 1e-12
    assert ddp.replicas_in_sync()


def test_ddp_sends_a_ring_all_reduce_of_the_gradients_per_step():
    model = nn.MLP([8, 16, 4], dtype=np.float64)         # 8*16+16 + 16*4+4 = 212 parameters
    cl = VirtualCluster(4)
    ddp = DistributedDataParallel(model, cl, adamw, bucket_cap_bytes=10**9)   # one bucket
    cl.stats.reset()
    ddp.train_step(*_data(), F.cross_entropy)
    n = model.num_parameters()
    np.testing.assert_array_equal(cl.stats.bytes_sent, 2 * 3 / 4 * n * 8)


def test_ddp_overlap_finishes_sooner_than_all_reduce_after_backward():
    times = {}
    for overlap in (True, False):
        cl = VirtualCluster(4, latency=2e-7, bandwidth=2e8, flops_per_second=1e10)
        ddp = DistributedDataParallel(nn.MLP([64, 64, 64, 64, 8]), cl, adamw,
                                      bucket_cap_bytes=64 * 64 * 4, overlap=overlap)
        X, Y = _data(32, 64, 8)
        ddp.train_step(X.astype(np.float32), Y, F.cross_entropy)    # the model's dtype
        times[overlap] = cl.time
        comm = [e for e in cl.trace if e.stream == "comm" and e.kind == "all_reduce"]
        last_backward = max(e.start + e.duration for e in cl.trace if e.kind == "backward")
        assert (min(e.start for e in comm) < last_backward) == overlap
    assert times[True] < times[False]


def test_a_replica_that_skips_the_sync_drifts_apart():
    ddp = DistributedDataParallel(nn.MLP([8, 16, 4], dtype=np.float64), VirtualCluster(4), adamw)
    X, Y = _data()
    ddp.train_step(X, Y, F.cross_entropy)
    assert max_divergence(ddp.replicas) == 0.0
    ddp.train_step(X, Y, F.cross_entropy, skip_sync=(3,))
    assert max_divergence(ddp.replicas) > 1e-4
    assert max_divergence(ddp.replicas[:3]) == 0.0       # the others still agree


def test_ddp_vs_one_gpu_reports_rounding_only_and_the_last_step_trace():
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((32, 8)), rng.integers(0, 4, 32)
    cl = VirtualCluster(4)
    ddp, diff = ddp_vs_one_gpu(nn.MLP([8, 16, 4], dtype=np.float64), cl,
                               lambda ps: optim.SGD(ps, lr=0.5), X, Y, F.cross_entropy, steps=3)
    assert diff < 1e-12 and ddp.replicas_in_sync()
    assert min(e.start for e in cl.trace) == 0.0              # reset before the last step


def test_parameter_server_equals_serial_and_loads_the_server():
    model = nn.MLP([8, 16, 4], dtype=np.float64)
    serial = copy.deepcopy(model)
    X, Y = _data()
    cl = VirtualCluster(4)
    ps = ParameterServer(model, cl, adamw)
    cl.stats.reset()
    for _ in range(3):
        ps.train_step(X, Y, F.cross_entropy)
    _serial(serial, X, Y, adamw, 3)
    assert _max_diff([p.data for p in ps.replicas[2].parameters()],
                     [p.data for p in serial.parameters()]) < 1e-12
    n, steps = model.num_parameters(), 3
    # workers push n, the server sends n to each of the p-1 workers
    assert cl.stats.bytes_sent.tolist() == [3 * n * 8 * steps] + [n * 8 * steps] * 3


# -- ZeRO / FSDP ------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", [0, 1, 2, 3])
@pytest.mark.parametrize("shard_group_size", [None, 2])
def test_zero_trains_like_ddp_and_holds_the_papers_memory(stage, shard_group_size):
    model = nn.MLP([8, 16, 16, 4], dtype=np.float64)    # 484 parameters: units 144, 272, 68
    X, Y = _data()
    ddp = DistributedDataParallel(copy.deepcopy(model), VirtualCluster(4), adamw)
    cl = VirtualCluster(4)
    z = ZeRO(model, cl, stage=stage, lr=1e-2, weight_decay=0.1, param_dtype=np.float64,
             master_dtype=np.float64, shard_group_size=shard_group_size)
    N = shard_group_size or 4
    assert z.num_params_padded == z.num_params == 484   # every unit divides evenly: no padding
    # fp64 weights and grads (8 + 8 bytes), master + m + v (24 bytes)
    expected = zero_memory_per_gpu(484, N, stage, 8, 8, 24)
    for r in range(4):
        assert z.memory_per_gpu(r) == expected
        assert z.held_memory_per_gpu(r) == expected     # measured from the arrays, not the ledger
    for _ in range(3):
        z.train_step(X, Y, F.cross_entropy)
        ddp.train_step(X, Y, F.cross_entropy)
    ref = [p.data for p in ddp.replicas[0].parameters()]
    for r in range(4):
        assert _max_diff(z.full_parameters(r), ref) < 1e-12
        # after a step: temporaries freed, and no full gradient left behind on the parameters
        assert z.memory_per_gpu(r) == expected
        assert z.held_memory_per_gpu(r) == expected


def test_zero_mixed_precision_memory_is_2_2_12():
    model = nn.MLP([16, 32, 8])                          # 808 parameters, units 544 and 264
    for stage in range(4):
        z = ZeRO(model, VirtualCluster(8), stage=stage)
        assert z.num_params_padded == 808
        assert z.memory_per_gpu(3) == zero_memory_per_gpu(808, 8, stage)
        z.train_step(*_data(16, 16, 8), F.cross_entropy)
        assert z.held_memory_per_gpu(3) == zero_memory_per_gpu(808, 8, stage)
    assert sum(zero_memory_per_gpu(1, 1, 0).values()) == 16
    assert sum(zero_memory_per_gpu(1000, 8, 3).values()) == 16 * 1000 / 8


def test_zero_pads_units_to_a_multiple_of_the_world_size():
    z = ZeRO(nn.MLP([5, 3]), VirtualCluster(4), stage=3)  # 18 parameters -> 20
    assert z.num_params_padded == 20
    assert z.memory_per_gpu(0) == zero_memory_per_gpu(20, 4, 3)
    z.train_step(*_data(8, 5, 3), F.cross_entropy)
    assert z.held_memory_per_gpu(0) == zero_memory_per_gpu(20, 4, 3)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_zero_communication_volume_vs_ddp(stage):
    model = nn.MLP([8, 16, 16, 4], dtype=np.float64)
    cl = VirtualCluster(4)
    z = ZeRO(model, cl, stage=stage, param_dtype=np.float64, master_dtype=np.float64)
    cl.stats.reset()
    z.train_step(*_data(), F.cross_entropy)
    expected = zero_comm_bytes_per_gpu(484, 4, stage, itemsize=8)
    np.testing.assert_allclose(cl.stats.bytes_sent, expected)
    ddp_bytes = 2 * 3 / 4 * 484 * 8
    assert expected / ddp_bytes == (1.5 if stage == 3 else 1.0)


def test_a_model_that_runs_out_of_memory_under_ddp_fits_under_zero3():
    model = nn.MLP([16, 32, 32, 8])                      # mixed precision: 16 bytes per parameter
    n = model.num_parameters()
    budget = 16 * n // 2                                 # half of what a full replica needs
    with pytest.raises(OutOfMemoryError, match="GPU 0"):
        ZeRO(model, VirtualCluster(8, memory_per_gpu=budget), stage=0)
    cl = VirtualCluster(8, memory_per_gpu=budget)
    z = ZeRO(model, cl, stage=3)
    z.train_step(*_data(32, 16, 8), F.cross_entropy)
    assert max(g.peak for g in cl.gpus) <= budget


def test_fsdp_strategies_map_to_zero_stages():
    model = nn.MLP([8, 16, 4])
    assert FSDP(model, VirtualCluster(4)).stage == 3
    assert FSDP(model, VirtualCluster(4), "SHARD_GRAD_OP").stage == 2
    h = FSDP(model, VirtualCluster(4), "HYBRID_SHARD", shard_group_size=2)
    assert h.shard_groups == [[0, 1], [2, 3]] and h.replicate_groups == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match="sharding_strategy"):
        FSDP(model, VirtualCluster(4), "SHARD_EVERYTHING")
    with pytest.raises(ValueError, match="stage"):
        ZeRO(model, VirtualCluster(4), stage=4)


# -- pipeline ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p, m", [(1, 3), (2, 1), (3, 5), (4, 8), (5, 16)])
def test_simulated_bubble_is_the_formula(p, m):
    for make in SCHEDULES.values():
        events, makespan = simulate_schedule(make(p, m), t_forward=1.0, t_backward=2.0)
        measured = 1 - sum(e[2] for e in events) / (p * makespan)
        assert measured == pytest.approx((p - 1) / (m + p - 1), abs=1e-12)
        assert makespan == pytest.approx((m + p - 1) * 3.0)


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_pipeline_gradients_equal_the_unsplit_model(schedule):
    model = nn.Sequential(*[nn.Linear(8, 8, dtype=np.float64) for _ in range(4)])
    ref = copy.deepcopy(model)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((16, 8)), rng.standard_normal((16, 8))
    cl = VirtualCluster(4, latency=0.0, bandwidth=1e300)
    pp = PipelineParallel(model, cl, num_microbatches=8, schedule=schedule)
    loss = pp.train_step(X, Y, F.mse_loss)
    ref_loss = F.mse_loss(ref(Tensor(X)), Tensor(Y))
    ref_loss.backward()
    assert loss == pytest.approx(ref_loss.item(), rel=1e-12)
    assert _max_diff([p.grad for p in model.parameters()], [p.grad for p in ref.parameters()]) < 1e-12
    # equal stages and free links: the measured bubble is the formula
    assert pp.bubble() == pytest.approx(bubble_fraction(4, 8), abs=1e-9)


def test_1f1b_holds_fewer_activations_than_gpipe():
    peaks = {}
    for schedule in ("gpipe", "1f1b"):
        cl = VirtualCluster(4)
        model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(4)])
        PipelineParallel(model, cl, num_microbatches=8, schedule=schedule).train_step(
            np.ones((32, 8), np.float32), np.ones((32, 8), np.float32), F.mse_loss)
        params = model[0].weight.data.nbytes + model[0].bias.data.nbytes
        peaks[schedule] = [(g.peak - params) // (4 * 8 * 4) for g in cl.gpus]  # in micro-batch outputs
    assert peaks["gpipe"] == [8, 8, 8, 8]                # every micro-batch in flight
    assert peaks["1f1b"] == [4, 3, 2, 1]                 # at most p - s in flight


def test_pipeline_errors():
    with pytest.raises(ValueError, match="bubble_fraction"):
        bubble_fraction(0, 4)
    with pytest.raises(ValueError, match="stages"):
        split_stages(3, 4)
    with pytest.raises(ValueError, match="schedule"):
        PipelineParallel(nn.MLP([4, 4]), VirtualCluster(1), schedule="zigzag")


# -- tensor and sequence parallelism ----------------------------------------------------------------

def _spmd_backward(outs, G):
    # every rank computes the same loss from its own copy (SPMD); backward all of them at once
    total = None
    for y in outs:
        term = (y * Tensor(G)).sum()
        total = term if total is None else total + term
    total.backward()


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_tensor_parallel_mlp_equals_the_unsplit_mlp(p):
    fc1, fc2 = nn.Linear(6, 10, dtype=np.float64), nn.Linear(10, 6, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((3, 5, 6))
    cl = VirtualCluster(p)
    tp = TensorParallelMLP(fc1, fc2, cl)
    xs = [Tensor(x.copy(), requires_grad=True) for _ in range(p)]
    ys = tp(xs)
    ref_x = Tensor(x, requires_grad=True)
    ref = fc2(F.gelu(fc1(ref_x)))
    G = np.random.default_rng(1).standard_normal(ref.shape)
    for y in ys:
        np.testing.assert_allclose(y.data, ref.data, rtol=1e-12, atol=1e-12)
    _spmd_backward(ys, G)
    (ref * Tensor(G)).sum().backward()
    b = np.cumsum([0] + [len(c) for c in np.array_split(np.arange(10), p)])   # hidden units per GPU
    for i in range(p):
        np.testing.assert_allclose(tp.w1[i].grad, fc1.weight.grad[b[i]:b[i + 1]], atol=1e-12)
        np.testing.assert_allclose(tp.w2[i].grad, fc2.weight.grad[:, b[i]:b[i + 1]], atol=1e-12)
        np.testing.assert_allclose(xs[i].grad, ref_x.grad, atol=1e-12)   # f's all-reduce in backward


def test_tensor_parallel_mlp_sends_one_all_reduce_each_way():
    p, shape = 4, (2, 3, 8)
    cl = VirtualCluster(p)
    tp = TensorParallelMLP(nn.Linear(8, 16, dtype=np.float64), nn.Linear(16, 8, dtype=np.float64), cl)
    ys = tp([Tensor(np.ones(shape), requires_grad=True) for _ in range(p)])
    n = int(np.prod(shape))
    np.testing.assert_array_equal(cl.stats.bytes_sent, 2 * (p - 1) / p * n * 8)   # forward g
    _spmd_backward(ys, np.ones(shape))
    np.testing.assert_array_equal(cl.stats.bytes_sent, 2 * 2 * (p - 1) / p * n * 8)  # + backward f


def test_tensor_parallel_attention_equals_unsplit_attention():
    C, H, p = 8, 4, 2
    q, k, v, o = (nn.Linear(C, C, dtype=np.float64) for _ in range(4))
    x = np.random.default_rng(0).standard_normal((2, 5, C))
    tp = TensorParallelAttention(q, k, v, o, H, VirtualCluster(p))
    ys = tp([Tensor(x) for _ in range(p)])
    X = Tensor(x)

    def heads(t):
        return t.reshape(2, 5, H, C // H).transpose(1, 2)
    a = F.scaled_dot_product_attention(heads(q(X)), heads(k(X)), heads(v(X)), is_causal=True)
    ref = o(a.transpose(1, 2).reshape(2, 5, C))
    for y in ys:
        np.testing.assert_allclose(y.data, ref.data, atol=1e-12)
    G = np.random.default_rng(2).standard_normal(ref.shape)
    _spmd_backward(ys, G)
    (ref * Tensor(G)).sum().backward()
    np.testing.assert_allclose(tp.wq[1].grad, q.weight.grad[4:8], atol=1e-12)
    np.testing.assert_allclose(tp.wo[0].grad, o.weight.grad[:, 0:4], atol=1e-12)
    with pytest.raises(ValueError, match="n_heads"):
        TensorParallelAttention(q, k, v, o, 3, VirtualCluster(2))


def test_sequence_parallelism_same_output_same_bytes_activations_divided_by_p():
    p, C = 4, 8
    ln = nn.LayerNorm(C, dtype=np.float64)
    fc1, fc2 = nn.Linear(C, 16, dtype=np.float64), nn.Linear(16, C, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 8, C))
    ref = Tensor(x) + fc2(F.gelu(fc1(ln(Tensor(x)))))
    res = {}
    for sp in (False, True):
        cl = VirtualCluster(p)
        blk = SequenceParallelMLPBlock(ln, fc1, fc2, cl, sequence_parallel=sp)
        xs = [np.ascontiguousarray(a) for a in np.array_split(x, p, axis=1)] if sp else [x] * p
        ys = blk([Tensor(a) for a in xs])
        out = np.concatenate([y.data for y in ys], axis=1) if sp else ys[0].data
        np.testing.assert_allclose(out, ref.data, atol=1e-12)
        res[sp] = (blk.activation_bytes(0), cl.stats.bytes_sent.copy())
    assert res[True][0] * p == res[False][0]
    np.testing.assert_array_equal(res[True][1], res[False][1])   # all-gather + reduce-scatter = all-reduce


def test_sequence_parallel_layernorm_gradients_after_sync_equal_unsplit():
    p, C = 2, 4
    ln = nn.LayerNorm(C, dtype=np.float64)
    ln.weight.data[:] = np.linspace(0.5, 1.5, C)
    fc1, fc2 = nn.Linear(C, 8, dtype=np.float64), nn.Linear(8, C, dtype=np.float64)
    x = np.random.default_rng(3).standard_normal((1, 6, C))
    blk = SequenceParallelMLPBlock(ln, fc1, fc2, VirtualCluster(p), sequence_parallel=True)
    ys = blk([Tensor(np.ascontiguousarray(a)) for a in np.array_split(x, p, axis=1)])
    sum(y.sum() for y in ys[1:]).__add__(ys[0].sum()).backward()
    blk.sync_norm_grads()
    (Tensor(x) + fc2(F.gelu(fc1(ln(Tensor(x)))))).sum().backward()
    np.testing.assert_allclose(blk.ln_w[0].grad, ln.weight.grad, atol=1e-12)
    np.testing.assert_allclose(blk.ln_b[1].grad, ln.bias.grad, atol=1e-12)


# -- which strategy ------------------------------------------------------------------------------

def test_recommend_strategy_follows_the_table():
    GB = 1e9
    assert recommend_strategy(10**8, 80 * GB, 8).strategy == "DDP"                 # 1.6 GB
    assert recommend_strategy(7 * 10**9, 80 * GB, 8).strategy == "ZeRO-1"          # 28 + 10.5 GB
    assert recommend_strategy(20 * 10**9, 80 * GB, 8).strategy == "ZeRO-2"          # 40 + 35 GB
    assert recommend_strategy(30 * 10**9, 80 * GB, 8).strategy == "ZeRO-3 / FSDP"   # 16*30/8 = 60 GB
    # 16*20/8 = 40 GB sharded inside one 8-GPU node: fits, so replicate across the slow links
    assert "hybrid" in recommend_strategy(20 * 10**9, 80 * GB, 64, slow_inter_node=True).strategy
    assert "tensor parallel" in recommend_strategy(10**9, 80 * GB, 8, largest_layer_params=3 * 10**10).strategy
    with pytest.raises(ValueError, match="num_gpus"):
        recommend_strategy(10, 1.0, 0)
