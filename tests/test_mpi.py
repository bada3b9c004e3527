"""The process-group API on real processes (mpiexec -n 2 and -n 4) and on the simulator.

Each mpiexec launch runs many checks at once (tests/mpi_rank_checks.py): every
collective against its NumPy definition (awkward lengths, four dtypes, the five
ops), the ring's bytes, a shape mismatch, and every training strategy against
one process. The same script runs on the simulator, whose losses must agree.
"""

import json
import sys

import numpy as np
import pytest

import minigrad.distributed as dist
from minigrad.distributed.examples.common import STRATEGIES, train
from minigrad.distributed.launch import LaunchError, launch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import mpi_rank_checks  # noqa: E402

HERE = __file__.rsplit("/", 1)[0]


@pytest.fixture(scope="module", params=[2, 4])
def mpi_run(request, tmp_path_factory):
    pytest.importorskip("mpi4py")
    out = tmp_path_factory.mktemp("mpi") / "result.json"
    launch(f"{HERE}/mpi_rank_checks.py", request.param, "mpi", [str(out)], capture=True,
           timeout=120)
    return json.loads(out.read_text())


def test_expert_parallel_moe_on_real_processes_equals_one_device(mpi_run):
    # every rank checked its own tokens; rank 0 reports its difference
    assert mpi_run["moe_ep_diff"] < 1e-12


def test_every_collective_equals_its_numpy_definition_under_mpi(mpi_run):
    assert mpi_run["bad_total"] == 0, mpi_run["bad"]
    # the checks really ran: every dtype x 2 lengths, AVG on the float dtypes only
    dts = mpi_run["dtypes"]
    assert mpi_run["counts"]["all_reduce MIN"] == 2 * len(dts)
    assert mpi_run["counts"]["all_reduce AVG"] == 2 * sum(d.startswith("float") for d in dts)
    assert mpi_run["counts"]["all_to_all"] == 2 * len(dts) * mpi_run["world_size"]


def test_ring_over_sendrecv_sends_2_p_minus_1_over_p_n_itemsize(mpi_run):
    p = mpi_run["world_size"]
    assert mpi_run["ring_bytes"] == 2 * (p - 1) / p * 1000 * 4


def test_mismatched_shapes_raise_on_every_rank_naming_the_shapes(mpi_run):
    assert mpi_run["mismatch_raised"] == mpi_run["world_size"]
    assert "rank 1 all_reduce ((5,)" in mpi_run["mismatch"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_training_equals_one_process_and_the_simulator(mpi_run, strategy):
    got = mpi_run["trained"][strategy]
    assert got["loss_diff"] < 1e-12 and got["param_diff"] < 1e-12
    sim = dist.spawn(lambda: train(strategy, steps=2), mpi_run["world_size"])[0]
    np.testing.assert_allclose(got["losses"], sim["losses"], rtol=1e-12, atol=0)


def test_the_same_checks_pass_on_the_simulator():
    res = dist.spawn(mpi_rank_checks.run_checks, 3, args=(None, False))[0]
    assert res["bad_total"] == 0, res["bad"]
    # 3 does not divide 1000: rank 0 sends every chunk but its own and then every chunk but
    # rank 1's, (2n - |c_0| - |c_1|) elements, as the ring over Sendrecv counts
    c = np.diff(dist.chunk_bounds(1000, 3))
    assert res["ring_bytes"] == (2 * 1000 - c[0] - c[1]) * 4
    assert res["mismatch_raised"] == 3


@pytest.mark.parametrize("how,expect", [("raise", "rank 1 failed ValueError: rank one gives up"),
                                        ("kill", "rank 1 (pid"),
                                        ("hang", "rank 1 hangs")])
def test_a_failing_rank_ends_the_mpi_run_naming_it(how, expect):
    pytest.importorskip("mpi4py")
    with pytest.raises(LaunchError) as info:     # 5 s: well past both ranks' imports on a
        launch(f"{HERE}/mpi_rank_failures.py", 2, "mpi", [how], capture=True, timeout=5)  # busy CI
    assert expect in str(info.value) and info.value.rank == 1


def _hydra_report(pid, code):
    return (f"=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES\n=   PID {pid} RUNNING AT vm\n"
            f"=   EXIT CODE: {code}\n=   CLEANING UP REMAINING PROCESSES\n")


@pytest.mark.parametrize("named,code,states,expect", [
    # Hydra collected rank 0's exit (its own cleanup SIGKILL) before rank 1's: rank 0 waits
    # inside all_reduce #2 for rank 1, which left the collectives after #1
    (100, 9, {0: "in all_reduce #2", 1: "after all_reduce #1"}, 1),
    (101, 9, {0: "in all_reduce #2", 1: "after all_reduce #1"}, 1),
    # every rank inside a collective: nothing contradicts Hydra
    (100, 9, {0: "in all_reduce #2", 1: "in all_reduce #2"}, 0),
    # not SIGKILL (Hydra's cleanup signal): Hydra's report is unambiguous
    (100, 11, {0: "in all_reduce #2", 1: "after all_reduce #1"}, 0),
    # the furthest behind of the ranks outside the collectives
    (100, 9, {0: "in all_reduce #5", 1: "after all_reduce #4", 2: "after all_reduce #3"}, 2),
    # rank 1 died before it wrote its status (in its imports): rank 0 waits for it
    (100, 9, {0: "in all_reduce #1", 1: None}, 1),
    (555, 9, {0: "in all_reduce #1", 1: None}, 1),      # and Hydra named it by its pid
])
def test_a_killed_rank_is_named_even_when_hydra_reports_a_cleaned_up_one(named, code, states,
                                                                          expect):
    from minigrad.distributed.launch import _failure_error
    status = {r: (100 + r, s) if s else (None, "not started") for r, s in states.items()}
    err = _failure_error(status, 137, _hydra_report(named, code))
    assert err.rank == expect
    pid = status[expect][0] or (named if named not in (100, 101) else "unknown")
    assert f"rank {expect} (pid {pid} on vm) died" in str(err), str(err)


@pytest.mark.parametrize("states,expect", [
    ({0: "in all_reduce #3", 1: "after all_reduce #2"}, 1),            # 0 waits for 1
    ({0: "in all_reduce #3", 1: "after all_reduce #2", 2: "after all_reduce #1"}, 2),
    ({0: "in all_reduce #3", 1: "not started"}, 1),
    ({0: "in all_reduce #3", 1: "in all_reduce #2"}, 1),               # 1 is behind
    ({0: "done", 1: "running"}, 1),
    ({0: "running", 1: "running"}, None),         # nobody waits: nobody to blame
])
def test_a_timed_out_run_blames_the_rank_the_others_wait_for(states, expect):
    from minigrad.distributed.launch import _hang_error
    err = _hang_error({r: (100 + r, s) for r, s in states.items()}, 5, "")
    assert err.rank == expect, str(err)
    assert (f"rank {expect} hangs" if expect is not None else "no rank waiting") in str(err)


def test_a_collective_timeout_ends_a_hung_mpi_run_naming_the_rank():
    pytest.importorskip("mpi4py")
    import os
    with pytest.raises(LaunchError) as info:     # no launcher timeout: the ranks' own watchdogs
        launch(f"{HERE}/mpi_rank_failures.py", 2, "mpi", ["hang"], capture=True, timeout=60,
               env=dict(os.environ, MINIGRAD_DIST_TIMEOUT="1"))
    assert "a collective timed out: rank 1 hangs" in str(info.value) and info.value.rank == 1
    assert "rank 0: timed out in all_reduce #" in str(info.value)


@pytest.mark.parametrize("how", ["raise", "hang"])
def test_a_failing_rank_ends_the_simulated_run_naming_it(how, monkeypatch):
    with pytest.raises(LaunchError) as info:
        launch(f"{HERE}/mpi_rank_failures.py", 3, "sim", [how], timeout=1.0) \
            if how == "raise" else _sim_hang()
    assert info.value.rank == 1 and "rank" in str(info.value)


def _sim_hang():
    import time

    def fn():
        dist.init_process_group()
        if dist.get_rank() == 1:
            time.sleep(0.6)
        dist.all_reduce(np.ones(3))
    try:
        dist.spawn(fn, 3, timeout=0.3)
    except dist.DistTimeoutError as e:
        assert "rank(s) [1] did not arrive" in str(e)
        raise LaunchError(str(e), rank=1) from e


def test_simulated_mismatch_raises_on_every_rank():
    def fn():
        dist.init_process_group()
        try:
            dist.all_reduce(np.zeros(3 + dist.get_rank()))
        except ValueError as e:
            return str(e)
    msgs = dist.spawn(fn, 3)
    assert all(m is not None and "rank 2 ((5,)" in m for m in msgs)


def test_sim_keeps_the_simulators_bytes_clocks_and_faults():
    cl = dist.VirtualCluster(4)

    def fn():
        dist.all_reduce(np.ones(1000, np.float32))
    dist.spawn(fn, 4, cluster=cl)
    assert (cl.stats.bytes_sent == 2 * 3 / 4 * 1000 * 4).all() and cl.time > 0
    cl.faults.drop(src=2)
    with pytest.raises(dist.RankError) as info:
        dist.spawn(fn, 4, cluster=cl)
    assert "never arrived" in str(info.value)


def test_sim_memory_budget_raises_out_of_memory_naming_the_gpu():
    from minigrad.distributed.spmd import ZeroDataParallel
    from minigrad.distributed.examples.common import make_problem
    model, *_ = make_problem()
    # per rank, P bytes of weights: ZeRO-1 keeps P + P + 3P/4 (weights, gradients, its shard
    # of fp64 Adam states), ZeRO-3 (P + P + 3P) / 4: a budget of 1.5 P fits only ZeRO-3
    budget = 1.5 * sum(q.data.nbytes for q in model.parameters())

    def fn(stage):
        ZeroDataParallel(model, stage=stage)
    with pytest.raises(dist.RankError) as info:
        dist.spawn(fn, 4, args=(1,), cluster=dist.VirtualCluster(4, memory_per_gpu=budget))
    assert isinstance(info.value.exception, dist.OutOfMemoryError)
    dist.spawn(fn, 4, args=(3,), cluster=dist.VirtualCluster(4, memory_per_gpu=budget))


def test_mpi_backend_without_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r'pip install "minigrad\[mpi\]"'):
        dist.init_process_group(backend="mpi")
    assert not dist.is_initialized()
