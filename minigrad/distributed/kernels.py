"""The wire: move one message from a sender's array into a receiver's, packet by packet.

A message travels as packets. Each packet is packed into the sender's
packet buffer (an explicit copy, as a network card would read it), a
checksum is taken, the packet may be damaged on the way (fault injection
flips one bit), and the receiver verifies the checksum while it reduces the
packet into its own array. A damaged packet is reported, never summed
silently.

Why packets: a whole 8 MB message copied into a buffer and read back costs
two extra passes over memory; a packet of ``packet_elems`` elements stays in
cache between pack and receive, so the explicit copy is almost free. NCCL
slices its ring chunks the same way. For the same reason a large ring
all-reduce moves its data one segment at a time (``segment_bytes`` in
:class:`~minigrad.distributed.cluster.VirtualCluster`).

Checksum of a packet: the wrapping sum and the XOR of its machine words (the
bit patterns, so -0.0 and NaN count too). A flipped bit changes one word by
+-2**k, which changes both. Both vectorize, unlike CRC32.

Each numba kernel ``name`` has a NumPy ``name_reference`` with the same
signature, written for reading; tests check that they agree on odd sizes.
numba is imported on first use, so ``import minigrad`` stays fast.

``op``: 0 copy, 1 add, 2 max.
"""

from __future__ import annotations

import numpy as np

OP_COPY, OP_SUM, OP_MAX = 0, 1, 2
OP_CODES = {"copy": OP_COPY, "sum": OP_SUM, "max": OP_MAX}
_WORDS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
NUMBA_CHARS = "fdil"   # float32, float64, int32, int64 (and the platform's long) run in numba


def words(a: np.ndarray) -> np.ndarray:
    """The bit patterns of a contiguous 1-D array, as unsigned words of its itemsize."""
    return a.view(_WORDS[a.dtype.itemsize])


# ----------------------------------------------------------------------------
# NumPy reference (what the notebook shows)
# ----------------------------------------------------------------------------

def checksum_reference(w: np.ndarray) -> tuple:
    """(sum of the words mod 2**64, XOR of the words) of ``w``, shape (n,)."""
    return int(w.sum(dtype=np.uint64)), int(np.bitwise_xor.reduce(w.astype(np.uint64), initial=0))


def transfer_reference(src: np.ndarray, src_words: np.ndarray, dst: np.ndarray,
                       buf: np.ndarray, buf_words: np.ndarray, op: int,
                       flip_word: int, flip_mask: int) -> int:
    """dst = op(dst, src), sent through ``buf`` one packet of ``len(buf)`` elements at a time.

    Args:
        src, dst: (n,) arrays of one dtype; ``src_words = words(src)``.
        buf: (packet,) the sender's packet buffer; ``buf_words = words(buf)``.
        op: 0 copy, 1 add, 2 max.
        flip_word: index into the message (or -1): that word is XOR-ed with
            ``flip_mask`` on the wire, after the checksum was taken.
    Returns:
        -1 if every packet arrived intact, else the index of the first
        damaged packet. The receiver checks a packet in the same pass that
        reduces it, so the damaged packet is already in dst: the caller must
        abort the collective (the cluster raises ChecksumError).
    """
    packet = buf.shape[0]
    for k, lo in enumerate(range(0, src.shape[0], packet)):
        hi = min(lo + packet, src.shape[0])
        m, mw = buf[:hi - lo], buf_words[:hi - lo]
        m[:] = src[lo:hi]                                   # pack
        sent = checksum_reference(src_words[lo:hi])
        if lo <= flip_word < hi:                            # the wire flips a bit
            mw[flip_word - lo] ^= mw.dtype.type(flip_mask)
        if op == OP_COPY:                                   # the receiver reduces the packet
            dst[lo:hi] = m
        elif op == OP_SUM:
            dst[lo:hi] += m
        else:
            np.maximum(dst[lo:hi], m, out=dst[lo:hi])
        if checksum_reference(mw) != sent:                  # and checks it in the same pass
            return k
    return -1


# ----------------------------------------------------------------------------
# numba kernel (what runs)
# ----------------------------------------------------------------------------

def _transfer_loops(src, src_words, dst, buf, buf_words, op, flip_word, flip_mask):
    # compiled by numba on first use (see _jit). Two passes per packet: the sender
    # packs and checksums (reading its chunk from memory once), the receiver
    # reduces and checksums (reading the packet from cache, dst once, as any add).
    packet = buf.shape[0]
    n = src.shape[0]
    k = 0
    for lo in range(0, n, packet):
        hi = min(lo + packet, n)
        m = hi - lo
        s_part, s_words, d_part = src[lo:hi], src_words[lo:hi], dst[lo:hi]
        s = np.uint64(0)
        x = np.uint64(0)
        for i in range(m):                       # pack, and the sender's checksum
            buf[i] = s_part[i]
            w = np.uint64(s_words[i])
            s += w
            x ^= w
        if lo <= flip_word < hi:                 # the wire flips a bit
            buf_words[flip_word - lo] ^= flip_mask
        s2 = np.uint64(0)
        x2 = np.uint64(0)
        # the receiver reduces the packet and checksums it in the same pass (one loop
        # per op, so the branch stays outside the loop)
        if op == 1:
            for i in range(m):
                d_part[i] += buf[i]
                w = np.uint64(buf_words[i])
                s2 += w
                x2 ^= w
        elif op == 2:
            for i in range(m):
                a, b = d_part[i], buf[i]
                # np.maximum's rule: a NaN on either side wins (Python's max drops one)
                d_part[i] = a if (a >= b or a != a) else b
                w = np.uint64(buf_words[i])
                s2 += w
                x2 ^= w
        else:
            for i in range(m):
                d_part[i] = buf[i]
                w = np.uint64(buf_words[i])
                s2 += w
                x2 ^= w
        if s2 != s or x2 != x:
            return k
        k += 1
    return -1


# ----------------------------------------------------------------------------
# a whole segmented ring all-reduce in one call
# ----------------------------------------------------------------------------

# BEGIN KERNEL ch8.ring_reduce_scatter
def ring_segments_reference(flats, words_, seg, bufs, buf_words, op):
    """The segmented ring all-reduce's data movement, message by message.

    Each segment of ``seg`` elements (the last may be shorter) runs a whole
    ring on its own: p - 1 reduce-scatter steps (rank i sends chunk
    (i - s - 1) mod p to rank i + 1, which reduces it with ``op``), then
    p - 1 all-gather steps (rank i sends chunk (i - s) mod p, copied in).
    Every message goes through :func:`transfer_reference`: packed, checksummed,
    verified. This is what ``collectives._ring_all_reduce_`` does one Python
    call per message; :func:`ring_segments` does it in one call.

    Args:
        flats: p arrays (n,), one dtype, reduced in place; ``words_[i] = words(flats[i])``.
        seg: elements per segment (>= 1).
        bufs: (T, packet) packet buffers, one per worker; ``buf_words = words(bufs)``.
        op: 1 add or 2 max for the reduce-scatter (the all-gather copies).
    Returns:
        -1 if every packet arrived intact, else 0 (a packet failed its checksum).
    """
    from .collectives import chunk_bounds
    p, n = len(flats), flats[0].shape[0]
    for lo in range(0, n, seg):
        b = lo + chunk_bounds(min(lo + seg, n) - lo, p)
        for phase_op, shift in ((op, 1), (OP_COPY, 0)):
            for step in range(p - 1):
                for i in range(p):
                    c, j = (i - step - shift) % p, (i + 1) % p
                    part = slice(b[c], b[c + 1])
                    if transfer_reference(flats[i][part], words_[i][part], flats[j][part],
                                          bufs[0], buf_words[0], phase_op, -1, 0) >= 0:
                        return 0
    return -1


def _ring_segments_loops(flats, words_, seg, buf, buf_words, op, worker, workers):
    # compiled by numba on first use (see _jit), nogil: worker ``worker`` of ``workers``
    # runs segments worker, worker + workers, ... through its own packet buffer, each in
    # its own thread (ring_segments). Segments are independent rings, so the workers
    # never touch the same elements.
    p, n = len(flats), flats[0].shape[0]
    nseg = (n + seg - 1) // seg
    b = np.empty(p + 1, np.int64)
    for sg in range(worker, nseg, workers):
        lo = sg * seg
        m = min(lo + seg, n) - lo
        base, extra = m // p, m % p
        for c in range(p + 1):                   # lo + chunk_bounds(m, p), written out for numba
            b[c] = lo + c * base + min(c, extra)
        for phase in range(2):
            shift, phase_op = (1, op) if phase == 0 else (0, 0)
            for step in range(p - 1):
                for i in range(p):
                    c = (i - step - shift) % p
                    j = (i + 1) % p
                    lo_c, hi_c = b[c], b[c + 1]
                    if _transfer_jit(flats[i][lo_c:hi_c], words_[i][lo_c:hi_c],
                                     flats[j][lo_c:hi_c], buf, buf_words, phase_op,
                                     -1, buf_words.dtype.type(0)) >= 0:
                        return 0
    return -1
# END KERNEL


_compiled = {}
_transfer_jit = None    # the compiled transfer, a global so the ring kernel can call it


def _jit():
    global _transfer_jit
    if not _compiled:
        from ..kernels.jit import njit   # lazily: import minigrad must not pay for numba
        _transfer_jit = _compiled["transfer"] = njit(cache=True, nogil=True)(_transfer_loops)
        # BEGIN KERNEL ch8.ring_reduce_scatter
        _compiled["ring_segments"] = njit(cache=True, nogil=True)(_ring_segments_loops)
        # END KERNEL
    return _compiled


def transfer(src: np.ndarray, src_words: np.ndarray, dst: np.ndarray, buf: np.ndarray,
             buf_words: np.ndarray, op: int, flip_word: int, flip_mask: int) -> int:
    """numba twin of :func:`transfer_reference` (same arguments, same result)."""
    fn = _compiled.get("transfer") or _jit()["transfer"]
    return fn(src, src_words, dst, buf, buf_words, op, flip_word, buf_words.dtype.type(flip_mask))


# BEGIN KERNEL ch8.ring_reduce_scatter
def ring_segments(flats, words_, seg, bufs, buf_words, op) -> int:
    """numba twin of :func:`ring_segments_reference`: one thread per row of ``bufs``."""
    from numba.typed import List

    from ..threads import run_parallel
    fn = _compiled.get("ring_segments") or _jit()["ring_segments"]
    flats, words_ = List(flats), List(words_)
    workers = bufs.shape[0]
    return int(max(run_parallel([(fn, (flats, words_, seg, bufs[t], buf_words[t], op, t, workers))
                                 for t in range(workers)])))
# END KERNEL
