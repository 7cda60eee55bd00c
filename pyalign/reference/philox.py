"""Counter-based random numbers shared by every backend (the PyTorch reference of the kernels' RNG).

Philox4x32-10 (Salmon et al., SC'11; the generator of cuRAND and Triton's ``tl.rand``), written with int64
tensor arithmetic so that it is exact on any device:

    (x0, x1, x2, x3) = philox4x32_10(counter=(c0, c1, c2, c3), key=(k0, k1))

pyalign draws one uniform per (row, vocabulary index) with

    key     = (seed mod 2^32, seed >> 32 mod 2^32)          # the row's 64-bit seed
    counter = (index, 0, offset mod 2^32, offset >> 32)     # index = vocabulary id (or candidate id)
    u       = (float(x0 >> 9) + 0.5) · 2^-23                 # exact in fp32, u ∈ [2^-24, 1 − 2^-24]
    g       = −log(−log u)                                   # Gumbel(0, 1), finite: g ∈ [−2.8, 16.7]

so a sample depends only on (seed, offset, index): not on block sizes, thread counts or the backend.
u can never be 0 or 1, so the Gumbel noise is always finite (vLLM once turned −∞ logits into NaN there).
"""
from __future__ import annotations

import torch

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
MASK32 = 0xFFFFFFFF


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # a < 2^32 and b < 2^32: split b into 16-bit halves so every product fits in int64 without overflow.
    b_lo = b & 0xFFFF
    b_hi = b >> 16
    lo_part = a * b_lo                      # < 2^48
    hi_part = a * b_hi                      # < 2^48
    full_lo = (lo_part & 0xFFFF) | (((lo_part >> 16) + (hi_part & MASK32)) << 16)
    lo = full_lo & MASK32
    hi = ((lo_part >> 16) + hi_part) >> 16
    return hi & MASK32, lo


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32 with 10 rounds on int64 tensors holding uint32 values; returns (x0, x1, x2, x3)."""
    c0, c1, c2, c3, k0, k1 = torch.broadcast_tensors(
        *(torch.as_tensor(x, dtype=torch.int64) & MASK32 for x in (c0, c1, c2, c3, k0, k1)))
    for _ in range(10):
        hi0, lo0 = _mulhilo(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo(PHILOX_M1, c2)
        c0, c1, c2, c3 = (hi1 ^ c1 ^ k0) & MASK32, lo1, (hi0 ^ c3 ^ k1) & MASK32, lo0
        k0 = (k0 + PHILOX_W0) & MASK32
        k1 = (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def uniform(seed: torch.Tensor, offset: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """u ∈ (0, 1) in fp32 for every (seed, offset, index) broadcast together (see the module docstring)."""
    seed = torch.as_tensor(seed, dtype=torch.int64)
    offset = torch.as_tensor(offset, dtype=torch.int64)
    index = torch.as_tensor(index, dtype=torch.int64)
    x0, _, _, _ = philox4x32_10(index, 0, offset, offset >> 32, seed, seed >> 32)
    return ((x0 >> 9).to(torch.float32) + 0.5) * (2.0 ** -23)


def gumbel(seed: torch.Tensor, offset: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise g = −log(−log u), fp32, always finite."""
    return -torch.log(-torch.log(uniform(seed, offset, index)))


def row_gumbel(rng: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Gumbel noise [B, V] for rows with rng[b] = (seed, offset), indices 0..V-1."""
    index = torch.arange(vocab_size, device=rng.device, dtype=torch.int64)
    return gumbel(rng[:, :1], rng[:, 1:2], index[None, :])
