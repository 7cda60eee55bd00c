"""ARGS / PANDA rescoring of k candidates with a λ set (one program per row):

    score[m, j] = b_j + λ_m r_j  (-inf where b_j = -inf);   flat index f = m k + j
    greedy: f* = min argmax_f score;   sampled: f* = min argmax_f score/τ + g(seed, offset, c_j + V m)
    returns (c_{f* mod k}, f* mod k, f* div k); rows with NaN/±inf rewards, NaN/+inf base terms or λ,
    or no finite base term give -1 everywhere.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._philox import philox_gumbel

_BIG_IDX: tl.constexpr = 2 ** 31 - 1


@triton.jit
def _rescore_candidates_kernel(b_ptr, r_ptr, c_ptr, lam_ptr, tau_ptr, rng_ptr, tok_ptr, pos_ptr, mi_ptr,
                               K, M, V, KP: tl.constexpr, MP: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    j = tl.arange(0, KP)
    mm = tl.arange(0, MP)
    jm = j < K
    mmask = mm < M
    b = tl.load(b_ptr + row * K + j, mask=jm, other=0.0).to(tl.float32)
    r = tl.load(r_ptr + row * K + j, mask=jm, other=0.0).to(tl.float32)
    c = tl.load(c_ptr + row * K + j, mask=jm, other=0).to(tl.int64)
    lam = tl.load(lam_ptr + row * M + mm, mask=mmask, other=0.0).to(tl.float32)
    bad = tl.max(((b != b) | (b == float("inf")) | (r != r) | (r == float("inf")) | (r == float("-inf"))
                  ).to(tl.int32), axis=0)
    bad = tl.maximum(bad, tl.max(((lam != lam) | (lam == float("inf"))).to(tl.int32), axis=0))
    bad = (bad != 0) | (tl.max(tl.where(jm & (b > float("-inf")), 1, 0), axis=0) == 0)
    tau = tl.load(tau_ptr + row).to(tl.float32)
    seed = tl.load(rng_ptr + 2 * row)
    offset = tl.load(rng_ptr + 2 * row + 1)
    lane = mmask[:, None] & jm[None, :]
    score = b[None, :] + lam[:, None] * r[None, :]
    score = tl.where(b[None, :] == float("-inf"), float("-inf"), score)
    flat = mm[:, None] * K + j[None, :]
    if tau > 0.0:
        g = philox_gumbel(seed, offset, c[None, :] + V * mm[:, None].to(tl.int64))
        key = tl.math.div_rn(score, tau) + g
    else:
        key = score
    key = tl.where(lane, key, float("-inf"))
    best = tl.max(tl.max(key, axis=1), axis=0)
    f = tl.min(tl.min(tl.where(lane & (key == best), flat, _BIG_IDX), axis=1), axis=0)
    pos = f % K
    tok = tl.sum(tl.where(j == pos, c, 0), axis=0)
    tl.store(tok_ptr + row, tl.where(bad, -1, tok))
    tl.store(pos_ptr + row, tl.where(bad, -1, pos.to(tl.int64)))
    tl.store(mi_ptr + row, tl.where(bad, -1, (f // K).to(tl.int64)))


def rescore_candidates(base_terms: torch.Tensor, rewards: torch.Tensor, candidates: torch.Tensor,
                       lambdas: torch.Tensor, temperature: torch.Tensor, rng: torch.Tensor, vocab_size: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens, candidate position, λ index), each [B] int64; see the module docstring."""
    B, K = base_terms.shape
    M = lambdas.shape[1]
    dev = base_terms.device
    out = [torch.empty(B, dtype=torch.int64, device=dev) for _ in range(3)]
    if B == 0:
        return tuple(out)
    _rescore_candidates_kernel[(B,)](
        base_terms.contiguous(), rewards.contiguous(), candidates.contiguous(), lambdas.contiguous(),
        temperature.float().contiguous(), rng.to(torch.int64).contiguous(), *out, K, M, int(vocab_size),
        KP=triton.next_power_of_2(K), MP=triton.next_power_of_2(M), num_warps=4, enable_fp_fusion=False)
    return tuple(out)
