"""minigrad.quant against the live bitsandbytes library (CPU), bit for bit where it is deterministic.

Chapter 6 borrows bitsandbytes' names (quantize_4bit, quantize_blockwise, create_dynamic_map,
get_4bit_type, compress_statistics, int8 vector-wise quantization), so it promises bitsandbytes'
numbers. bitsandbytes on CPU runs two kinds of code: its pure-PyTorch "default" backend
(quantize_4bit always; reachable for the 8-bit blockwise op through the dispatcher) and C
kernels (8-bit blockwise quantize/dequantize, 4-bit dequantize). Where the C kernel departs from
bitsandbytes' own semantics (its 8-bit search misplaces values below ~1e-4 of the absmax, it
divides where the other paths multiply by the reciprocal), the tests below state what still must
hold instead of copying the departure.
"""

import logging
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _quiet = logging.getLogger("bitsandbytes")
    _level = _quiet.level
    _quiet.setLevel(logging.ERROR)          # the kernels-community notice at import
    try:
        bnb = pytest.importorskip("bitsandbytes")
    finally:
        _quiet.setLevel(_level)
F = bnb.functional

from minigrad import kernels as switch  # noqa: E402
from minigrad import quant as Q  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture(params=["reference", "numba"], autouse=True)
def backend(request):
    """Every comparison runs under both of minigrad's kernel sets."""
    with switch.use(request.param):
        yield request.param


def _default_backend(opname, *args):
    """bitsandbytes' pure-PyTorch implementation of ``opname`` (its CompositeExplicitAutograd
    kernel), bypassing the C kernel registered for CPU."""
    op = getattr(torch.ops.bitsandbytes, opname).default
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)
    return op.redispatch(keys, *args)


def bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def hard_input(n, blocksize, code, seed):
    """float32 values: normal, with a zero block, a block of exact code midpoints (absmax 1 and
    a power of two), a block near 3e38, blocks of absmax 1e-30 (below 2^-100) and 1e-36."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32)
    mids = np.unique(code.astype(np.float32))
    mids = ((mids[:-1].astype(np.float64) + mids[1:]) / 2).astype(np.float32)
    blocks = [b * blocksize for b in range(n // blocksize)]      # full blocks only
    if len(blocks) >= 6:
        x[blocks[0]:blocks[0] + blocksize] = 0
        for b, scale in ((blocks[1], 1.0), (blocks[2], 4.0)):
            k = min(blocksize - 1, mids.size)
            x[b] = scale
            x[b + 1:b + 1 + k] = mids[:k] * np.float32(scale)
        x[blocks[3]:blocks[3] + blocksize] *= np.float32(3e38 / 5)
        x[blocks[4]:blocks[4] + blocksize] *= np.float32(1e-30)
        x[blocks[5]:blocks[5] + blocksize] *= np.float32(1e-36)
    return np.clip(x, -3.4e38, 3.4e38).astype(np.float32)


# ----------------------------------------------------------------------------
# code books
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("qt", ["nf4", "fp4"])
def test_4bit_code_books_are_bitsandbytes_get_4bit_type(qt):
    np.testing.assert_array_equal(bits(Q.get_4bit_type(qt)),
                                  bits(F.get_4bit_type(qt, device=CPU).numpy()))


@pytest.mark.parametrize("signed", [True, False])
def test_create_dynamic_map_is_bitsandbytes(signed):
    np.testing.assert_array_equal(bits(Q.create_dynamic_map(signed=signed)),
                                  bits(F.create_dynamic_map(signed=signed).numpy()))


# ----------------------------------------------------------------------------
# 4-bit
# ----------------------------------------------------------------------------

def _zero_bucket_fp4(scaled):
    """fp4 values that go to one of the two zero codes (0 and 8): (-mid, mid], mid the float32
    midpoint between 0 and the smallest code (a value on a midpoint takes the lower code)."""
    mid = np.float32(np.float32(1 / 192) / 2)
    return (scaled > -mid) & (scaled <= mid)


@pytest.mark.parametrize("qt", ["nf4", "fp4"])
@pytest.mark.parametrize("blocksize,rows,cols", [(64, 13, 100), (128, 8, 129), (256, 6, 300),
                                                 (512, 7, 512), (4096, 3, 4096), (64, 1, 7)])
def test_quantize_4bit_matches_bitsandbytes(qt, blocksize, rows, cols):
    code = Q.get_4bit_type(qt)
    x = hard_input(rows * cols, blocksize, code, seed=blocksize + cols).reshape(rows, cols)
    pb, sb = F.quantize_4bit(torch.from_numpy(x), blocksize=blocksize, quant_type=qt)
    pm, sm = Q.quantize_4bit(x, blocksize=blocksize, quant_type=qt)
    n, full = x.size, x.size // blocksize * blocksize
    assert pb.shape == (pm.size, 1) and pb.dtype == torch.uint8   # bitsandbytes: a column
    # absmax: bit for bit on full blocks (the tail's is floored at 1e-38 in bitsandbytes)
    np.testing.assert_array_equal(bits(sm.absmax[:n // blocksize]),
                                  bits(sb.absmax.numpy()[:n // blocksize]))
    if full < n and sm.absmax[-1] > 1e-38:
        assert bits(sm.absmax[-1:]) == bits(sb.absmax.numpy()[-1:])
    # codes
    cm = Q.unpack_4bit(pm, n)
    cb = Q.unpack_4bit(pb.numpy().ravel(), n)
    flat = x.ravel()
    a = np.repeat(sm.absmax, blocksize)[:n]
    with np.errstate(all="ignore"):
        recip = flat * (np.float32(1) / a)      # what both libraries scale full blocks by
        div = flat / a                          # bitsandbytes' tail: a true division
    same = np.ones(n, bool)
    same[full:] = bits(recip[full:]) == bits(div[full:])
    if qt == "fp4":
        # bitsandbytes' CPU lookup sorts +0 and -0 by argsort: exact 0 gets +0 and small
        # positive values -0 (its CUDA kernel takes the sign bit). Both decode to zero.
        zb = _zero_bucket_fp4(recip)
        assert set(np.unique(cb[zb])) <= {0, 8} and set(np.unique(cm[zb])) <= {0, 8}
        same &= ~zb
    np.testing.assert_array_equal(cm[same], cb[same])
    # decoding: bitsandbytes' dequantize (C kernel) of minigrad's codes is minigrad's, bit for bit
    st = F.QuantState(absmax=torch.from_numpy(sm.absmax), shape=torch.Size(x.shape),
                      dtype=torch.float32, blocksize=blocksize, quant_type=qt,
                      code=F.get_4bit_type(qt, device=CPU))
    db = F.dequantize_4bit(torch.from_numpy(pm.reshape(-1, 1)), st).numpy()
    np.testing.assert_array_equal(bits(db.reshape(x.shape)), bits(Q.dequantize_4bit(pm, sm)))
    # and bitsandbytes' own round trip agrees in value (up to the sign of zero)
    xb = F.dequantize_4bit(pb, sb).numpy().reshape(x.shape)
    np.testing.assert_array_equal(xb.ravel()[same], Q.dequantize_4bit(pm, sm).ravel()[same])


@pytest.mark.parametrize("qt", ["nf4", "fp4"])
def test_quantize_4bit_1d_agrees_with_bitsandbytes_pure_torch_path(qt):
    # a length not divisible by the block or by 2: bitsandbytes' CPU dequantize returns
    # (1, n) for a 1-D shape, so compare values only
    x = hard_input(64 * 9 + 37, 64, Q.get_4bit_type(qt), seed=5)
    pb, sb = F.quantize_4bit(torch.from_numpy(x), blocksize=64, quant_type=qt)
    pm, sm = Q.quantize_4bit(x, blocksize=64, quant_type=qt)
    with np.errstate(all="ignore"):                        # 0 / 0 on the zero block
        scaled = x / np.repeat(sm.absmax, 64)[:x.size]
    keep = ~_zero_bucket_fp4(scaled) if qt == "fp4" else np.ones(x.size, bool)
    keep[64 * 9:] = False                     # the tail: see test_quantize_4bit_matches_bitsandbytes
    np.testing.assert_array_equal(Q.unpack_4bit(pm, x.size)[keep],
                                  Q.unpack_4bit(pb.numpy().ravel(), x.size)[keep])
    assert F.dequantize_4bit(pb, sb).numpy().size == x.size


@pytest.mark.parametrize("qt", ["nf4", "fp4"])
def test_double_quantization_is_bitsandbytes_compress_statistics(qt):
    # 300 blocks of 64: two second-level blocks of 256 absmax values, the last partial
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((300, 64)) * rng.uniform(0.1, 3, (300, 1))).astype(np.float32)
    pb, sb = F.quantize_4bit(torch.from_numpy(x), blocksize=64, compress_statistics=True,
                             quant_type=qt)
    pm, sm = Q.quantize_4bit(x, blocksize=64, compress_statistics=True, quant_type=qt)
    assert sm.nested and sb.nested
    # the offset is the float32 mean (summed in a different order: to a few ulps)
    assert sm.offset == pytest.approx(sb.offset.item(), rel=1e-6)
    # second level: uint8 indices into the dynamic map, blocks of 256, as bitsandbytes
    assert sm.absmax.dtype == np.uint8 and sm.state2.blocksize == sb.state2.blocksize == 256
    np.testing.assert_array_equal(bits(sm.state2.code), bits(sb.state2.code.numpy()))
    first = Q.quantize_4bit(x, blocksize=64, quant_type=qt)[1].absmax
    centred = first - np.float32(sm.offset)
    qb, ab = _default_backend("quantize_blockwise", torch.from_numpy(centred),
                              F.create_dynamic_map(), 256)
    np.testing.assert_array_equal(sm.absmax, qb.numpy())
    np.testing.assert_array_equal(bits(sm.state2.absmax), bits(ab.numpy()))
    # decoding the scales: code * absmax2 + offset in float32, as bitsandbytes' dequantize_4bit
    st2 = F.QuantState(absmax=torch.from_numpy(sm.state2.absmax), code=sb.state2.code,
                       blocksize=256, dtype=torch.float32)
    scales = F.dequantize_blockwise(torch.from_numpy(sm.absmax), st2) + torch.tensor(
        np.float32(sm.offset))
    np.testing.assert_array_equal(bits(sm.scales()), bits(scales.numpy()))
    # bitsandbytes' own nested state decodes to nearly the same weights (its C kernel's
    # 8-bit search and its float32 mean differ in the last bits)
    np.testing.assert_allclose(Q.dequantize_4bit(pm, sm), F.dequantize_4bit(pb, sb).numpy(),
                               rtol=0.02, atol=0.02 * np.abs(x).max())


# ----------------------------------------------------------------------------
# 8-bit blockwise with the dynamic code book
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("blocksize,n", [(64, 64 * 40 + 17), (256, 256 * 12), (4096, 4096 * 7 + 5)])
def test_quantize_blockwise_is_bitsandbytes_pure_torch_kernel(blocksize, n):
    code = Q.create_dynamic_map()
    x = hard_input(n, blocksize, code, seed=n)
    x[-(n % blocksize or blocksize):] *= np.float32(0.5)   # the tail: no midpoints in it
    rng = np.random.default_rng(n)
    x[:blocksize * 6 // 2] *= np.exp(rng.uniform(-20, 0, blocksize * 6 // 2)).astype(np.float32)
    qb, ab = _default_backend("quantize_blockwise", torch.from_numpy(x),
                              F.create_dynamic_map(), blocksize)
    qm, sm = Q.quantize_blockwise(x, blocksize=blocksize)
    np.testing.assert_array_equal(qm, qb.numpy())
    nz = sm.absmax > 0                      # bitsandbytes floors an all-zero tail's at 1e-38
    np.testing.assert_array_equal(bits(sm.absmax[nz]), bits(ab.numpy()[nz]))


@pytest.mark.parametrize("blocksize", [64, 256, 4096])
def test_quantize_blockwise_against_bitsandbytes_cpu_kernel(blocksize):
    rng = np.random.default_rng(blocksize)
    n = 4096 * 4 + 100
    x = rng.standard_normal(n).astype(np.float32)
    qb, sb = F.quantize_blockwise(torch.from_numpy(x), blocksize=blocksize)
    qm, sm = Q.quantize_blockwise(x, blocksize=blocksize)
    np.testing.assert_array_equal(bits(sm.absmax), bits(sb.absmax.numpy()))
    # decoding minigrad's codes with bitsandbytes' C kernel gives minigrad's values, bit for bit
    st = F.QuantState(absmax=torch.from_numpy(sm.absmax), code=torch.from_numpy(sm.code.copy()),
                      blocksize=blocksize, dtype=torch.float32)
    np.testing.assert_array_equal(bits(F.dequantize_blockwise(torch.from_numpy(qm), st).numpy()),
                                  bits(Q.dequantize_blockwise(qm, sm)))
    # The C kernel's search is not exact (see the module docstring); where the codes part,
    # minigrad's is the nearer one, and the two agree on nearly every value
    qb = qb.numpy()
    code = sm.code.astype(np.float64)
    v = x.astype(np.float64) / np.repeat(sm.absmax, blocksize)[:n]
    differ = qb != qm
    assert differ.mean() < 5e-3
    assert np.all(np.abs(v - code[qm])[differ] <= np.abs(v - code[qb])[differ] + 1e-7)


def test_quantize_blockwise_nested_is_bitsandbytes_nested():
    # quantize_blockwise(nested=True): the mean removed, then the dynamic map with the *same*
    # blocksize (not 256, which is quantize_4bit's)
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((300, 64)) * rng.uniform(0.1, 3, (300, 1))).astype(np.float32)
    qb, sb = F.quantize_blockwise(torch.from_numpy(x), blocksize=64, nested=True)
    qm, sm = Q.quantize_blockwise(x, blocksize=64, compress_statistics=True)
    np.testing.assert_array_equal(qm, Q.quantize_blockwise(x, blocksize=64)[0])
    assert sm.state2.blocksize == sb.state2.blocksize == 64 and sm.absmax.dtype == np.uint8
    assert sm.offset == pytest.approx(sb.offset.item(), rel=1e-6)
    first = Q.quantize_blockwise(x, blocksize=64)[1].absmax
    q2, a2 = _default_backend("quantize_blockwise", torch.from_numpy(first - np.float32(sm.offset)),
                              F.create_dynamic_map(), 64)
    np.testing.assert_array_equal(sm.absmax, q2.numpy())
    np.testing.assert_array_equal(bits(sm.state2.absmax), bits(a2.numpy()))
    # bitsandbytes decodes minigrad's nested state to minigrad's values, bit for bit
    st2 = F.QuantState(absmax=torch.from_numpy(sm.state2.absmax), code=sb.state2.code,
                       blocksize=64, dtype=torch.float32)
    st = F.QuantState(absmax=torch.from_numpy(sm.absmax), code=sb.code, blocksize=64,
                      dtype=torch.float32, offset=torch.tensor(np.float32(sm.offset)), state2=st2)
    np.testing.assert_array_equal(bits(F.dequantize_blockwise(torch.from_numpy(qm), st).numpy()),
                                  bits(Q.dequantize_blockwise(qm, sm)))


# ----------------------------------------------------------------------------
# int8 (LLM.int8() vector-wise)
# ----------------------------------------------------------------------------

def test_int8_vectorwise_quant_matches_quantize_absmax_per_row():
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((64, 96)) * rng.uniform(0.01, 10, (64, 1))).astype(np.float32)
    x[5] = 0.0
    x[6, :] = np.float32(1.0)
    x[7, :8] = np.arange(8, dtype=np.float32) / 2 * np.float32(1 / 127) * 127   # k / 2 ties
    x[7, 8] = 127.0
    qb, stats, outliers = F.int8_vectorwise_quant(torch.from_numpy(x.copy()))
    qm, scale = Q.quantize_absmax(x, bits=8, dim=0)
    assert outliers is None
    np.testing.assert_array_equal(bits(stats.numpy()), bits(np.abs(x).max(axis=1)))
    np.testing.assert_array_equal(bits(scale.ravel()), bits(np.abs(x).max(axis=1) / np.float32(127)))
    live = np.abs(x).max(axis=1) > 0          # bitsandbytes: 0 * (127 / 0) is NaN on a zero row
    # x * (127 / amax) (bitsandbytes) and x / (amax / 127) (minigrad) may round apart at a tie
    qb = qb.numpy()
    assert np.all(np.abs(qb[live].astype(int) - qm[live]) <= 1)
    assert (qb[live] != qm[live]).mean() < 1e-3
    np.testing.assert_array_equal(qm[~live], 0)
    np.testing.assert_allclose(F.int8_vectorwise_dequant(torch.from_numpy(qm), stats).numpy(),
                               Q.dequantize_absmax(qm, scale), rtol=1e-6, atol=1e-30)


def test_int8_linear_matmul_is_int8_matmul():
    rng = np.random.default_rng(9)
    A = rng.integers(-127, 128, (17, 200)).astype(np.int8)
    B = rng.integers(-127, 128, (23, 200)).astype(np.int8)
    out = F.int8_linear_matmul(torch.from_numpy(A), torch.from_numpy(B)).numpy()
    np.testing.assert_array_equal(out, Q.int8_matmul(A, B.T))


def test_linear8bitlt_without_outliers_matches_quantlinear_int8():
    rng = np.random.default_rng(10)
    # Int8Params quantizes a float16 copy of the weight: start from float16 values
    W = rng.standard_normal((24, 48)).astype(np.float16).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    x = rng.standard_normal((5, 48)).astype(np.float16).astype(np.float32)   # cast, too
    lin = bnb.nn.Linear8bitLt(48, 24, bias=True, has_fp16_weights=False, threshold=0.0)
    lin.weight = bnb.nn.Int8Params(torch.from_numpy(W), requires_grad=False, has_fp16_weights=False)
    lin.bias = torch.nn.Parameter(torch.from_numpy(b))
    # eval(): in training mode bitsandbytes on CPU skips LLM.int8 (MatMul8bitFp: dequantize
    # the weight, float matmul, x not quantized)
    lin = lin.to(CPU).eval()
    if lin.weight.dtype != torch.int8:
        pytest.skip("bitsandbytes did not quantize Int8Params on CPU")
    with torch.no_grad():
        yb = lin(torch.from_numpy(x)).float().numpy()
    ql = Q.QuantLinear(W, b, weight_dtype="int8")
    np.testing.assert_array_equal(ql.weight_q, lin.weight.data.numpy())
    # same codes for x and W up to ties; bitsandbytes returns float16 (the dtype it cast x to)
    np.testing.assert_allclose(ql(x).data, yb, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("qt", ["nf4", "fp4"])
def test_linear4bit_matches_quantlinear(qt, compress):
    rng = np.random.default_rng(11)
    W = rng.standard_normal((32, 128)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    x = rng.standard_normal((6, 128)).astype(np.float32)
    lin = bnb.nn.Linear4bit(128, 32, bias=True, compute_dtype=torch.float32, quant_type=qt,
                            compress_statistics=compress)
    lin.weight = bnb.nn.Params4bit(torch.from_numpy(W), requires_grad=False, quant_type=qt,
                                   blocksize=64, compress_statistics=compress)
    lin.bias = torch.nn.Parameter(torch.from_numpy(b))
    lin = lin.to(CPU)
    ql = Q.QuantLinear(W, b, weight_dtype=qt, blocksize=64, compress_statistics=compress)
    Wb = F.dequantize_4bit(lin.weight.data, lin.weight.quant_state).numpy().reshape(W.shape)
    with torch.no_grad():
        yb = lin(torch.from_numpy(x)).float().numpy()
    if not compress:
        np.testing.assert_array_equal(bits(Wb), bits(ql.dequantized_weight()))
        np.testing.assert_allclose(ql(x).data, yb, rtol=1e-5, atol=1e-5)
    else:
        # the same 4-bit code values (fp4: either zero code); the scales went through
        # bitsandbytes' C 8-bit kernel
        code = Q.get_4bit_type(qt)
        np.testing.assert_array_equal(code[Q.unpack_4bit(lin.weight.data.numpy(), W.size)],
                                      code[Q.unpack_4bit(ql.weight_packed, W.size)])
        np.testing.assert_allclose(ql.dequantized_weight(), Wb, rtol=1e-2, atol=1e-3)
        np.testing.assert_allclose(ql(x).data, yb, rtol=1e-2, atol=5e-2)
