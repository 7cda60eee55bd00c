"""Fused guided sampling: z = zb + w*(zp - zb) (fp32, -inf where either is -inf), then per row b

    greedy (tau = 0):  token = min argmax_i z_i
    sampled:           s = z / tau;  keep = top-k / top-p sets of ``pyalign.reference.sampling``;
                       token = min argmax_{i kept} s_i + g_i,   g_i = Gumbel(seed_b, offset_b, i)  (Philox)
    logprob = log_softmax(z)[token] = z_token - max z - log sum exp(z - max z)

One launch. Grid (B, NSPLIT): for small B a row is split over NSPLIT programs; each folds its chunk into
(max, sum-exp, best key, best index, z at best, bad flag), writes it to a workspace, and the last program of
the row to finish (an acq_rel atomic counter, reset to 0 by that program) reduces the NSPLIT partials.
Unfiltered rows read the row once. Rows with top-k / top-p are handled by the row's first program alone:
it finds the keep threshold on the order-preserving integer image of s (keep i iff key(s_i) >= t) by a
multi-probe bisection (NPROBE thresholds tested per pass over the row: count(key > t) < k for top-k, then
mass(key > t) < p * Z over the top-k set for top-p), then does the same single scan with the threshold.
Rows with NaN / +inf input or no finite z give token -1 and logprob NaN.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import float_key, load_guided, online_lse
from ._philox import philox_gumbel

_MIN_KEY: tl.constexpr = -(2 ** 40)
_MAX_KEY: tl.constexpr = 2 ** 40
_BIG_IDX: tl.constexpr = 2 ** 31 - 1


@triton.jit
def _row_s(zp_row, zb_row, offs, mask, w, tau, HAS_BASE: tl.constexpr):
    z, _bad = load_guided(zp_row, zb_row, offs, mask, w, HAS_BASE)
    s = tl.math.div_rn(z, tau)
    return s, tl.where(mask, float_key(s), _MIN_KEY)


@triton.jit
def _search_threshold(zp_row, zb_row, V, w, tau, lo, hi, limit, base_thr, smax,
                      HAS_BASE: tl.constexpr, MASS: tl.constexpr, BLOCK: tl.constexpr, NPROBE: tl.constexpr):
    """Smallest key t in [lo, hi] with stat(t) < limit, stat(t) = #{key > t} (MASS=False) or
    sum_{key > t, key >= base_thr} exp(s - smax) (MASS=True); stat(hi) < limit must hold."""
    j = tl.arange(0, NPROBE).to(tl.int64)
    while lo < hi:
        step = (hi - lo + NPROBE - 1) // NPROBE
        piv = tl.minimum(lo + step * j, hi)
        if MASS:
            acc = tl.zeros([NPROBE], dtype=tl.float32)
        else:
            acc = tl.zeros([NPROBE], dtype=tl.int32)
        for start in range(0, V, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < V
            s, key = _row_s(zp_row, zb_row, offs, mask, w, tau, HAS_BASE)
            gt = key[:, None] > piv[None, :]
            if MASS:
                e = tl.where(mask & (key >= base_thr), tl.exp(s - smax), 0.0)
                acc += tl.sum(tl.where(gt, e[:, None], 0.0), axis=0)
            else:
                acc += tl.sum(gt.to(tl.int32), axis=0)
        ok = acc < limit
        jf = tl.min(tl.where(ok, j, NPROBE), axis=0)
        p_j = tl.sum(tl.where(j == jf, piv, 0), axis=0)
        p_prev = tl.sum(tl.where(j == jf - 1, piv, 0), axis=0)
        p_last = tl.sum(tl.where(j == NPROBE - 1, piv, 0), axis=0)
        new_lo = tl.where(jf == 0, lo, tl.where(jf == NPROBE, p_last + 1, p_prev + 1))
        new_hi = tl.where(jf == 0, lo, tl.where(jf == NPROBE, hi, p_j))
        lo = new_lo
        hi = new_hi
    return lo


@triton.jit
def _keep_threshold(zp_row, zb_row, V, w, tau, top_k, top_p,
                    HAS_BASE: tl.constexpr, BLOCK: tl.constexpr, NPROBE: tl.constexpr):
    """Key t such that the kept set (top-k, then top-p) is {i : key(s_i) >= t}."""
    kmin = tl.full([], _MAX_KEY, tl.int64)
    kmax = tl.full([], _MIN_KEY, tl.int64)
    smax = tl.full([], float("-inf"), tl.float32)
    for start in range(0, V, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < V
        s, key = _row_s(zp_row, zb_row, offs, mask, w, tau, HAS_BASE)
        kmin = tl.minimum(kmin, tl.min(tl.where(mask, key, _MAX_KEY), axis=0))
        kmax = tl.maximum(kmax, tl.max(key, axis=0))
        smax = tl.maximum(smax, tl.max(s, axis=0))
    t = kmin
    if top_k > 0:
        t = _search_threshold(zp_row, zb_row, V, w, tau, kmin, kmax, top_k, kmin, smax,
                              HAS_BASE, False, BLOCK, NPROBE)
    if top_p < 1.0:
        z_sum = tl.zeros([], dtype=tl.float32)
        for start in range(0, V, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < V
            s, key = _row_s(zp_row, zb_row, offs, mask, w, tau, HAS_BASE)
            z_sum += tl.sum(tl.where(mask & (key >= t), tl.exp(s - smax), 0.0), axis=0)
        t = _search_threshold(zp_row, zb_row, V, w, tau, t, kmax, top_p * z_sum, t, smax,
                              HAS_BASE, True, BLOCK, NPROBE)
    return t


@triton.jit
def _scan(zp_row, zb_row, lo_i, hi_i, w, tau, greedy, thr, seed, offset,
          HAS_BASE: tl.constexpr, BLOCK: tl.constexpr):
    """One pass over [lo_i, hi_i): online (max, sum exp) of z, NaN/+inf flag, and the best
    (key, index, z) with key = z (greedy) or s + g over kept tokens (sampled)."""
    m = tl.full([], float("-inf"), tl.float32)
    ssum = tl.zeros([], dtype=tl.float32)
    bad = tl.zeros([], dtype=tl.int32)
    best = tl.full([], float("-inf"), tl.float32)
    best_i = tl.full([], _BIG_IDX, tl.int32)
    best_z = tl.zeros([], dtype=tl.float32)
    for start in range(lo_i, hi_i, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < hi_i
        z, bad_l = load_guided(zp_row, zb_row, offs, mask, w, HAS_BASE)
        bad = tl.maximum(bad, tl.max(bad_l.to(tl.int32), axis=0))
        m, ssum = online_lse(m, ssum, z)
        if greedy:
            key = z
        else:
            s = tl.math.div_rn(z, tau)
            g = philox_gumbel(seed, offset, offs)
            key = tl.where(mask & (float_key(s) >= thr), s + g, float("-inf"))
        bk = tl.max(key, axis=0)
        bi = tl.min(tl.where(key == bk, offs, _BIG_IDX), axis=0)
        bz = tl.sum(tl.where(offs == bi, z, 0.0), axis=0)
        upd = bk > best
        best_z = tl.where(upd, bz, best_z)
        best_i = tl.where(upd, bi, best_i)
        best = tl.where(upd, bk, best)
    return m, ssum, bad, best, best_i, best_z


@triton.jit
def _finish(tok_ptr, logp_ptr, row, m, ssum, bad, best_i, best_z):
    bad = (bad != 0) | (m == float("-inf")) | (best_i == _BIG_IDX)
    tl.store(tok_ptr + row, tl.where(bad, -1, best_i.to(tl.int64)))
    tl.store(logp_ptr + row, tl.where(bad, float("nan"), best_z - m - tl.log(ssum)))


@triton.jit
def _guided_sample_kernel(zp_ptr, zb_ptr, stride_p, stride_b, w_ptr, tau_ptr, k_ptr, p_ptr, rng_ptr,
                          tok_ptr, logp_ptr, wsf_ptr, wsi_ptr, cnt_ptr, V, CHUNK, NSPLIT,
                          HAS_BASE: tl.constexpr, SPLIT: tl.constexpr, NSPLIT_P2: tl.constexpr,
                          BLOCK: tl.constexpr, NPROBE: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1)
    zp_row = zp_ptr + row * stride_p
    zb_row = zb_ptr + row * stride_b
    w = 1.0
    if HAS_BASE:
        w = tl.load(w_ptr + row).to(tl.float32)
    tau = tl.load(tau_ptr + row).to(tl.float32)
    top_k = tl.load(k_ptr + row)
    top_p = tl.load(p_ptr + row).to(tl.float32)
    seed = tl.load(rng_ptr + 2 * row)
    offset = tl.load(rng_ptr + 2 * row + 1)
    greedy = tau <= 0.0
    filt = (tau > 0.0) & ((top_k > 0) | (top_p < 1.0))
    tau = tl.where(greedy, 1.0, tau)
    lo_i = sp * CHUNK
    hi_i = tl.minimum(lo_i + CHUNK, V)
    thr = tl.full([], _MIN_KEY, tl.int64)
    if filt:
        if sp == 0:
            hi_i = lo_i * 0 + V
            thr = _keep_threshold(zp_row, zb_row, V, w, tau, top_k, top_p, HAS_BASE, BLOCK, NPROBE)
        else:
            hi_i = lo_i
    m, ssum, bad, best, best_i, best_z = _scan(zp_row, zb_row, lo_i, hi_i, w, tau, greedy, thr, seed, offset,
                                               HAS_BASE, BLOCK)
    if SPLIT:
        wf = wsf_ptr + (row * NSPLIT + sp) * 4
        wi = wsi_ptr + (row * NSPLIT + sp) * 2
        tl.store(wf, m)
        tl.store(wf + 1, ssum)
        tl.store(wf + 2, best)
        tl.store(wf + 3, best_z)
        tl.store(wi, best_i)
        tl.store(wi + 1, bad)
        tl.debug_barrier()
        done = tl.atomic_add(cnt_ptr + row, 1, sem="acq_rel")
        if done == NSPLIT - 1:
            j = tl.arange(0, NSPLIT_P2)
            jm = j < NSPLIT
            pf = wsf_ptr + (row * NSPLIT + j) * 4
            pi = wsi_ptr + (row * NSPLIT + j) * 2
            m_v = tl.load(pf, mask=jm, other=float("-inf"), cache_modifier=".cg")
            s_v = tl.load(pf + 1, mask=jm, other=0.0, cache_modifier=".cg")
            b_v = tl.load(pf + 2, mask=jm, other=float("-inf"), cache_modifier=".cg")
            z_v = tl.load(pf + 3, mask=jm, other=0.0, cache_modifier=".cg")
            i_v = tl.load(pi, mask=jm, other=_BIG_IDX, cache_modifier=".cg")
            bad_v = tl.load(pi + 1, mask=jm, other=0, cache_modifier=".cg")
            m = tl.max(m_v, axis=0)
            m_safe = tl.where(m == float("-inf"), 0.0, m)
            ssum = tl.sum(s_v * tl.exp(m_v - m_safe), axis=0)
            best = tl.max(b_v, axis=0)
            best_i = tl.min(tl.where(b_v == best, i_v, _BIG_IDX), axis=0)
            best_z = tl.sum(tl.where((b_v == best) & (i_v == best_i), z_v, 0.0), axis=0)
            bad = tl.max(bad_v, axis=0)
            _finish(tok_ptr, logp_ptr, row, m, ssum, bad, best_i, best_z)
            tl.atomic_xchg(cnt_ptr + row, 0, sem="relaxed")
    else:
        _finish(tok_ptr, logp_ptr, row, m, ssum, bad, best_i, best_z)


_COUNTERS: dict = {}


def _counters(device: torch.device, n: int) -> torch.Tensor:
    """Zeroed int32 row counters, reused across calls (each kernel leaves them at 0). One buffer per (device,
    stream): launches on one stream are serialised, so concurrent calls on different streams never share one."""
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    key = (device, stream)
    buf = _COUNTERS.get(key)
    if buf is None or buf.numel() < n:
        buf = torch.zeros(max(n, 256), dtype=torch.int32, device=device)
        _COUNTERS[key] = buf
    return buf


def _target_programs(device: torch.device) -> int:
    if device.type == "cuda":
        return 2 * torch.cuda.get_device_properties(device).multi_processor_count
    return 8


def guided_sample(logits_pref: torch.Tensor, logits_base: torch.Tensor | None, weight: torch.Tensor,
                  temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, rng: torch.Tensor,
                  *, block_size: int | None = None, n_split: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [B] int64, logprobs [B] fp32); see the module docstring. Rows may be strided views."""
    B, V = logits_pref.shape
    dev = logits_pref.device
    tokens = torch.empty(B, dtype=torch.int64, device=dev)
    logp = torch.empty(B, dtype=torch.float32, device=dev)
    if B == 0:
        return tokens, logp
    zp = logits_pref if logits_pref.stride(-1) == 1 else logits_pref.contiguous()
    has_base = logits_base is not None
    zb = (logits_base if logits_base.stride(-1) == 1 else logits_base.contiguous()) if has_base else zp
    BLOCK = block_size or min(1024, triton.next_power_of_2(V))
    n_blocks = triton.cdiv(V, BLOCK)
    nsplit = n_split or max(1, _target_programs(dev) // B)
    nsplit = max(1, min(n_blocks, nsplit))
    chunk = triton.cdiv(n_blocks, nsplit) * BLOCK
    nsplit = triton.cdiv(V, chunk)
    split = nsplit > 1
    if split:
        wsf = torch.empty((B, nsplit, 4), dtype=torch.float32, device=dev)
        wsi = torch.empty((B, nsplit, 2), dtype=torch.int32, device=dev)
        cnt = _counters(dev, B)
    else:
        wsf, wsi, cnt = logp, tokens, tokens
    _guided_sample_kernel[(B, nsplit)](
        zp, zb, zp.stride(0), zb.stride(0), weight.float().contiguous(), temperature.float().contiguous(),
        top_k.to(torch.int64).contiguous(), top_p.float().contiguous(), rng.to(torch.int64).contiguous(),
        tokens, logp, wsf, wsi, cnt, V, chunk, nsplit,
        HAS_BASE=has_base, SPLIT=split, NSPLIT_P2=triton.next_power_of_2(nsplit), BLOCK=BLOCK, NPROBE=16,
        num_warps=4, enable_fp_fusion=False)
    return tokens, logp
