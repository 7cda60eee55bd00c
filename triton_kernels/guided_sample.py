"""Fused guided sampling: z = zb + w*(zp - zb) (fp32; fp64 logits combined in fp64 and rounded once;
-inf where either is -inf), then per row b

    greedy (tau = 0):  token = min argmax_i z_i
    sampled:           s = z / tau;  keep = top-k / top-p sets of ``pyalign.reference.sampling``;
                       token = min argmax_{i kept} s_i + g_i,   g_i = Gumbel(seed_b, offset_b, i)  (Philox)
    logprob = log_softmax(z)[token] = z_token - max z - log sum exp(z - max z)

One launch, grid (B, NSPLIT). For small B a row is split over NSPLIT programs; each folds its chunk into
partials (max, sum-exp of z; best key, index, z at best; max and sum-exp of s; bad flag) in a per-call
workspace (``torch.zeros``: a memset, so every call and every CUDA-graph replay starts from zeroed
counters), and the last program of the row to finish (an acq_rel atomic counter) reduces them. In split
mode program 0 of each row first writes token -1 / logprob NaN, so an unfinished reduction never leaves
garbage. Rows with NaN / +inf input or no finite z give token -1 and logprob NaN.

Rows with top-k (0 < min(k, V) <= K', K' in KP_TIERS: 1024 on a GPU, where reading k would synchronise the
host; on the CPU the smallest tier >= min(max k, V) of the batch) take the top-k candidate stage: every program also
keeps the K' largest (key(s), index) of its chunk (int64-packed, bitonic merges of K'-wide pieces, only
for blocks whose max beats the list's end) and stores them in a per-call workspace; the row's last program
merges the NSPLIT lists, reads the exact k-th value t (ties kept), then the nucleus over the sorted top-k
candidates (cumulative masses, a prefix: ties kept), then the Gumbel-max with the same Philox noise over
the kept candidates. It is exact whenever t lies strictly above every value left out of the lists (a
truncated chunk's last entry, the merge's last entry); otherwise (ties at the end of a truncated list) the
row takes the rejection path below. Float64 model (tests/test_triton_backend.py::_topk_stage_falls_back):
top-k 50 (+ top-p 0.9) never falls back on Zipf or flat rows (0 / 100 rows, V = 32000, 1 and 16 chunks);
only integer-tied rows do. ``path_out`` records each row's path (PATH_TOPK / PATH_REJECT / PATH_NONE).

Other filtered rows (top-p alone, k > 1024), by rejection against the unfiltered Gumbel-max winner, exact:
the kept set K is an upper set of s (keep i iff key(s_i) >= t), so if the winner c over *all* tokens lies
in K it is also the winner over K. The first pass (all programs) already gives c, Z and each chunk's max s;
the reducer then tests c with one pass that counts n = #{key > key_c} and the masses
M_> = sum_{key > key_c} e_j, M_>= = sum_{key >= key_c} e_j (e_j = exp(s_j - max s)). That pass reads only
the chunks whose max s reaches s_c, and in them only blocks whose max does: for a peaked (language-model)
row that is a few blocks, so the filtered sample costs about one unfiltered pass at small B (many
programs per row) and about two at large B (one program per row reads its row twice).

    top-k only:      c in K  iff  n < k
    top-p only:      c in K  iff  M_> < p Z                   (Z = sum_j e_j, from the first pass)
    top-k and top-p: c in K  if   n < k and M_> < p M_>=      (Z_k >= M_>=),
                     c not in K if n >= k or M_> >= p Z        (Z_k <= Z); otherwise undecided.

A rejected c means K lies strictly above key_c: the same pass also gives the next candidate
argmax_{key > key_c} s + g, tested in the next round (at most NROUNDS). Undecided rows fall back to the
exact threshold search (a multi-probe bisection on the integer key, NPROBE thresholds per pass, ~10-20
passes), then one scan of the kept set.
How often each path is taken (float64 model of this logic, tests/test_triton_backend.py::_rejection_path,
400 rows of V = 32000, NROUNDS = 3): top-p 0.9 alone is decided in round 0 for ~91 % of rows and in
rounds 1-2 for the rest (no fallback in the sample: without top-k every test is conclusive), on peaked,
N(0, 4²) and flat rows alike. Top-k is slow to converge when the winner ranks far below k: top-k 50 alone
falls back for 0.2 % (N(0, 4²)), 2 % (Zipf 1.1) and 69 % (flat N(0, 1)) of rows; top-k 50 + top-p 0.9
for ~45-50 % (the top-p bound with an unknown top-k mass is often inconclusive) and 94 % on flat rows.
Those rows cost what the old one-program bisection cost; an exact top-k stage (per-chunk top-k lists
merged by the reducer) would remove that path and is the next step.
Masses are compared unnormalised (M_> < p Z rather than the reference's cumulative softmax < p), so a row
whose nucleus boundary sits within rounding of p may differ from the reference; exact ties are exact.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (BIG_IDX, LOGIT_DTYPES, MAX_KEY, MIN_KEY, PTR_TYPE, Variant, device_guard, float_key,
                      load_guided_f32, make_signature, online_lse, row_view)
from ._philox import philox_gumbel

BLOCK = 1024        # first pass: elements per iteration
VBLOCK = 1024       # rejection test pass (run by one program per row)
FBLOCK = 128        # exact fallback bisection ([FBLOCK, NPROBE] tiles)
NPROBE = 16
NROUNDS = 3
RBLOCK = 64         # partials reduced per iteration by the last program of a row
NUM_WARPS = 8         # 4 elements per thread per block: no spills (4 warps spill ~100 B on sm_90)
MAXSPLIT = 512      # most programs per row (the rejection pass keeps one max per chunk in registers)
NW = 8              # workspace words per (row, split): m, ssum, best, best_z, ms, ss (fp32), best_i, bad (i32)
KP_TIERS = (64, 1024)   # candidate list widths K' of the top-k stage (a power of two >= min(k, V))
EMPTY = tl.constexpr(-(2 ** 63) + 1)   # an unused candidate lane: below every packed (key, index)
PATH_NONE, PATH_TOPK, PATH_REJECT = 0, 1, 2     # path recorder values (``path_out``): see _decide


@triton.jit
def _row_s(zp_row, zb_row, offs, mask, w, tau, HAS_BASE: tl.constexpr, F64: tl.constexpr):
    z, _bad = load_guided_f32(zp_row, zb_row, offs, mask, w, HAS_BASE, F64)
    s = tl.math.div_rn(z, tau)
    return s, tl.where(mask, float_key(s), MIN_KEY)


@triton.jit
def _search_threshold(zp_row, zb_row, V, w, tau, lo, hi, limit, base_thr, smax, mass,
                      HAS_BASE: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr, NPROBE: tl.constexpr):
    """Smallest key t in [lo, hi] with stat(t) < limit, stat(t) = sum_{key > t, key >= base_thr} e,
    e = exp(s - smax) if ``mass`` else 1 (a count, exact in fp32 below 2^24 tokens); stat(hi) < limit."""
    j = tl.arange(0, NPROBE).to(tl.int64)
    while lo < hi:
        step = (hi - lo + NPROBE - 1) // NPROBE
        piv = tl.minimum(lo + step * j, hi)
        acc = tl.zeros([NPROBE], dtype=tl.float32)
        for start in range(0, V, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < V
            s, key = _row_s(zp_row, zb_row, offs, mask, w, tau, HAS_BASE, F64)
            e = tl.where(mass, tl.exp(s - smax), 1.0)
            e = tl.where(mask & (key >= base_thr), e, 0.0)
            acc += tl.sum(tl.where(key[:, None] > piv[None, :], e[:, None], 0.0), axis=0)
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
                    HAS_BASE: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr, NPROBE: tl.constexpr):
    """Key t such that the kept set (top-k, then top-p) is {i : key(s_i) >= t} (exact; the fallback):
    phase 0 searches the top-k threshold by counts, phase 1 the top-p threshold by masses over it."""
    kmin = tl.full([], MAX_KEY, tl.int64)
    kmax = tl.full([], MIN_KEY, tl.int64)
    smax = tl.full([], float("-inf"), tl.float32)
    for start in range(0, V, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < V
        s, key = _row_s(zp_row, zb_row, offs, mask, w, tau, HAS_BASE, F64)
        kmin = tl.minimum(kmin, tl.min(tl.where(mask, key, MAX_KEY), axis=0))
        kmax = tl.maximum(kmax, tl.max(key, axis=0))
        smax = tl.maximum(smax, tl.max(s, axis=0))
    t = kmin
    for phase in range(2):
        mass = phase == 1
        active = tl.where(mass, top_p < 1.0, top_k > 0)
        if active:
            limit = top_k.to(tl.float32)
            if mass:
                z_sum = tl.zeros([], dtype=tl.float32)
                for start in range(0, V, BLOCK):
                    offs = start + tl.arange(0, BLOCK)
                    mask = offs < V
                    s, key = _row_s(zp_row, zb_row, offs, mask, w, tau, HAS_BASE, F64)
                    z_sum += tl.sum(tl.where(mask & (key >= t), tl.exp(s - smax), 0.0), axis=0)
                limit = top_p * z_sum
            t = _search_threshold(zp_row, zb_row, V, w, tau, t, kmax, limit, t, smax, mass,
                                  HAS_BASE, F64, BLOCK, NPROBE)
    return t


@triton.jit
def _scan(zp_row, zb_row, lo_i, hi_i, w, tau, greedy, filt, seed, offset,
          HAS_BASE: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr):
    """First pass over [lo_i, hi_i): online (max, sum exp) of z, NaN/+inf flag, the best (key, index, z)
    with key = z (greedy) or s + g over every token (sampled), and, for filtered rows, online (max, sum exp)
    of s."""
    m = tl.full([], float("-inf"), tl.float32)
    ssum = tl.zeros([], dtype=tl.float32)
    ms = tl.full([], float("-inf"), tl.float32)
    ss = tl.zeros([], dtype=tl.float32)
    bad = tl.zeros([], dtype=tl.int32)
    best = tl.full([], float("-inf"), tl.float32)
    best_i = tl.full([], BIG_IDX, tl.int32)
    best_z = tl.zeros([], dtype=tl.float32)
    for start in range(lo_i, hi_i, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < hi_i
        z, bad_l = load_guided_f32(zp_row, zb_row, offs, mask, w, HAS_BASE, F64)
        bad = tl.maximum(bad, tl.max(bad_l.to(tl.int32), axis=0))
        m, ssum = online_lse(m, ssum, z)
        if greedy:
            key = z
        else:
            s = tl.math.div_rn(z, tau)
            key = tl.where(mask, s + philox_gumbel(seed, offset, offs), float("-inf"))
            if filt:
                ms, ss = online_lse(ms, ss, s)
        bk = tl.max(key, axis=0)
        bi = tl.min(tl.where(key == bk, offs, BIG_IDX), axis=0)
        bz = tl.sum(tl.where(offs == bi, z, 0.0), axis=0)
        upd = bk > best
        best_z = tl.where(upd, bz, best_z)
        best_i = tl.where(upd, bi, best_i)
        best = tl.where(upd, bk, best)
    return m, ssum, bad, best, best_i, best_z, ms, ss


@triton.jit
def _above(zp_row, zb_row, V, w, tau, seed, offset, ck, ms, chunk_key, CHUNK, NSPLIT,
           HAS_BASE: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr, MAXSPLIT: tl.constexpr):
    """One pass: n = #{key > ck}, M_> and M_>= (masses exp(s - ms) above / at-or-above ck), and the next
    candidate argmax_{key > ck} s + g (index, z). Only chunks whose largest key (``chunk_key``, from the
    first pass) reaches ck are read, and in them only blocks whose largest key does."""
    n = tl.zeros([], dtype=tl.int32)
    m_gt = tl.zeros([], dtype=tl.float32)
    m_ge = tl.zeros([], dtype=tl.float32)
    nb = tl.full([], float("-inf"), tl.float32)
    ni = tl.full([], BIG_IDX, tl.int32)
    nz = tl.zeros([], dtype=tl.float32)
    jc = tl.arange(0, MAXSPLIT)
    visit = chunk_key >= ck
    cur = tl.min(tl.where(visit, jc, MAXSPLIT), axis=0)
    while cur < NSPLIT:
        lo = cur * CHUNK
        hi = tl.minimum(lo + CHUNK, V)
        for start in range(lo, hi, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < hi
            z, _bad = load_guided_f32(zp_row, zb_row, offs, mask, w, HAS_BASE, F64)
            s = tl.math.div_rn(z, tau)
            key = tl.where(mask, float_key(s), MIN_KEY)
            if tl.max(key, axis=0) >= ck:
                gt = key > ck
                e = tl.exp(s - ms)
                n += tl.sum(gt.to(tl.int32), axis=0)
                m_gt += tl.sum(tl.where(gt, e, 0.0), axis=0)
                m_ge += tl.sum(tl.where(key >= ck, e, 0.0), axis=0)
                nk = tl.where(gt, s + philox_gumbel(seed, offset, offs), float("-inf"))
                bk = tl.max(nk, axis=0)
                bi = tl.min(tl.where(nk == bk, offs, BIG_IDX), axis=0)
                bz = tl.sum(tl.where(offs == bi, z, 0.0), axis=0)
                upd = bk > nb
                nz = tl.where(upd, bz, nz)
                ni = tl.where(upd, bi, ni)
                nb = tl.where(upd, bk, nb)
        cur = tl.min(tl.where(visit & (jc > cur), jc, MAXSPLIT), axis=0)
    return n, m_gt, m_ge, ni, nz


@triton.jit
def _filtered_pick(zp_row, zb_row, V, w, tau, top_k, top_p, seed, offset, cand, cand_z, ms, z_all,
                   ms_ptr, CHUNK, NSPLIT,
                   HAS_BASE: tl.constexpr, F64: tl.constexpr, VBLOCK: tl.constexpr, FBLOCK: tl.constexpr,
                   NPROBE: tl.constexpr, NROUNDS: tl.constexpr, MAXSPLIT: tl.constexpr, NW: tl.constexpr):
    """Token of a filtered row from the unfiltered winner ``cand`` (see the module docstring): (index, z).
    ms_ptr: the row's per-chunk max s in the workspace (stride NW), read when NSPLIT > 1."""
    jc = tl.arange(0, MAXSPLIT)
    n_stored = tl.where(NSPLIT > 1, NSPLIT, 0)          # no workspace without a split
    cm = tl.load(ms_ptr + jc * NW, mask=jc < n_stored, other=float("-inf"), cache_modifier=".cg")
    cm = tl.where((jc == 0) & (n_stored == 0), ms, cm)
    chunk_key = tl.where(cm == float("-inf"), MIN_KEY, float_key(cm))
    state = tl.zeros([], dtype=tl.int32)           # 0: testing, 1: done, 2: undecided
    ck = float_key(tl.math.div_rn(cand_z, tau))
    for r in range(NROUNDS + 1):
        if state != 1:
            final = (state == 2) | (r == NROUNDS)
            if final:                               # exact threshold t; then argmax over key > t - 1
                ck = _keep_threshold(zp_row, zb_row, V, w, tau, top_k, top_p, HAS_BASE, F64, FBLOCK, NPROBE) - 1
            n, m_gt, m_ge, ni, nz = _above(zp_row, zb_row, V, w, tau, seed, offset, ck, ms, chunk_key, CHUNK,
                                           NSPLIT, HAS_BASE, F64, VBLOCK, MAXSPLIT)
            in_k = (top_k <= 0) | (n < top_k)
            out_k = (top_k > 0) & (n >= top_k)
            p_lo = m_gt < top_p * tl.where(top_k > 0, m_ge, z_all)
            p_hi = m_gt >= top_p * z_all
            acc = tl.where(final, False, in_k & ((top_p >= 1.0) | p_lo))
            rej = out_k | ((top_p < 1.0) & p_hi) | final
            move = tl.where(acc, False, rej & (ni != BIG_IDX))
            state = tl.where(acc | final, 1, tl.where(move, 0, 2))
            cand = tl.where(move, ni, cand)
            cand_z = tl.where(move, nz, cand_z)
            ck = tl.where(move, float_key(tl.math.div_rn(nz, tau)), ck)
    return cand, cand_z


@triton.jit
def _pack(key, idx):
    """(key, index) -> one int64 ordered by key, then index (key >> 32 and & 0xFFFFFFFF invert it; every
    float_key is > -2^31 + 2^23, so every packed value is above EMPTY)."""
    return (key << 32) | idx.to(tl.int64)


@triton.jit
def _chunk_topk(zp_row, zb_row, lo_i, hi_i, w, tau,
                HAS_BASE: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr, KP: tl.constexpr):
    """The KP largest packed (key(s), index) of [lo_i, hi_i), descending; -1 in unused lanes. A block is
    re-read in KP-wide pieces only when its largest entry beats the list's smallest (a bitonic merge:
    max(list descending, piece ascending) holds the KP largest of both, then one sort)."""
    r = tl.arange(0, KP)
    lst = tl.full([KP], EMPTY, tl.int64)
    thr = tl.full([], EMPTY, tl.int64)
    for start in range(lo_i, hi_i, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < hi_i
        _s, key = _row_s(zp_row, zb_row, offs, mask, w, tau, HAS_BASE, F64)
        pk = tl.where(mask, _pack(key, offs), EMPTY)
        if tl.max(pk, axis=0) > thr:
            blk_end = tl.minimum(start + BLOCK, hi_i)
            for sub in range(start, blk_end, KP):
                o2 = sub + r
                m2 = o2 < blk_end
                _s2, key2 = _row_s(zp_row, zb_row, o2, m2, w, tau, HAS_BASE, F64)
                pk2 = tl.where(m2, _pack(key2, o2), EMPTY)
                if tl.max(pk2, axis=0) > thr:
                    lst = tl.sort(tl.maximum(lst, tl.sort(pk2)), descending=True)
                    thr = tl.min(lst, axis=0)
    return lst


@triton.jit
def _candidate_pick(cand, bound, zp_row, zb_row, V, w, tau, top_k, top_p, seed, offset,
                    HAS_BASE: tl.constexpr, F64: tl.constexpr, KP: tl.constexpr):
    """Exact filtered token from the merged candidates ``cand`` (KP packed (key, index), descending, EMPTY in
    unused lanes); ``bound``: a key >= that of every token left out of ``cand`` (MIN_KEY if none).
    Returns (ok, index, z): ok is False when the k-th value t does not lie strictly above ``bound`` (tied
    tokens at t may be missing; the caller falls back)."""
    r = tl.arange(0, KP)
    valid = cand > EMPTY
    key = tl.where(valid, cand >> 32, MIN_KEY)
    idx = tl.where(valid, cand & 0xFFFFFFFF, 0)
    kk = tl.minimum(top_k, V)
    t_sel = tl.sum(tl.where(r == kk - 1, key, 0), axis=0)
    t_ok = tl.sum(tl.where((r == kk - 1) & valid, 1, 0), axis=0) > 0
    t = tl.where(t_ok, t_sel, MIN_KEY)                 # fewer candidates than k: every candidate
    ok = t > bound
    z, _bad = load_guided_f32(zp_row, zb_row, idx, valid, w, HAS_BASE, F64)
    s = tl.math.div_rn(z, tau)
    kept = valid & (key >= t)
    smax = tl.max(tl.where(kept, s, float("-inf")), axis=0)
    e = tl.where(kept, tl.exp(s - smax), 0.0)
    if top_p < 1.0:                                   # nucleus over the top-k set, sorted: a prefix
        zk = tl.sum(e, axis=0)
        excl = tl.cumsum(e, 0) - e                    # mass of the candidates before this one
        t_p = tl.min(tl.where(kept & (excl < top_p * zk), key, MAX_KEY), axis=0)
        kept = kept & (key >= t_p)
    g = tl.where(kept, s + philox_gumbel(seed, offset, idx), float("-inf"))
    bk = tl.max(g, axis=0)
    bi = tl.min(tl.where(kept & (g == bk), idx, BIG_IDX), axis=0)
    bz = tl.sum(tl.where(kept & (idx == bi), z, 0.0), axis=0)
    return ok, bi.to(tl.int32), bz


@triton.jit
def _decide(tok_ptr, logp_ptr, path_ptr, row, zp_row, zb_row, V, w, tau, top_k, top_p, seed, offset, filt,
            use_c, cand, bound, m, ssum, bad, best_i, best_z, ms, ss, ms_ptr, CHUNK, NSPLIT,
            HAS_BASE: tl.constexpr, F64: tl.constexpr, VBLOCK: tl.constexpr, FBLOCK: tl.constexpr,
            NPROBE: tl.constexpr, NROUNDS: tl.constexpr, MAXSPLIT: tl.constexpr, NW: tl.constexpr,
            KP: tl.constexpr):
    """Writes the row's token / logprob and its path (PATH_NONE: greedy, unfiltered or bad row; PATH_TOPK:
    the top-k candidate stage; PATH_REJECT: the rejection test / exact fallback)."""
    bad_row = (bad != 0) | (m == float("-inf")) | (best_i == BIG_IDX)
    path = tl.zeros([], dtype=tl.int32)
    good = (bad == 0) & (m > float("-inf")) & (best_i != BIG_IDX)
    done = tl.zeros([], dtype=tl.int32)
    if filt & use_c & good:
        c_ok, c_i, c_z = _candidate_pick(cand, bound, zp_row, zb_row, V, w, tau, top_k, top_p, seed, offset,
                                         HAS_BASE, F64, KP)
        done = c_ok.to(tl.int32)
        best_i = tl.where(c_ok, c_i, best_i)
        best_z = tl.where(c_ok, c_z, best_z)
        path = tl.where(c_ok, 1, path)
    if filt & good & (done == 0):
        path = tl.full([], 2, tl.int32)
        best_i, best_z = _filtered_pick(zp_row, zb_row, V, w, tau, top_k, top_p, seed, offset, best_i, best_z,
                                        ms, ss, ms_ptr, CHUNK, NSPLIT, HAS_BASE, F64, VBLOCK, FBLOCK, NPROBE,
                                        NROUNDS, MAXSPLIT, NW)
    tl.store(path_ptr + row, path)
    tl.store(tok_ptr + row, tl.where(bad_row, -1, best_i.to(tl.int64)))
    tl.store(logp_ptr + row, tl.where(bad_row, float("nan"), best_z - m - tl.log(ssum)))


@triton.jit(do_not_specialize=["stride_p", "stride_b", "V", "CHUNK", "NSPLIT"],
            do_not_specialize_on_alignment=["w_ptr", "tau_ptr", "k_ptr", "p_ptr", "rng_ptr", "tok_ptr", "logp_ptr",
                                            "wsf_ptr", "wsi_ptr", "cnt_ptr", "wsc_ptr", "path_ptr"])
def _guided_sample_kernel(zp_ptr, zb_ptr, stride_p, stride_b, w_ptr, tau_ptr, k_ptr, p_ptr, rng_ptr,
                          tok_ptr, logp_ptr, wsf_ptr, wsi_ptr, cnt_ptr, wsc_ptr, path_ptr, V, CHUNK, NSPLIT,
                          HAS_BASE: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr,
                          VBLOCK: tl.constexpr, FBLOCK: tl.constexpr, NPROBE: tl.constexpr,
                          NROUNDS: tl.constexpr, RBLOCK: tl.constexpr, NW: tl.constexpr, MAXSPLIT: tl.constexpr,
                          KP: tl.constexpr, CBLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1)
    zp_row = zp_ptr + row * stride_p
    zb_row = zb_ptr + row * stride_b
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
    split = NSPLIT > 1
    if split:
        if sp == 0:
            tl.store(tok_ptr + row, -1)
            tl.store(logp_ptr + row, float("nan"))
    m, ssum, bad, best, best_i, best_z, ms, ss = _scan(zp_row, zb_row, lo_i, hi_i, w, tau, greedy, filt, seed,
                                                       offset, HAS_BASE, F64, BLOCK)
    # top-k candidate stage (rows with 0 < min(k, V) <= KP): this chunk's KP largest (key, index)
    use_c = filt & (top_k > 0) & (tl.minimum(top_k, V) <= KP)
    rk = tl.arange(0, KP)
    cand = tl.full([KP], EMPTY, tl.int64)
    bound = tl.full([], MIN_KEY, tl.int64)
    if use_c:
        cand = _chunk_topk(zp_row, zb_row, lo_i, hi_i, w, tau, HAS_BASE, F64, CBLOCK, KP)
        if hi_i - lo_i > KP:                        # the chunk was truncated
            bound = tl.min(cand, axis=0) >> 32
    last = sp >= 0                                  # a runtime i1 (True)
    if split:
        if use_c:
            tl.store(wsc_ptr + (row * NSPLIT + sp) * KP + rk, cand)
        wf = wsf_ptr + (row * NSPLIT + sp) * NW
        wi = wsi_ptr + (row * NSPLIT + sp) * NW
        tl.store(wf, m)
        tl.store(wf + 1, ssum)
        tl.store(wf + 2, best)
        tl.store(wf + 3, best_z)
        tl.store(wf + 4, ms)
        tl.store(wf + 5, ss)
        tl.store(wi + 6, best_i)
        tl.store(wi + 7, bad)
        tl.debug_barrier()
        done = tl.atomic_add(cnt_ptr + row, 1, sem="acq_rel")
        last = done == NSPLIT - 1
        if last:
            m = tl.full([], float("-inf"), tl.float32)
            ssum = tl.zeros([], dtype=tl.float32)
            ms = tl.full([], float("-inf"), tl.float32)
            ss = tl.zeros([], dtype=tl.float32)
            bad = tl.zeros([], dtype=tl.int32)
            best = tl.full([], float("-inf"), tl.float32)
            best_i = tl.full([], BIG_IDX, tl.int32)
            best_z = tl.zeros([], dtype=tl.float32)
            for j0 in range(0, NSPLIT, RBLOCK):
                j = j0 + tl.arange(0, RBLOCK)
                jm = j < NSPLIT
                pf = wsf_ptr + (row * NSPLIT + j) * NW
                pi = wsi_ptr + (row * NSPLIT + j) * NW
                m_v = tl.load(pf, mask=jm, other=float("-inf"), cache_modifier=".cg")
                s_v = tl.load(pf + 1, mask=jm, other=0.0, cache_modifier=".cg")
                b_v = tl.load(pf + 2, mask=jm, other=float("-inf"), cache_modifier=".cg")
                z_v = tl.load(pf + 3, mask=jm, other=0.0, cache_modifier=".cg")
                ms_v = tl.load(pf + 4, mask=jm, other=float("-inf"), cache_modifier=".cg")
                ss_v = tl.load(pf + 5, mask=jm, other=0.0, cache_modifier=".cg")
                i_v = tl.load(pi + 6, mask=jm, other=BIG_IDX, cache_modifier=".cg")
                bad_v = tl.load(pi + 7, mask=jm, other=0, cache_modifier=".cg")
                m_n = tl.maximum(m, tl.max(m_v, axis=0))
                m_safe = tl.where(m_n == float("-inf"), 0.0, m_n)
                ssum = ssum * tl.exp(m - m_safe) + tl.sum(s_v * tl.exp(m_v - m_safe), axis=0)
                m = m_n
                ms_n = tl.maximum(ms, tl.max(ms_v, axis=0))
                ms_safe = tl.where(ms_n == float("-inf"), 0.0, ms_n)
                ss = ss * tl.exp(ms - ms_safe) + tl.sum(ss_v * tl.exp(ms_v - ms_safe), axis=0)
                ms = ms_n
                bk = tl.max(b_v, axis=0)
                bi = tl.min(tl.where(b_v == bk, i_v, BIG_IDX), axis=0)
                bz = tl.sum(tl.where((b_v == bk) & (i_v == bi), z_v, 0.0), axis=0)
                upd = (bk > best) | ((bk == best) & (bi < best_i))
                best_z = tl.where(upd, bz, best_z)
                best_i = tl.where(upd, bi, best_i)
                best = tl.where(upd, bk, best)
                bad = tl.maximum(bad, tl.max(bad_v, axis=0))
            if use_c:                               # merge the NSPLIT candidate lists (bitonic, as above)
                cand = tl.full([KP], EMPTY, tl.int64)
                bound = tl.full([], MIN_KEY, tl.int64)
                n_all = tl.zeros([], dtype=tl.int32)
                for j in range(0, NSPLIT):
                    lj = tl.load(wsc_ptr + (row * NSPLIT + j) * KP + (KP - 1 - rk), cache_modifier=".cg")
                    n_all += tl.sum((lj > EMPTY).to(tl.int32), axis=0)
                    if tl.minimum(CHUNK, V - j * CHUNK) > KP:
                        bound = tl.maximum(bound, tl.min(lj, axis=0) >> 32)
                    cand = tl.sort(tl.maximum(cand, lj), descending=True)
                if n_all > KP:                      # the merge dropped candidates too
                    bound = tl.maximum(bound, tl.min(cand, axis=0) >> 32)
    if last:
        _decide(tok_ptr, logp_ptr, path_ptr, row, zp_row, zb_row, V, w, tau, top_k, top_p, seed, offset, filt,
                use_c, cand, bound, m, ssum, bad, best_i, best_z, ms, ss, wsf_ptr + row * NSPLIT * NW + 4, CHUNK,
                NSPLIT, HAS_BASE, F64, VBLOCK, FBLOCK, NPROBE, NROUNDS, MAXSPLIT, NW, KP)


def _constexprs(dtype: torch.dtype, has_base: bool, block: int | None = None, kp: int = KP_TIERS[0]) -> dict:
    """The constexprs of one launch: the dtype (F64), the base and the candidate width KP."""
    return dict(HAS_BASE=has_base, F64=dtype == torch.float64, BLOCK=block or BLOCK,
                VBLOCK=block or VBLOCK, FBLOCK=block or FBLOCK, NPROBE=NPROBE, NROUNDS=NROUNDS, RBLOCK=RBLOCK, NW=NW,
                MAXSPLIT=MAXSPLIT, KP=kp, CBLOCK=max(block or BLOCK, kp))


def kp_tier(top_k: torch.Tensor, V: int) -> int:
    """Candidate width for this batch: on a GPU the largest tier (reading k there would be a host synchronisation
    per call, which the decode loops and CUDA-graph capture must not pay); on the CPU (the interpreter) the
    smallest tier >= min(max k, V). Rows above the largest tier take the rejection path."""
    if top_k.device.type != "cpu":
        return KP_TIERS[-1]
    kk = min(int(top_k.max()), V) if top_k.numel() else 0
    for t in KP_TIERS:
        if kk <= t:
            return t
    return KP_TIERS[-1]


def compile_variants() -> list[Variant]:
    """Every configuration ``guided_sample`` launches: dtype x base context x candidate width KP (split /
    unsplit, greedy, sampled, top-k stage and rejection paths are runtime branches of the same kernel)."""
    out = []
    for dt in LOGIT_DTYPES:
        for has_base in (False, True):
            for kp in KP_TIERS:
                cx = _constexprs(dt, has_base, kp=kp)
                types = dict(zp_ptr=PTR_TYPE[dt], zb_ptr=PTR_TYPE[dt], stride_p="i32", stride_b="i32",
                             w_ptr="*fp32", tau_ptr="*fp32", k_ptr="*i64", p_ptr="*fp32", rng_ptr="*i64",
                             tok_ptr="*i64", logp_ptr="*fp32", wsf_ptr="*fp32", wsi_ptr="*i32", cnt_ptr="*i32",
                             wsc_ptr="*i64", path_ptr="*i32", V="i32", CHUNK="i32", NSPLIT="i32")
                out.append(Variant(_guided_sample_kernel, make_signature(_guided_sample_kernel, types, cx), cx,
                                   dict(num_warps=NUM_WARPS, enable_fp_fusion=False)))
    return out


def _target_programs(device: torch.device) -> int:
    if device.type == "cuda":
        return 2 * torch.cuda.get_device_properties(device).multi_processor_count
    return 8


def split_plan(B: int, V: int, device: torch.device, block: int = BLOCK, n_split: int | None = None
               ) -> tuple[int, int]:
    """(programs per row, elements per program): enough programs to fill the device for small B."""
    n_blocks = triton.cdiv(V, block)
    nsplit = n_split or max(1, _target_programs(device) // max(B, 1))
    nsplit = max(1, min(n_blocks, nsplit, MAXSPLIT))
    chunk = triton.cdiv(n_blocks, nsplit) * block
    return triton.cdiv(V, chunk), chunk


def guided_sample(logits_pref: torch.Tensor, logits_base: torch.Tensor | None, weight: torch.Tensor,
                  temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, rng: torch.Tensor,
                  *, block_size: int | None = None, n_split: int | None = None,
                  path_out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [B] int64, logprobs [B] fp32); see the module docstring. Rows may be strided views.
    ``block_size`` (a power of two, every block constexpr) and ``n_split`` are test hooks; ``path_out``
    (int32 [B], optional) receives each row's path (PATH_NONE / PATH_TOPK / PATH_REJECT)."""
    B, V = logits_pref.shape
    dev = logits_pref.device
    tokens = torch.empty(B, dtype=torch.int64, device=dev)
    logp = torch.empty(B, dtype=torch.float32, device=dev)
    if B == 0:
        return tokens, logp
    if V == 0:
        return tokens.fill_(-1), logp.fill_(float("nan"))
    zp = row_view(logits_pref)
    has_base = logits_base is not None
    zb = row_view(logits_base) if has_base else zp
    nsplit, chunk = split_plan(B, V, dev, block_size or BLOCK, n_split)
    if nsplit > 1:
        ws = torch.zeros(B + B * nsplit * NW, dtype=torch.int32, device=dev)   # counters, then partials
        cnt, wsi = ws[:B], ws[B:]
        wsf = wsi.view(torch.float32)
    else:
        wsf = logp                                      # unused without split (typed dummies)
        wsi = cnt = torch.empty(1, dtype=torch.int32, device=dev)
    top_k = top_k.to(torch.int64).contiguous()
    kp = kp_tier(top_k, V)
    cx = _constexprs(zp.dtype, has_base, block_size, kp)
    # candidate lists (written before the counter increment that publishes them: no zeroing needed)
    wsc = torch.empty(B * nsplit * kp if nsplit > 1 else 1, dtype=torch.int64, device=dev)
    path = path_out if path_out is not None else torch.empty(B, dtype=torch.int32, device=dev)
    with device_guard(zp):
        _guided_sample_kernel[(B, nsplit)](
            zp, zb, zp.stride(0), zb.stride(0), weight.float().contiguous(), temperature.float().contiguous(),
            top_k, top_p.float().contiguous(), rng.to(torch.int64).contiguous(),
            tokens, logp, wsf, wsi, cnt, wsc, path, V, chunk, nsplit, **cx, num_warps=NUM_WARPS,
            enable_fp_fusion=False)
    return tokens, logp
