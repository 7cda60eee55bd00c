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

from ._common import BIG_IDX, Variant, device_guard, make_signature
from ._philox import philox_gumbel

# (KP candidate width, MP λ values per iteration, warps): a [MP, KP] tile stays <= 16 values per thread
TIERS = ((16, 8, 4), (128, 8, 4), (1024, 2, 8))
KP_TIERS = tuple(t[0] for t in TIERS)
MAX_K = KP_TIERS[-1]


def tier(k: int) -> tuple[int, int, int]:
    """(KP, MP, num_warps) for k candidates; any number M of λ values is looped over MP at a time."""
    for t in TIERS:
        if k <= t[0]:
            return t
    raise ValueError(f"k = {k} exceeds the Triton rescoring limit {MAX_K}; the backend routes it to torch")


@triton.jit(do_not_specialize=["K", "M", "V"],
            do_not_specialize_on_alignment=["b_ptr", "r_ptr", "c_ptr", "lam_ptr", "tau_ptr", "rng_ptr", "tok_ptr",
                                            "pos_ptr", "mi_ptr"])
def _rescore_candidates_kernel(b_ptr, r_ptr, c_ptr, lam_ptr, tau_ptr, rng_ptr, tok_ptr, pos_ptr, mi_ptr,
                               K, M, V, KP: tl.constexpr, MP: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    j = tl.arange(0, KP)
    jm = j < K
    b = tl.load(b_ptr + row * K + j, mask=jm, other=0.0).to(tl.float32)
    r = tl.load(r_ptr + row * K + j, mask=jm, other=0.0).to(tl.float32)
    c = tl.load(c_ptr + row * K + j, mask=jm, other=0).to(tl.int64)
    bad = tl.max(((b != b) | (b == float("inf")) | (r != r) | (r == float("inf")) | (r == float("-inf"))
                  ).to(tl.int32), axis=0)
    bad = (bad != 0) | (tl.max(tl.where(jm & (b > float("-inf")), 1, 0), axis=0) == 0)
    tau = tl.load(tau_ptr + row).to(tl.float32)
    sampled = tau > 0.0
    tau = tl.where(sampled, tau, 1.0)
    seed = tl.load(rng_ptr + 2 * row)
    offset = tl.load(rng_ptr + 2 * row + 1)
    best = tl.full([], float("-inf"), tl.float32)
    best_f = tl.full([], BIG_IDX, tl.int64)
    for m0 in range(0, M, MP):
        mm = m0 + tl.arange(0, MP)
        mmask = mm < M
        lam = tl.load(lam_ptr + row * M + mm, mask=mmask, other=0.0).to(tl.float32)
        bad = bad | (tl.max(((lam != lam) | (lam == float("inf"))).to(tl.int32), axis=0) != 0)
        lane = mmask[:, None] & jm[None, :]
        score = b[None, :] + lam[:, None] * r[None, :]
        score = tl.where(b[None, :] == float("-inf"), float("-inf"), score)
        flat = mm[:, None].to(tl.int64) * K + j[None, :]
        if sampled:
            g = philox_gumbel(seed, offset, c[None, :] + V * mm[:, None].to(tl.int64))
            key = tl.math.div_rn(score, tau) + g
        else:
            key = score
        key = tl.where(lane, key, float("-inf"))
        bk = tl.max(tl.max(key, axis=1), axis=0)
        bf = tl.min(tl.min(tl.where(lane & (key == bk), flat, BIG_IDX), axis=1), axis=0)
        upd = bk > best
        best_f = tl.where(upd, bf, best_f)
        best = tl.where(upd, bk, best)
    bad = bad | (best_f == BIG_IDX)
    f = tl.where(best_f == BIG_IDX, 0, best_f)
    pos = f % K
    tok = tl.sum(tl.where(j == pos, c, 0), axis=0)
    tl.store(tok_ptr + row, tl.where(bad, -1, tok))
    tl.store(pos_ptr + row, tl.where(bad, -1, pos.to(tl.int64)))
    tl.store(mi_ptr + row, tl.where(bad, -1, (f // K).to(tl.int64)))


def _constexprs(k: int) -> dict:
    kp, mp, _warps = tier(k)
    return dict(KP=kp, MP=mp)


def compile_variants() -> list[Variant]:
    """Every configuration ``rescore_candidates`` launches: one per KP tier (inputs are fp32/int64)."""
    out = []
    for kp in KP_TIERS:
        cx = _constexprs(kp)
        num_warps = tier(kp)[2]
        types = dict(b_ptr="*fp32", r_ptr="*fp32", c_ptr="*i64", lam_ptr="*fp32", tau_ptr="*fp32", rng_ptr="*i64",
                     tok_ptr="*i64", pos_ptr="*i64", mi_ptr="*i64", K="i32", M="i32", V="i32")
        out.append(Variant(_rescore_candidates_kernel, make_signature(_rescore_candidates_kernel, types, cx), cx,
                           dict(num_warps=num_warps, enable_fp_fusion=False)))
    return out


def rescore_candidates(base_terms: torch.Tensor, rewards: torch.Tensor, candidates: torch.Tensor,
                       lambdas: torch.Tensor, temperature: torch.Tensor, rng: torch.Tensor, vocab_size: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens, candidate position, λ index), each [B] int64; see the module docstring. k <= MAX_K."""
    B, K = base_terms.shape
    M = lambdas.shape[1]
    dev = base_terms.device
    out = [torch.empty(B, dtype=torch.int64, device=dev) for _ in range(3)]
    if B == 0:
        return tuple(out)
    if K == 0 or M == 0:
        return tuple(t.fill_(-1) for t in out)
    b = base_terms.float().contiguous()
    with device_guard(b):
        _rescore_candidates_kernel[(B,)](
            b, rewards.float().contiguous(), candidates.to(torch.int64).contiguous(), lambdas.float().contiguous(),
            temperature.float().contiguous(), rng.to(torch.int64).contiguous(), *out, K, M, int(vocab_size),
            **_constexprs(K), num_warps=tier(K)[2], enable_fp_fusion=False)
    return tuple(out)
