"""Philox4x32-10 counter-based RNG, bit-exact with ``pyalign/reference/philox.py``.

    key     = (seed mod 2^32, seed >> 32 mod 2^32)
    counter = (index mod 2^32, 0, offset mod 2^32, offset >> 32 mod 2^32)
    u       = (float(x0 >> 9) + 0.5) * 2^-23          (u in [2^-24, 1 - 2^-24], never 0 or 1)
    g       = -log(-log u)                              (Gumbel(0, 1), always finite)

Same round structure as ``triton.language.random.philox_impl`` (and cuRAND), written out here so the
counter layout is ours. Launch the calling kernels with ``enable_fp_fusion=False`` so that nothing that
feeds a comparison is contracted into an FMA.
"""
import triton
import triton.language as tl

# tl.constexpr instances (a plain module int is rejected by the real compiler inside @jit functions)
PHILOX_M0 = tl.constexpr(0xD2511F53)
PHILOX_M1 = tl.constexpr(0xCD9E8D57)
PHILOX_W0 = tl.constexpr(0x9E3779B9)
PHILOX_W1 = tl.constexpr(0xBB67AE85)


@triton.jit
def _split64(x):
    """int64 -> (low 32 bits, high 32 bits) as uint32 (arithmetic shift, then masked, as the reference)."""
    x = x.to(tl.int64)
    lo = (x & 0xFFFFFFFF).to(tl.uint32)
    hi = ((x >> 32) & 0xFFFFFFFF).to(tl.uint32)
    return lo, hi


@triton.jit
def philox_x0(seed, offset, index):
    """First Philox4x32-10 output word for counters (index, 0, offset_lo, offset_hi), key (seed_lo, seed_hi).

    seed, offset: int64 scalars; index: integer tensor (int32 or int64, taken mod 2^32)."""
    c0, _unused = _split64(index)
    c1 = tl.zeros_like(c0)
    o_lo, o_hi = _split64(offset)
    k0, k1 = _split64(seed)
    c2 = c1 + o_lo
    c3 = c1 + o_hi
    for _ in tl.static_range(10):
        _c0 = c0
        _c2 = c2
        c0 = tl.umulhi(_c2, PHILOX_M1) ^ c1 ^ k0
        c2 = tl.umulhi(_c0, PHILOX_M0) ^ c3 ^ k1
        c1 = _c2 * PHILOX_M1
        c3 = _c0 * PHILOX_M0
        k0 = k0 + PHILOX_W0
        k1 = k1 + PHILOX_W1
    return c0


@triton.jit
def philox_uniform(seed, offset, index):
    """u = (float(x0 >> 9) + 0.5) * 2^-23, fp32, exact."""
    x0 = philox_x0(seed, offset, index)
    return ((x0 >> 9).to(tl.int32).to(tl.float32) + 0.5) * 1.1920928955078125e-07


@triton.jit
def philox_gumbel(seed, offset, index):
    """Gumbel(0, 1) noise g = -log(-log u), fp32, finite."""
    u = philox_uniform(seed, offset, index)
    return -tl.log(-tl.log(u))
