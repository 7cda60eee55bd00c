"""Device helpers shared by the pyalign Triton kernels (loads, the guidance combination, float keys)."""
import triton
import triton.language as tl


@triton.jit
def load_guided(zp_ptr, zb_ptr, offs, mask, w, HAS_BASE: tl.constexpr):
    """z = zb + w*(zp - zb) in fp32 (-inf where either is -inf; -inf outside ``mask``) and a per-lane
    flag for NaN / +inf in the inputs."""
    zp = tl.load(zp_ptr + offs, mask=mask, other=float("-inf")).to(tl.float32)
    bad = (zp != zp) | (zp == float("inf"))
    if HAS_BASE:
        zb = tl.load(zb_ptr + offs, mask=mask, other=float("-inf")).to(tl.float32)
        bad = bad | (zb != zb) | (zb == float("inf"))
        z = zb + w * (zp - zb)
        z = tl.where((zp == float("-inf")) | (zb == float("-inf")), float("-inf"), z)
    else:
        z = zp
    z = tl.where(mask, z, float("-inf"))
    return z, bad & mask


@triton.jit
def float_key(x):
    """Order-preserving int64 image of an fp32 value (-0.0 and +0.0 map to the same key)."""
    x = tl.where(x == 0.0, 0.0, x)
    b = x.to(tl.int32, bitcast=True)
    return tl.where(b >= 0, b, b ^ 0x7FFFFFFF).to(tl.int64)


@triton.jit
def online_lse(m, s, z):
    """Fold a block z into the running (max m, sum s of exp(z - m)); -inf-safe."""
    m_new = tl.maximum(m, tl.max(z, axis=0))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(z - m_safe), axis=0)
    return m_new, s
