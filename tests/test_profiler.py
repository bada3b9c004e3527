"""minigrad.profiler: a step's time split by op adds up, changes nothing, and the kernel
comparison checks that both kernel sets compute the same loss."""

import numpy as np
import pytest

from minigrad import kernels
from minigrad.models import GPTConfig
from minigrad.profiler import CATEGORIES, OTHER, OpProfiler, compare_kernels, profile_step, \
    tinygpt_step
from minigrad.tensor import Tensor

SMALL = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)


def test_one_profiled_step_splits_exactly_into_its_parts():
    ms = profile_step(tinygpt_step(SMALL, batch_size=3), steps=1, warmup=0)
    parts = {k: v for k, v in ms.items() if k != "step"}
    assert all(v >= 0 for v in parts.values())
    # forward ops + glue, backward closures + engine, zero_grad + step: the whole step
    assert sum(parts.values()) == pytest.approx(ms["step"], rel=1e-9)
    assert list(ms)[-1] == "step" and list(parts.values()) == sorted(parts.values(), reverse=True)
    for part in ("matmuls (linear)", "attention (sdpa)", "layer norm", "GELU", "cross-entropy"):
        assert parts[part] > 0, part


def test_the_profiler_changes_no_value_and_restores_make():
    make = Tensor.__dict__["_make"]
    plain, profiled = tinygpt_step(SMALL, batch_size=3), tinygpt_step(SMALL, batch_size=3)
    for forward, opt in (plain,):
        for _ in range(2):
            opt.zero_grad(), forward().backward(), opt.step()
    profile_step(profiled, steps=1, warmup=1)
    for (n, a), (_, b) in zip(plain[0].model.named_parameters(),
                              profiled[0].model.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=n)
    assert Tensor.__dict__["_make"] is make
    with pytest.raises(ZeroDivisionError):
        with OpProfiler():
            raise ZeroDivisionError("inside the profiler")
    assert Tensor.__dict__["_make"] is make


def test_ops_map_to_parts_and_unknown_ops_go_to_other():
    with OpProfiler() as prof:
        x = Tensor(np.ones(3, np.float32), requires_grad=True)
        prof.last = 0.0
        (x.exp() * 2).sum().backward()
    assert {"exp", "mul", "sum"} <= set(prof.fwd) and set(prof.bwd) <= set(prof.fwd)
    assert CATEGORIES.get("exp", OTHER) == OTHER and CATEGORIES["linear"] == "matmuls (linear)"


def test_compare_kernels_checks_the_two_first_losses():
    runs = compare_kernels(lambda: tinygpt_step(SMALL, batch_size=2), steps=1, warmup=0)
    assert set(runs) == set(kernels.BACKENDS)
    assert runs["numba"]["first loss"] == pytest.approx(runs["reference"]["first loss"], rel=1e-5)

    def disagreeing():  # a step whose loss depends on the kernel set: a wrong kernel
        forward, opt = tinygpt_step(SMALL, batch_size=2)
        scale = 1.0 if kernels.backend() == "numba" else 1.01
        return (lambda: forward() * scale), opt
    with pytest.raises(RuntimeError, match="first losses differ"):
        compare_kernels(disagreeing, steps=1, warmup=0)


def test_profile_step_names_bad_arguments():
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        profile_step(tinygpt_step(SMALL), steps=0)
