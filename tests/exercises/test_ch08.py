"""Graded tests of chapter 8's exercises (distributed training on virtual GPUs).

Each compares the student's piece with a reference computed another way: the
NumPy definition of the collective, a closed-form byte count, the measured
idle time of a simulated schedule, the memory a ZeRO engine actually books,
the unsplit Linear, serial training.
"""

import copy

import numpy as np
import pytest

from minigrad import Tensor, nn, optim
from minigrad import functional as F
from minigrad.distributed import VirtualCluster, chunk_bounds
from minigrad.distributed.collectives import ring_all_gather_, ring_reduce_scatter_
from minigrad.distributed.ddp import DistributedDataParallel
from minigrad.distributed.pipeline import SCHEDULES, bubble_fraction, simulate_schedule
from minigrad.distributed.tensor_parallel import split_linear_columns
from minigrad.distributed.zero import ZeRO, zero_memory_per_gpu


def _arrays(p, n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n) for _ in range(p)]


def _run_reduce_scatter(p, n, op="sum", seed=0):
    xs = _arrays(p, n, seed)
    cl = VirtualCluster(p)
    flats = [x.copy() for x in xs]
    bounds = chunk_bounds(n, p)
    ring_reduce_scatter_(cl, flats, bounds, op, list(range(p)))
    return xs, flats, bounds, cl


@pytest.mark.exercise("ch8.ring_reduce_scatter", points=2)
def test_ring_reduce_scatter_leaves_each_rank_its_reduced_chunk():
    for p in range(1, 7):
        for n in (p, 3 * p + 1, 17):
            for op, ref_fn in (("sum", np.sum), ("max", np.max)):
                xs, flats, b, _ = _run_reduce_scatter(p, n, op, seed=n)
                ref = ref_fn(np.stack(xs), axis=0)
                for i in range(p):
                    np.testing.assert_allclose(flats[i][b[i]:b[i + 1]], ref[b[i]:b[i + 1]],
                                               rtol=1e-12)


@pytest.mark.exercise("ch8.ring_all_gather", points=1)
def test_ring_all_gather_gives_everyone_every_chunk():
    for p in range(1, 7):
        n = 2 * p + 3
        full = np.arange(n, dtype=np.float64)
        b = chunk_bounds(n, p)
        flats = [np.where((np.arange(n) >= b[i]) & (np.arange(n) < b[i + 1]), full, np.nan)
                 for i in range(p)]
        ring_all_gather_(VirtualCluster(p), flats, b, list(range(p)))
        for f in flats:
            np.testing.assert_array_equal(f, full)


@pytest.mark.exercise("ch8.bubble_fraction", points=1)
def test_bubble_fraction_equals_the_simulated_idle_time():
    for p, m in ((1, 4), (2, 3), (4, 8), (6, 2)):
        events, makespan = simulate_schedule(SCHEDULES["1f1b"](p, m), 1.0, 2.0)
        measured = 1 - sum(e[2] for e in events) / (p * makespan)
        assert bubble_fraction(p, m) == pytest.approx(measured, abs=1e-12)


@pytest.mark.exercise("ch8.zero_memory", points=1)
def test_zero_memory_equals_what_the_engine_books():
    model = nn.MLP([16, 32, 8])
    for stage in range(4):
        z = ZeRO(model, VirtualCluster(4), stage=stage)
        got = zero_memory_per_gpu(z.num_params_padded, 4, stage)
        assert {k: float(v) for k, v in got.items()} == \
            {k: float(v) for k, v in z.memory_per_gpu(2).items()}


@pytest.mark.exercise("ch8.split_linear", points=1)
def test_column_shards_give_slices_of_the_output():
    lin = nn.Linear(5, 12, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((3, 5))
    full = F.linear(Tensor(x), lin.weight, lin.bias).data
    shards = split_linear_columns(lin.weight.data, lin.bias.data, 4)
    outs = [F.linear(Tensor(x), Tensor(w), Tensor(b)).data for w, b in shards]
    np.testing.assert_allclose(np.concatenate(outs, axis=-1), full, rtol=1e-12)


def _mlp_and_data():
    model = nn.MLP([6, 12, 4], dtype=np.float64)     # 136 parameters, divisible by 4 GPUs
    rng = np.random.default_rng(0)
    return model, rng.standard_normal((16, 6)), rng.integers(0, 4, 16)


def _adam(ps):
    return optim.Adam(ps, lr=1e-2)


@pytest.mark.exercise("ch8.ddp_bucket_allreduce", points=2)
def test_ddp_equals_serial_training():
    model, X, Y = _mlp_and_data()
    serial = copy.deepcopy(model)
    ddp = DistributedDataParallel(model, VirtualCluster(4), _adam, bucket_cap_bytes=100)
    opt = _adam(list(serial.parameters()))
    for _ in range(3):
        ddp.train_step(X, Y, F.cross_entropy)
        opt.zero_grad()
        F.cross_entropy(serial(Tensor(X)), Y).backward()
        opt.step()
    for rep in ddp.replicas:
        for a, b in zip(rep.parameters(), serial.parameters()):
            np.testing.assert_allclose(a.data, b.data, atol=1e-12)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch8.ring_reduce_scatter", points=1)
def test_ring_reduce_scatter_bytes_and_steps():
    for p, n in ((3, 10), (5, 5), (8, 29)):
        _, _, b, cl = _run_reduce_scatter(p, n)
        sizes = np.diff(b)
        # rank i sends every chunk except its own, one message per step
        assert cl.stats.bytes_sent.tolist() == [(n - sizes[i]) * 8 for i in range(p)]
        assert cl.stats.messages.tolist() == [p - 1] * p


@pytest.mark.exercise("ch8.ring_all_gather", points=1)
def test_ring_all_gather_bytes():
    p, n = 5, 23
    b = chunk_bounds(n, p)
    cl = VirtualCluster(p)
    ring_all_gather_(cl, [np.zeros(n) for _ in range(p)], b, list(range(p)))
    sizes = np.diff(b)
    assert cl.stats.bytes_sent.tolist() == [(n - sizes[(i + 1) % p]) * 8 for i in range(p)]


@pytest.mark.exercise("ch8.bubble_fraction", points=1)
def test_bubble_fraction_limits():
    assert bubble_fraction(1, 7) == 0.0
    assert bubble_fraction(4, 1) == pytest.approx(3 / 4)
    assert bubble_fraction(8, 10**6) < 1e-5


@pytest.mark.exercise("ch8.zero_memory", points=1)
def test_zero_memory_closed_forms():
    psi, n = 10**6, 8
    totals = [sum(zero_memory_per_gpu(psi, n, s).values()) for s in range(4)]
    assert totals[0] == 16 * psi
    assert totals[1] == 4 * psi + 12 * psi / n
    assert totals[2] == 2 * psi + 14 * psi / n
    assert totals[3] == 16 * psi / n
    assert sum(zero_memory_per_gpu(psi, n, 3, 8, 8, 24).values()) == 40 * psi / n


@pytest.mark.exercise("ch8.split_linear", points=1)
def test_column_split_uneven_and_without_bias():
    w = np.arange(7 * 3, dtype=np.float64).reshape(7, 3)
    w0 = w.copy()
    shards = split_linear_columns(w, None, 3)
    np.testing.assert_array_equal(w, w0, err_msg="split_linear_columns must not change the weight")
    b = chunk_bounds(7, 3)
    for i, (wi, bi) in enumerate(shards):
        np.testing.assert_array_equal(wi, w0[b[i]:b[i + 1]])
        assert bi is None
        assert not np.shares_memory(wi, w)


@pytest.mark.exercise("ch8.ddp_bucket_allreduce", points=1)
def test_ddp_sends_one_ring_all_reduce_of_the_gradients():
    model, X, Y = _mlp_and_data()
    cl = VirtualCluster(4)
    ddp = DistributedDataParallel(model, cl, _adam, bucket_cap_bytes=10**9)
    cl.stats.reset()
    ddp.train_step(X, Y, F.cross_entropy)
    n = model.num_parameters()
    np.testing.assert_array_equal(cl.stats.bytes_sent, 2 * 3 / 4 * n * 8)
    assert cl.stats.calls["all_reduce"] == 1
# END HIDDEN TESTS
