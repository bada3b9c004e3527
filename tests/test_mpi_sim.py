"""The per-rank (SPMD) parallelisms on the simulator agree with chapter 8's whole-cluster
classes: same weights, same bytes on the wire, and DDP's bucket all-reduces overlap backward."""

import copy
import subprocess
import sys

import numpy as np
import pytest

import minigrad.distributed as dist
from minigrad import Tensor, nn, optim
from minigrad import functional as F
from minigrad.cli import main
from minigrad.distributed.ddp import DistributedDataParallel as ClusterDDP
from minigrad.distributed.spmd import DistributedDataParallel, ZeroDataParallel
from minigrad.distributed.zero import ZeRO

HERE = __file__.rsplit("/", 1)[0]


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    model = nn.MLP([8, 16, 16, 4], dtype=np.float64)
    return model, rng.standard_normal((16, 8)), rng.integers(0, 4, 16)


def test_per_rank_ddp_sends_what_the_whole_cluster_ddp_sends_and_overlaps():
    model, X, Y = _problem()
    cap = 16 * 17 * 8                          # one layer per bucket
    cl = dist.VirtualCluster(4, latency=2e-7, bandwidth=4e9, flops_per_second=1e10)
    whole = ClusterDDP(copy.deepcopy(model), cl, lambda ps: optim.Adam(ps, lr=1e-2),
                       bucket_cap_bytes=cap)
    cl.reset()
    whole.train_step(X, Y, F.cross_entropy)
    whole_bytes = cl.stats.bytes_sent.copy()

    sim = dist.VirtualCluster(4, latency=2e-7, bandwidth=4e9, flops_per_second=1e10)

    def rank():
        m = copy.deepcopy(model)
        ddp = DistributedDataParallel(m, bucket_cap_bytes=cap)
        opt = optim.Adam(list(m.parameters()), lr=1e-2)
        dist.barrier()
        if dist.get_rank() == 0:
            sim.reset()
        dist.barrier()
        r = dist.get_rank()
        ddp.forward_backward(np.split(X, 4)[r], np.split(Y, 4)[r], F.cross_entropy)
        opt.step()
        return [q.data for q in m.parameters()]
    params = dist.spawn(rank, 4, cluster=sim)
    for a, b in zip(params[3], whole.replicas[0].parameters()):
        np.testing.assert_allclose(a, b.data, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(sim.stats.bytes_sent, whole_bytes)
    comm = [e for e in sim.trace if e.kind == "all_reduce"]
    last_backward = max(e.start + e.duration for e in sim.trace if e.kind == "backward")
    assert len({e.label for e in comm}) > 0 and min(e.start for e in comm) < last_backward


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_per_rank_zero_equals_the_whole_cluster_zero_weights_and_bytes(stage):
    model, X, Y = _problem()
    cl = dist.VirtualCluster(4)
    whole = ZeRO(copy.deepcopy(model), cl, stage=stage, lr=1e-2, param_dtype=np.float64,
                 master_dtype=np.float64)
    cl.stats.reset()
    for _ in range(2):
        whole.train_step(X, Y, F.cross_entropy)
    sim = dist.VirtualCluster(4)

    def rank():
        z = ZeroDataParallel(copy.deepcopy(model), stage=stage, lr=1e-2)
        dist.barrier()
        if dist.get_rank() == 0:
            sim.stats.reset()
        dist.barrier()
        r = dist.get_rank()
        for _ in range(2):
            z.train_step(np.split(X, 4)[r], np.split(Y, 4)[r], F.cross_entropy)
        sent = dist.comm_stats()["bytes_sent"]
        return z.parameters_full(), sent
    (params, sent), *_ = dist.spawn(rank, 4, cluster=sim)
    for a, b in zip(params, whole.full_parameters(0)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
    assert sent == cl.stats.bytes_sent[0]


def test_launch_on_the_simulator_prints_rank_0_only(capsys, tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("import numpy as np\nimport minigrad.distributed as dist\n"
                      "dist.init_process_group()\nx = np.full(5, dist.get_rank() + 1.0)\n"
                      "dist.all_reduce(x)\nprint('rank', dist.get_rank(), 'sees', x.tolist())\n")
    assert main(["launch", "-n", "3", "--backend", "sim", str(script)]) == 0
    assert capsys.readouterr().out == "rank 0 sees [6.0, 6.0, 6.0, 6.0, 6.0]\n"


def test_launch_runs_an_example_module_on_the_simulator(capsys):
    assert main(["launch", "-n", "2", "--backend", "sim", "-m",
                 "minigrad.distributed.examples.pipeline", "--steps", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["gpipe", "1f1b"]
    assert all("on 2 ranks (sim)" in line and "vs one process" in line for line in out)


def test_the_issues_example_under_plain_mpiexec_gives_6_everywhere(tmp_path):
    pytest.importorskip("mpi4py")
    from minigrad.distributed.launch import mpiexec_path
    script = tmp_path / "six.py"
    script.write_text("import numpy as np\nimport minigrad.distributed as dist\n"
                      "dist.init_process_group(backend='mpi')\n"
                      "x = np.full(5, dist.get_rank() + 1.0)\ndist.all_reduce(x)\n"
                      "ok = np.array([int((x == 6.0).all())])\n"
                      "dist.all_reduce(ok, op=dist.ReduceOp.MIN)\n"
                      "print('rank', dist.get_rank(), 'all ranks 6.0:', bool(ok[0]))\n")
    out = subprocess.run([mpiexec_path(), "-n", "3", sys.executable, str(script)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "rank 0 all ranks 6.0: True\n"     # rank 0 only prints


def test_misuse_is_named():
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.all_reduce(np.ones(3))
    with pytest.raises(ValueError, match="world_size=4 needs"):
        dist.init_process_group(backend="sim", world_size=4)

    def fn():
        with pytest.raises(ValueError, match="src 7 is not in the group"):
            dist.broadcast(np.ones(2), src=7)
        with pytest.raises(TypeError, match="ReduceOp.AVG needs floating"):
            dist.all_reduce(np.ones(2, np.int64), op=dist.ReduceOp.AVG)
        with pytest.raises(ValueError, match="C-contiguous"):
            dist.all_reduce(np.ones((4, 4))[:, 0])
        x = Tensor(np.full(3, dist.get_rank() + 1.0))          # a Tensor, in place
        dist.all_reduce(x, op=dist.ReduceOp.PRODUCT)
        return x.data
    assert all((v == 2.0).all() for v in dist.spawn(fn, 2))


@pytest.mark.parametrize("p", [2, 3])
def test_per_rank_sequence_parallel_mlp_equals_the_unsplit_mlp(p):
    from minigrad.distributed.collectives import chunk_bounds
    from minigrad.distributed.spmd import TensorParallelMLP
    rng = np.random.default_rng(1)
    fc1, fc2 = nn.Linear(6, 10, dtype=np.float64), nn.Linear(10, 6, dtype=np.float64)
    x = rng.standard_normal((2, 7, 6))                       # T = 7 tokens: uneven over p
    ref_in = Tensor(x, requires_grad=True)
    ref = fc2(F.gelu(fc1(ref_in)))
    (ref * ref).sum().backward()
    b = chunk_bounds(7, p)

    def rank():
        r = dist.get_rank()
        tp = TensorParallelMLP(fc1, fc2, sequence_parallel=True)
        xr = Tensor(x[:, b[r]:b[r + 1]].copy(), requires_grad=True)   # this rank's tokens
        y = tp(xr)
        (y * y).sum().backward()
        tp.sync_replicated_grads()
        return y.data, xr.grad, tp.fc2.bias.grad
    outs = dist.spawn(rank, p)
    np.testing.assert_allclose(np.concatenate([o[0] for o in outs], axis=1), ref.data, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([o[1] for o in outs], axis=1), ref_in.grad,
                               atol=1e-12)
    for o in outs:
        np.testing.assert_allclose(o[2], fc2.bias.grad, atol=1e-12)


def test_fsdp_strategies_are_zero_stages():
    from minigrad.distributed.spmd import FullyShardedDataParallel

    def rank():
        model, *_ = _problem()
        return [FullyShardedDataParallel(model, s).stage for s in ("FULL_SHARD", "SHARD_GRAD_OP")]
    assert dist.spawn(rank, 2)[0] == [3, 2]
    with pytest.raises(dist.RankError, match="sharding_strategy must be one of"):
        dist.spawn(lambda: FullyShardedDataParallel(_problem()[0], "NO_SUCH"), 2)
