"""The Triton backend against the torch reference backend.

With CUDA the *compiled* kernels run on the GPU (inputs built on the CPU are moved there, results compared
on the CPU); without CUDA the same tests run under TRITON_INTERPRET=1 on CPU tensors. Kept cheap: the
interpreter runs every program in Python, so vocabularies stay small except one case. ``gpu`` tests (CUDA
graphs, streams, devices, large vocabularies) are skipped without CUDA.
"""
from __future__ import annotations

import os

import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"                # before triton is imported

import pytest  # noqa: E402

pytest.importorskip("triton")

import pyalign  # noqa: E402
from pyalign import backends  # noqa: E402
from pyalign.backends import torch_backend as tb  # noqa: E402
from pyalign.reference import philox as ref_philox  # noqa: E402
from pyalign.reference.sampling import topk_mask, topp_mask  # noqa: E402

tk = pytest.importorskip("pyalign.backends.triton_backend")
from pyalign.triton_kernels.guided_sample import guided_sample as tri_sample  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

DEV = torch.device("cuda" if CUDA else "cpu")
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (compiled Triton kernels)")
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-2, torch.float16: 5e-2}


def _on(fn, *args, **kw):
    """Run a Triton launcher on DEV (tensor arguments moved there), results back on the CPU. On CUDA the
    interpreter-only ``block_size`` hook is dropped: the GPU runs the production (AOT-tested) variants."""
    if CUDA:
        kw.pop("block_size", None)
    mv = [a.to(DEV) if isinstance(a, torch.Tensor) else a for a in args]
    out = fn(*mv, **kw)
    return tuple(o.cpu() for o in out) if isinstance(out, tuple) else out.cpu()
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _logits(B, V, dtype=torch.float32, scale=3.0, mask_frac=0.0, gen=None, strided=False):
    g = gen if gen is not None else torch.Generator().manual_seed(B * 1000 + V)
    x = torch.randn(B, 3 if strided else 1, V, generator=g) * scale
    if mask_frac > 0:
        m = torch.rand(B, 3 if strided else 1, V, generator=g) < mask_frac
        m[..., 0] = False                      # keep at least one finite token per row
        x = x.masked_fill(m, float("-inf"))
    x = x.to(dtype)
    return x[:, 1, :] if strided else x[:, 0, :].contiguous()


def _rng(B, base=0):
    return torch.stack([torch.arange(B, dtype=torch.int64) * 7919 + 17 + base,
                        torch.arange(B, dtype=torch.int64) * 3 + base], dim=1)


def _params(B, seed=0, greedy_frac=0.3):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(B, generator=g) * 6 - 1
    tau = torch.rand(B, generator=g) * 1.5 + 0.2
    tau[torch.rand(B, generator=g) < greedy_frac] = 0.0
    return w, tau


def _close(a, b, tol):
    nan_a, nan_b = torch.isnan(a), torch.isnan(b)
    assert torch.equal(nan_a, nan_b)
    a, b = a[~nan_a], b[~nan_b]
    assert torch.equal(torch.isinf(a), torch.isinf(b))
    fin = torch.isfinite(a)
    torch.testing.assert_close(a[fin], b[fin], atol=tol, rtol=tol)


# ---------------------------------------------------------------- RNG

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from pyalign.triton_kernels._philox import philox_gumbel, philox_x0  # noqa: E402


@triton.jit
def _philox_probe(x_ptr, g_ptr, idx_ptr, seed, offset, N: tl.constexpr):
    r = tl.arange(0, N)
    idx = tl.load(idx_ptr + r)
    tl.store(x_ptr + r, philox_x0(seed, offset, idx).to(tl.int64))
    tl.store(g_ptr + r, philox_gumbel(seed, offset, idx))


def test_philox_bits_and_gumbel():
    idx = torch.cat([torch.arange(32), torch.tensor([2 ** 31 - 1, 2 ** 32 + 5, 262143, 123456789012])])
    idx = torch.cat([idx, torch.zeros(64 - idx.numel(), dtype=torch.int64)])
    for seed, off in [(0, 0), (2 ** 62 - 1, 2 ** 33 + 7), (-3, -1), (12345, 99)]:
        x = torch.empty(64, dtype=torch.int64, device=DEV)
        g = torch.empty(64, device=DEV)
        _philox_probe[(1,)](x, g, idx.to(DEV), seed, off, N=64)
        x, g = x.cpu(), g.cpu()
        s, o = torch.tensor(seed), torch.tensor(off)
        x0, *_ = ref_philox.philox4x32_10(idx, 0, o, o >> 32, s, s >> 32)
        assert torch.equal(x, x0)
        torch.testing.assert_close(g, ref_philox.gumbel(s, o, idx), atol=2e-6, rtol=1e-6)


# ---------------------------------------------------------------- guided_logprobs

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V,mask_frac,strided", [(7, 0.0, False), (1000, 0.5, True), (4099, 0.99, False)])
def test_guided_logprobs(dtype, V, mask_frac, strided):
    B = 5
    zp = _logits(B, V, dtype, mask_frac=mask_frac, strided=strided)
    zb = _logits(B, V, dtype, mask_frac=mask_frac, gen=torch.Generator().manual_seed(7), strided=strided)
    w, _ = _params(B)
    _close(_on(tk.guided_logprobs, zp, zb, w), tb.guided_logprobs(zp, zb, w), TOL[dtype])
    _close(_on(tk.guided_logprobs, zp, None, w), tb.guided_logprobs(zp, None, w), TOL[dtype])


def test_guided_logprobs_bad_rows_and_spread():
    V = 300
    zp = _logits(4, V, scale=1e4)
    zb = _logits(4, V, scale=1e4, gen=torch.Generator().manual_seed(3))
    zp[1, 5] = float("nan")
    zb[2, 7] = float("inf")
    zp[3] = float("-inf")
    w = torch.tensor([2.0, 1.0, 5.6, 1.0])
    out = _on(tk.guided_logprobs, zp, zb, w)
    assert torch.isnan(out[1:]).all() and torch.isfinite(out[0]).any()
    _close(out, tb.guided_logprobs(zp, zb, w), 1e-3)


# ---------------------------------------------------------------- guided_sample: same tokens as torch

def _check_sample(zp, zb, w, tau, k, p, rng, tol, **kw):
    tok, lp = _on(tri_sample, zp, zb, w, tau, k, p, rng, **kw)
    rt, rl = tb.guided_sample(zp, zb, w, tau, k, p, rng)
    assert torch.equal(tok, rt), (tok, rt)
    _close(lp, rl, tol)
    return tok


@pytest.mark.parametrize("dtype,B,V,mask_frac,strided,split", [
    (dt, *case) for dt in DTYPES for case in [(1, 4099, 0.0, True, 8), (8, 1000, 0.5, False, 3),
                                              (3, 2500, 0.99, True, None)]] + [(torch.float32, 64, 7, 0.0, False, 1)])
def test_guided_sample_matches_torch(dtype, B, V, mask_frac, strided, split):
    zp = _logits(B, V, dtype, mask_frac=mask_frac, strided=strided)
    zb = _logits(B, V, dtype, mask_frac=mask_frac, gen=torch.Generator().manual_seed(11), strided=strided)
    w, tau = _params(B, seed=V)
    zeros, ones = torch.zeros(B, dtype=torch.int64), torch.ones(B)
    block = 256 if V > 256 else None
    _check_sample(zp, zb, w, tau, zeros, ones, _rng(B), TOL[dtype], block_size=block, n_split=split)
    _check_sample(zp, None, w, tau, zeros, ones, _rng(B, 5), TOL[dtype], block_size=block, n_split=split)


def test_guided_sample_spread_single_token_and_bad_rows():
    B, V = 8, 777
    zp = _logits(B, V, scale=1e4)
    zb = _logits(B, V, scale=1e4, gen=torch.Generator().manual_seed(5))
    zp[1, :] = float("-inf")
    zp[1, 400] = 3.0                                  # a single allowed token
    zb[2, 10] = float("nan")                          # NaN row
    zp[3, 20] = float("inf")                          # +inf row
    zb[4, :] = float("-inf")                          # nothing finite
    zp[5, :] = 1.5                                    # all ties: greedy -> 0
    zb[5, :] = 1.5
    w = torch.tensor([1.0, 2.0, 1.0, 1.0, 1.0, 3.0, 0.5, 5.6])
    tau = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.8, 2.0])
    zeros, ones = torch.zeros(B, dtype=torch.int64), torch.ones(B)
    for split in (1, 2):
        tok = _check_sample(zp, zb, w, tau, zeros, ones, _rng(B), 1e-3, block_size=128, n_split=split)
        assert tok[1] == 400 and (tok[2:5] == -1).all() and tok[5] == 0
        k = torch.tensor([1, 3, 0, 5, 2, 0, 4, 9])
        p = torch.tensor([1.0, 0.5, 0.9, 1.0, 0.3, 1.0, 0.7, 0.2])
        _check_sample(zp, zb, w, tau, k, p, _rng(B, 3), 1e-3, block_size=128, n_split=split)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_guided_sample_top_k_top_p_matches_torch(dtype):
    B, V = 8, 1500
    zp = _logits(B, V, dtype, mask_frac=0.3, strided=True)
    zb = _logits(B, V, dtype, gen=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(2)
    w, tau = _params(B, seed=4, greedy_frac=0.1)
    k = torch.randint(0, 40, (B,), generator=g)
    k[::3] = 0
    p = torch.rand(B, generator=g) * 0.9 + 0.05
    p[1::3] = 1.0
    _check_sample(zp, zb, w, tau, k, p, _rng(B), TOL[dtype], block_size=512)


def test_guided_sample_ties_in_top_k():
    # integer-valued logits: many ties at the k-th value; all tied tokens are kept (reference semantics)
    B, V = 6, 200
    g = torch.Generator().manual_seed(0)
    z = torch.randint(-3, 4, (1, V), generator=g).float().expand(B, V).contiguous()
    z[:, 0] = -0.0
    tau = torch.ones(B)
    k = torch.full((B,), 7, dtype=torch.int64)
    p = torch.full((B,), 0.6)
    tok = _check_sample(z, None, torch.ones(B), tau, k, p, _rng(B), 1e-5, block_size=64)
    keep = topk_mask(z, k)
    keep = topp_mask(z.masked_fill(~keep, float("-inf")), p)
    assert keep.gather(1, tok[:, None]).all()


def test_filters_never_leave_the_set():
    B, V = 12, 64
    g = torch.Generator().manual_seed(1)
    z = (torch.randn(1, V, generator=g) * 2).expand(B, V).contiguous()
    rng = torch.stack([torch.arange(B) * 104729 + 1, torch.zeros(B, dtype=torch.int64)], 1)
    for k, p in ((5, 1.0), (0, 0.5), (10, 0.7)):
        kk = torch.full((B,), k, dtype=torch.int64)
        pp = torch.full((B,), p)
        tok, _ = _on(tri_sample, z, None, torch.ones(B), torch.ones(B), kk, pp, rng)
        keep_k = topk_mask(z, kk)
        keep = keep_k & topp_mask(z.masked_fill(~keep_k, float("-inf")), pp)
        assert keep.gather(1, tok[:, None]).all()
        assert tok.unique().numel() > 1


def test_sample_distribution_matches_softmax():
    B, V = 256, 6
    g = torch.Generator().manual_seed(3)
    zp = (torch.randn(1, V, generator=g) * 1.5)
    zb = (torch.randn(1, V, generator=g) * 1.5)
    w = 2.0
    zp[0, 4] = float("-inf")
    rng = torch.stack([torch.arange(B) * 6364136223846793005 % (2 ** 62), torch.full((B,), 42)], 1)
    tok, lp = _on(tri_sample, zp.expand(B, V), zb.expand(B, V), torch.full((B,), w), torch.ones(B),
                         torch.zeros(B, dtype=torch.int64), torch.ones(B), rng)
    probs = torch.softmax(zb + w * (zp - zb), -1)[0]
    hist = torch.bincount(tok, minlength=V).float() / B
    cos = torch.nn.functional.cosine_similarity(hist, probs, dim=0)
    assert cos > 0.99, cos
    assert hist[4] == 0
    torch.testing.assert_close(lp, probs.log()[tok], atol=1e-5, rtol=1e-5)


def test_large_vocab():
    B, V = 2, 49152
    zp = _logits(B, V, torch.bfloat16)
    zb = _logits(B, V, torch.bfloat16, gen=torch.Generator().manual_seed(1))
    w = torch.tensor([5.6487, 3.0])
    tau = torch.tensor([0.0, 0.9])
    _check_sample(zp, zb, w, tau, torch.zeros(B, dtype=torch.int64), torch.ones(B), _rng(B), 5e-2,
                  block_size=4096)


# ---------------------------------------------------------------- top-k candidates and rescoring

@pytest.mark.parametrize("dtype", DTYPES)
def test_topk_candidates(dtype):
    B, V = 6, 1000
    x = _logits(B, V, dtype, mask_frac=0.5, strided=True)
    x[0] = torch.randint(-2, 3, (V,)).to(dtype)       # heavy ties
    x[1, :] = float("-inf")
    x[1, 3] = 0.0
    for k in (1, 10, 33):
        v, i = _on(tk.topk_candidates, x, k)
        rv, ri = tb.topk_candidates(x, k)
        assert torch.equal(i, ri)
        assert torch.equal(v, rv)


@pytest.mark.parametrize("D,dtype", [(1, torch.float32), (3, torch.bfloat16)])
def test_topk_rescore(D, dtype):
    B, V, k = 6, 1500, 10
    g = torch.Generator().manual_seed(D)
    base = _logits(B, V, dtype, strided=True)
    rm = (torch.randn(B, D + 1, V, generator=g) * 2).to(dtype)[:, 1:, :]     # strided [B, D, V]
    ref = _logits(B, V, dtype, gen=torch.Generator().manual_seed(8))
    _, cand = tb.topk_candidates(base, k)
    ref[2, cand[2, 0]] = float("-inf")                      # one invalid candidate
    rm[3, 0, cand[3, 1]] = float("-inf")
    ref[4, 0] = float("nan")                                # bad row
    weight = torch.rand(B, D, generator=g) * 1.5
    tau = torch.tensor([0.0, 0.7, 0.0, 1.2, 1.0, 0.5])
    rng = _rng(B)
    t, c, s = _on(tk.topk_rescore, base, rm, ref, k, weight, tau, rng)
    rt, rc, rs = tb.topk_rescore(base, rm, ref, k, weight, tau, rng)
    assert torch.equal(t, rt) and torch.equal(c, rc)
    assert t[4] == -1
    _close(s, rs, 1e-5 if dtype == torch.float32 else 5e-2)


def test_topk_rescore_no_valid_candidate():
    B, V, k = 2, 100, 3
    base = _logits(B, V)
    ref = _logits(B, V, gen=torch.Generator().manual_seed(2))
    rm = _logits(B, V, gen=torch.Generator().manual_seed(3))[:, None, :]
    _, cand = tb.topk_candidates(base, k)
    ref[1, cand[1]] = float("-inf")
    w, tau, rng = torch.ones(B, 1), torch.zeros(B), _rng(B)
    t, c, s = _on(tk.topk_rescore, base, rm, ref, k, w, tau, rng)
    rt, rc, rs = tb.topk_rescore(base, rm, ref, k, w, tau, rng)
    assert t.tolist() == rt.tolist() and t[1] == -1 and torch.equal(c, rc)
    _close(s, rs, 1e-5)


@pytest.mark.parametrize("M", [1, 4])
def test_rescore_candidates(M):
    B, k, V = 12, 10, 50000
    g = torch.Generator().manual_seed(M)
    b = torch.randn(B, k, generator=g) * 2
    r = torch.randn(B, k, generator=g)
    cand = torch.randint(0, V, (B, k), generator=g)
    lam = torch.rand(B, M, generator=g) * 2
    b[2, 3] = float("-inf")
    b[5, :] = float("-inf")                            # nothing finite -> -1
    r[6, 0] = float("nan")                             # bad -> -1
    b[7, :] = 1.0                                      # ties
    r[7, :] = 0.0
    tau = torch.rand(B, generator=g) + 0.2
    tau[::3] = 0.0
    rng = _rng(B)
    out = _on(tk.rescore_candidates, b, r, cand, lam, tau, rng, V)
    ref_out = tb.rescore_candidates(b, r, cand, lam, tau, rng, V)
    for a, e in zip(out, ref_out):
        assert torch.equal(a, e)
    assert out[0][5] == -1 and out[0][6] == -1


# ---------------------------------------------------------------- through the public API

def test_public_api_with_triton_backend():
    B, V = 4, 600
    zp = _logits(B, V, torch.bfloat16, strided=True).to(DEV)
    zb = _logits(B, V, torch.bfloat16, gen=torch.Generator().manual_seed(1), strided=True).to(DEV)
    kw = dict(weight=torch.tensor([1.0, 2.0, 3.0, 5.6]), temperature=torch.tensor([0.0, 1.0, 0.7, 1.0]),
              top_k=torch.tensor([0, 0, 20, 5]), top_p=torch.tensor([1.0, 0.9, 1.0, 0.8]), seed=123, offset=4)
    with backends.use("torch"):
        ref_tok, ref_lp = pyalign.guided_sample(zp, zb, **kw)
        ref_logp = pyalign.guided_logprobs(zp, zb, 2.0)
        ref_c = pyalign.topk_candidates(zb, 5)
        ref_t = pyalign.topk_rescore(zb, zp, zb, 4, 1.0, 0.0)
    with backends.use("triton"):
        tok, lp = pyalign.guided_sample(zp, zb, **kw)
        logp = pyalign.guided_logprobs(zp, zb, 2.0)
        c = pyalign.topk_candidates(zb, 5)
        t = pyalign.topk_rescore(zb, zp, zb, 4, 1.0, 0.0)
        bad = zp.clone()
        bad[2] = float("-inf")
        with pytest.raises(ValueError):
            pyalign.guided_sample(bad, None, temperature=1.0, seed=1)
    assert torch.equal(tok, ref_tok)
    _close(lp, ref_lp, 5e-2)
    _close(logp, ref_logp, 5e-2)
    assert torch.equal(c[1], ref_c[1]) and torch.equal(t, ref_t)


# ---------------------------------------------------------------- filtered sampling: every path of the rejection test

def _rejection_path(s: torch.Tensor, g: torch.Tensor, k: int, p: float, rounds: int) -> int:
    """Which path the kernel takes for one filtered row (a float64 model of ``_filtered_pick``):
    the round (0..rounds-1) whose candidate is accepted, or ``rounds`` for the exact fallback."""
    s, g = s.double(), g.double()
    e = torch.exp(s - s.max())
    c = int(torch.argmax(s + g))
    for r in range(rounds):
        gt, ge = s > s[c], s >= s[c]
        n, m_gt, m_ge, z = int(gt.sum()), float(e[gt].sum()), float(e[ge].sum()), float(e.sum())
        in_k = k <= 0 or n < k
        if p >= 1.0:
            acc, rej = in_k, not in_k
        else:
            acc = in_k and m_gt < p * (m_ge if k > 0 else z)
            rej = (not in_k) or m_gt >= p * z
        if acc:
            return r
        if not rej:
            return rounds
        c = int(torch.argmax(torch.where(gt, s + g, torch.tensor(float("-inf"), dtype=torch.float64))))
    return rounds


def test_filtered_sampling_every_path_matches_torch():
    from pyalign.triton_kernels.guided_sample import NROUNDS
    B, V = 32, 300
    g = torch.Generator().manual_seed(21)
    zp = torch.randn(B, V, generator=g) * torch.linspace(0.3, 6.0, B)[:, None]     # flat ... peaked rows
    zp[::5, 100:] = float("-inf")                                                   # masked tails
    zp[3::7] = torch.randint(-2, 3, (V,), generator=g).float()                      # heavy ties
    zb = torch.randn(B, V, generator=g)
    w = torch.rand(B, generator=g) * 3
    tau = torch.rand(B, generator=g) + 0.3
    k = torch.tensor([0, 1, 2, 5, 50, 64, 0, 3] * (B // 8))
    p = torch.tensor([0.3, 1.0, 0.9, 0.5, 0.99, 0.95, 0.05, 1.0] * (B // 8))
    k[::11] = 0
    rng = _rng(B, 9)
    _check_sample(zp, zb, w, tau, k, p, rng, 1e-5, block_size=128, n_split=3)
    tok = _check_sample(zp, zb, w, tau, k, p, rng, 1e-5, block_size=512, n_split=1)
    # which paths were exercised (the reference's own quantities, see guided_sample's docstring)
    z = tb.ref.guided_logits(zp, zb, w).float()
    s = z / tau[:, None]
    noise = ref_philox.row_gumbel(rng, V)
    paths = [_rejection_path(s[b], noise[b], int(k[b]), float(p[b]), NROUNDS) for b in range(B)
             if int(k[b]) > 0 or float(p[b]) < 1.0]
    assert 0 in paths and any(0 < r < NROUNDS for r in paths), paths
    assert (tok >= 0).all()


@pytest.mark.parametrize("k,p", [(3, 1.0), (0, 0.75)])
def test_filtered_sampling_statistics(k, p):
    """Draws with top-k 3 (or top-p 0.75) follow softmax over the kept set and never leave it."""
    B, V = 256, 6
    z = torch.tensor([[2.0, 1.5, 1.2, 1.2, 0.3, -1.0]])
    kk = torch.full((B,), k, dtype=torch.int64)
    pp = torch.full((B,), p)
    keep_k = topk_mask(z, kk[:1])
    keep = (keep_k & topp_mask(z.masked_fill(~keep_k, float("-inf")), pp[:1]))[0]
    probs = torch.softmax(z[0].masked_fill(~keep, float("-inf")), -1)
    rng = torch.stack([torch.arange(B) * 2654435761 % (2 ** 61), torch.full((B,), 3)], 1)
    tok, lp = _on(tri_sample, z.expand(B, V), None, torch.ones(B), torch.ones(B), kk, pp, rng, block_size=8)
    hist = torch.bincount(tok, minlength=V).float() / B
    assert keep.gather(0, tok).all() and 1 < keep.sum() < V
    assert torch.nn.functional.cosine_similarity(hist, probs, dim=0) > 0.99
    torch.testing.assert_close(lp, torch.log_softmax(z[0], -1)[tok])


# ---------------------------------------------------------------- fp64 logits are computed in fp64

def test_fp64_logprobs_and_sample_computed_in_fp64():
    B, V = 4, 300
    g = torch.Generator().manual_seed(5)
    zb = 1e6 + torch.randn(B, V, generator=g, dtype=torch.float64) * 1e-3     # fp32 cannot hold these gaps
    zp = zb + torch.randn(B, V, generator=g, dtype=torch.float64) * 1e-3
    w = torch.tensor([5.6487, 2.0, 1.0, 3.0])
    out = _on(tk.guided_logprobs, zp, zb, w)
    ref = tb.guided_logprobs(zp, zb, w)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    fp32 = tb.guided_logprobs(zp.float(), zb.float(), w)
    assert (fp32 - ref).abs().max() > 1e-2                  # the test can tell fp32 from fp64 arithmetic
    tau = torch.tensor([0.0, 1e-3, 2e-3, 1e-3])
    k, p = torch.tensor([0, 0, 5, 0]), torch.tensor([1.0, 1.0, 1.0, 0.5])
    for base in (zb, None):
        _check_sample(zp, base, w, tau, k, p, _rng(B), 1e-6, block_size=128, n_split=2)
    v, i = _on(tk.topk_candidates, zp, 7)
    rv, ri = tb.topk_candidates(zp, 7)
    assert torch.equal(i, ri) and torch.equal(v, rv)


# ---------------------------------------------------------------- empty batches, reduction safety

def test_empty_batch_every_op():
    V = 50
    e = torch.empty(0, V)
    i64 = torch.empty(0, dtype=torch.int64)
    rng0 = torch.empty(0, 2, dtype=torch.int64)
    tok, lp = _on(tri_sample, e, e, torch.empty(0), torch.empty(0), i64, torch.empty(0), rng0)
    assert tok.shape == (0,) and lp.shape == (0,)
    assert _on(tk.guided_logprobs, e, None, torch.empty(0)).shape == (0, V)
    v, i = _on(tk.topk_candidates, e, 3)
    assert v.shape == (0, 3) and i.shape == (0, 3)
    t, c, s = _on(tk.topk_rescore, e, e[:, None], e, 3, torch.empty(0, 1), torch.empty(0), rng0)
    assert t.shape == (0,) and c.shape == (0, 3) and s.shape == (0, 3)
    out = _on(tk.rescore_candidates, torch.empty(0, 4), torch.empty(0, 4), torch.empty(0, 4, dtype=torch.int64),
              torch.empty(0, 2), torch.empty(0), torch.empty(0, 2, dtype=torch.int64), V)
    assert all(o.shape == (0,) for o in out)


def test_unfinished_split_reduction_leaves_minus_one():
    """Program 0 of a split row writes -1 / NaN first: a reduction that never completes (here a counter
    that never reaches NSPLIT - 1) cannot leave uninitialised memory in the outputs."""
    from pyalign.triton_kernels import guided_sample as gs
    B, V, nsplit = 3, 512, 4
    zp = _logits(B, V).to(DEV)
    tokens = torch.full((B,), 1234567, dtype=torch.int64, device=DEV)
    logp = torch.zeros(B, device=DEV)
    ws = torch.zeros(B + B * nsplit * gs.NW, dtype=torch.int32, device=DEV)
    ws[:B] = 10 ** 6                                           # "corrupted" counters
    cx = gs._constexprs(zp.dtype, False, None if CUDA else 128)
    ones = torch.ones(B, device=DEV)
    gs._guided_sample_kernel[(B, nsplit)](
        zp, zp, zp.stride(0), zp.stride(0), ones, ones, torch.zeros(B, dtype=torch.int64, device=DEV), ones,
        _rng(B).to(DEV), tokens, logp, ws[B:].view(torch.float32), ws[B:], ws[:B],
        torch.empty(1, dtype=torch.int64, device=DEV), torch.empty(B, dtype=torch.int32, device=DEV), V, 128, nsplit, **cx,
        num_warps=gs.NUM_WARPS)
    assert (tokens.cpu() == -1).all() and torch.isnan(logp.cpu()).all()


def test_split_calls_do_not_share_workspace():
    """Two calls in a row (the second would see a stale counter if workspaces were cached and not reset)."""
    B, V = 2, 900
    zp = _logits(B, V)
    w, tau = torch.ones(B), torch.ones(B)
    z0, o1 = torch.zeros(B, dtype=torch.int64), torch.ones(B)
    for off in range(3):
        _check_sample(zp, None, w, tau, z0, o1, _rng(B, off), 1e-5, block_size=128, n_split=5)


def test_device_guard_cpu_is_a_no_op():
    from pyalign.triton_kernels._common import device_guard
    with device_guard(torch.zeros(1)):
        pass


def test_large_k_routes_to_torch():
    from pyalign.triton_kernels.topk_candidates import MAX_K
    B, V = 2, MAX_K + 40
    x = _logits(B, V)
    v, i = tk.topk_candidates(x, MAX_K + 3)
    rv, ri = tb.topk_candidates(x, MAX_K + 3)
    assert torch.equal(i, ri) and torch.equal(v, rv)


# ---------------------------------------------------------------- GPU only: compiled kernels under real conditions

def _sample_args(B, V, dtype, dev, seed=0, filt=True):
    g = torch.Generator().manual_seed(seed)
    zp = (torch.randn(B, V, generator=g) * 3).to(dtype).to(dev)
    zb = (torch.randn(B, V, generator=g) * 3).to(dtype).to(dev)
    w = (torch.rand(B, generator=g) * 5).to(dev)
    tau = (torch.rand(B, generator=g) + 0.3).to(dev)
    tau[::4] = 0.0
    k = torch.where(torch.rand(B, generator=g) < 0.5, 50, 0).to(dev) if filt else torch.zeros(B, dtype=torch.int64,
                                                                                               device=dev)
    p = torch.where(torch.rand(B, generator=g) < 0.5, 0.9, 1.0).to(dev) if filt else torch.ones(B, device=dev)
    rng = _rng(B, seed).to(dev)
    return zp, zb, w, tau, k, p, rng


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,V", [(1, 262144), (8, 128256), (300, 32000)])
def test_gpu_large_vocab_matches_torch(dtype, B, V):
    args = _sample_args(B, V, dtype, "cuda", seed=B)
    tok, lp = tri_sample(*args)
    rt, rl = tb.guided_sample(*args)
    assert torch.equal(tok, rt)
    _close(lp.cpu(), rl.cpu(), TOL[dtype])
    _close(tk.guided_logprobs(*args[:3]).cpu(), tb.guided_logprobs(*args[:3]).cpu(), TOL[dtype])


@gpu
def test_gpu_cuda_graph_replays_with_new_inputs():
    B, V = 4, 131072
    static = [a.clone() for a in _sample_args(B, V, torch.bfloat16, "cuda", seed=0)]
    tri_sample(*static)                                     # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        tok, lp = tri_sample(*static)
        lps = tk.guided_logprobs(*static[:3])
    for seed in (1, 2, 3, 4):
        for dst, src in zip(static, _sample_args(B, V, torch.bfloat16, "cuda", seed=seed)):
            dst.copy_(src)
        graph.replay()
        torch.cuda.synchronize()
        rt, rl = tb.guided_sample(*static)
        assert torch.equal(tok, rt), seed
        _close(lp.cpu(), rl.cpu(), 5e-2)
        _close(lps.cpu(), tb.guided_logprobs(*static[:3]).cpu(), 5e-2)


@gpu
def test_gpu_two_streams_at_once():
    B, V = 2, 262144
    a = _sample_args(B, V, torch.float32, "cuda", seed=5)
    b = _sample_args(B, V, torch.float32, "cuda", seed=6)
    tri_sample(*a)
    torch.cuda.synchronize()
    s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()
    outs = {}
    for _ in range(3):
        with torch.cuda.stream(s1):
            outs["a"] = tri_sample(*a)
        with torch.cuda.stream(s2):
            outs["b"] = tri_sample(*b)
        torch.cuda.synchronize()
        assert torch.equal(outs["a"][0], tb.guided_sample(*a)[0])
        assert torch.equal(outs["b"][0], tb.guided_sample(*b)[0])


@gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_gpu_tensors_on_a_non_current_device():
    args = _sample_args(3, 50000, torch.float16, "cuda:1", seed=7)
    with torch.cuda.device(0):
        tok, lp = tri_sample(*args)
        logp = tk.guided_logprobs(*args[:3])
        v, i = tk.topk_candidates(args[0], 10)
    assert tok.device.index == 1 and logp.device.index == 1
    assert torch.equal(tok, tb.guided_sample(*args)[0])
    assert torch.equal(i, tb.topk_candidates(args[0], 10)[1])


@gpu
def test_gpu_empty_batch():
    e = torch.empty(0, 1000, device="cuda")
    tok, lp = tri_sample(e, e, *(torch.empty(0, device="cuda") for _ in range(2)),
                         torch.empty(0, dtype=torch.int64, device="cuda"), torch.empty(0, device="cuda"),
                         torch.empty(0, 2, dtype=torch.int64, device="cuda"))
    assert tok.shape == (0,) and tk.guided_logprobs(e, e, torch.empty(0, device="cuda")).shape == (0, 1000)


# ---------------------------------------------------------------- filtered sampling: the top-k candidate stage

def _zipf_rows(B, V, gen):
    ranks = torch.stack([torch.randperm(V, generator=gen) for _ in range(B)]) + 1
    return -1.1 * ranks.float().log()


@pytest.mark.parametrize("kind", ["random", "zipf", "flat", "tied", "masked"])
def test_topk_stage_matches_torch(kind):
    """Rows with top-k take the candidate stage (per-chunk top-K' lists merged by the row's last program);
    exact tokens for k = 1, 5, 50, k > V, with and without top-p, split and unsplit."""
    from pyalign.triton_kernels.guided_sample import PATH_TOPK
    B, V = 8, 600
    g = torch.Generator().manual_seed(len(kind))
    if kind == "zipf":
        z = _zipf_rows(B, V, g)
    elif kind == "flat":
        z = torch.randn(B, V, generator=g) * 0.3
    elif kind == "tied":
        z = torch.randint(-3, 4, (B, V), generator=g).float()
    else:
        z = torch.randn(B, V, generator=g) * 3
    if kind == "masked":
        z = z.masked_fill(torch.rand(B, V, generator=g) < 0.9, float("-inf"))
        z[:, 7] = 1.0
    k = torch.tensor([1, 5, 50, 50, 1, 60, 50, 3])
    p = torch.tensor([1.0, 0.9, 0.9, 1.0, 0.5, 0.9, 0.3, 0.95])
    tau = torch.tensor([1.0, 0.7, 1.0, 1.3, 1.0, 1.0, 0.5, 2.0])
    for split, blk in ((1, 256), (3, 64)):
        path = torch.empty(B, dtype=torch.int32)
        _check_sample(z, None, torch.ones(B), tau, k, p, _rng(B, split), 1e-5, block_size=blk, n_split=split,
                      path_out=path)
        if kind != "tied":
            assert (path == PATH_TOPK).all(), path
        else:
            assert (path > 0).all(), path         # ties at a truncated list's end fall back (still exact)


def test_topk_stage_large_k():
    """k = 1000 (K' = 1024) over a split row, and k > V; top-p alone still takes the rejection path."""
    from pyalign.triton_kernels.guided_sample import PATH_REJECT, PATH_TOPK
    B, V = 3, 2100
    g = torch.Generator().manual_seed(5)
    z = torch.randn(B, V, generator=g) * 2
    k = torch.tensor([1000, 5000, 0])
    p = torch.tensor([0.9, 1.0, 0.8])
    path = torch.empty(B, dtype=torch.int32)
    _check_sample(z, None, torch.ones(B), torch.ones(B), k, p, _rng(B), 1e-5, block_size=1024, n_split=2,
                  path_out=path)
    assert path.tolist() == [PATH_TOPK, PATH_REJECT, PATH_REJECT], path   # 5000 > K' = 1024: rejection path
    zs = z[:, :40].contiguous()                                            # k > V: K' = 64 >= V keeps all
    for split in (1, 2):
        _check_sample(zs, None, torch.ones(B), torch.ones(B), torch.tensor([100, 41, 40]), torch.tensor([1.0, 0.9, 0.5]),
                      _rng(B), 1e-5, block_size=16, n_split=split, path_out=path)
        assert (path == PATH_TOPK).all(), path


def _topk_stage_falls_back(s: torch.Tensor, k: int, nsplit: int, kp: int) -> bool:
    """Float64 model of the candidate stage's completeness test: per-chunk top-kp lists, merged top-kp;
    falls back iff the k-th value is not strictly above every value left out of the lists."""
    V = s.numel()
    chunk = -(-V // nsplit)
    kept, bound = [], float("-inf")
    for lo in range(0, V, chunk):
        c = torch.sort(s[lo:lo + chunk], descending=True).values
        if c.numel() > kp:
            bound = max(bound, float(c[kp - 1]))
        kept.append(c[:kp])
    allc = torch.sort(torch.cat(kept), descending=True).values
    if allc.numel() > kp:
        bound = max(bound, float(allc[kp - 1]))
    t = float(allc[min(k, V) - 1])
    return not t > bound


def test_topk_stage_fallback_rate_model():
    """Top-k 50 (+ top-p 0.9, decided exactly over the candidates): the exact fallback only runs on ties at
    the end of a truncated list, never on continuous Zipf / flat rows (the old rejection test fell back on
    ~50 % / 94 % of them)."""
    g = torch.Generator().manual_seed(0)
    V = 32000
    zipf = _zipf_rows(50, V, g).double()
    flat = torch.randn(50, V, generator=g, dtype=torch.float64)
    for rows in (zipf, flat):
        for nsplit in (1, 16):
            assert not any(_topk_stage_falls_back(r, 50, nsplit, 64) for r in rows)
    tied = torch.randint(-3, 4, (4, V), generator=g).double()
    assert all(_topk_stage_falls_back(r, 50, 16, 64) for r in tied)
