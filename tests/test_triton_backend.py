"""The Triton backend against the torch reference backend, under TRITON_INTERPRET=1 on CPU tensors.

Kept cheap: the interpreter runs every program in Python, so vocabularies stay small except one case.
"""
from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest
import torch

pytest.importorskip("triton")

import pyalign  # noqa: E402
from pyalign import backends  # noqa: E402
from pyalign.backends import torch_backend as tb  # noqa: E402
from pyalign.reference import philox as ref_philox  # noqa: E402
from pyalign.reference.sampling import topk_mask, topp_mask  # noqa: E402

tk = pytest.importorskip("pyalign.backends.triton_backend")
from pyalign.triton_kernels.guided_sample import guided_sample as tri_sample  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-2, torch.float16: 5e-2}
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
        x = torch.empty(64, dtype=torch.int64)
        g = torch.empty(64)
        _philox_probe[(1,)](x, g, idx, seed, off, N=64)
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
    _close(tk.guided_logprobs(zp, zb, w), tb.guided_logprobs(zp, zb, w), TOL[dtype])
    _close(tk.guided_logprobs(zp, None, w), tb.guided_logprobs(zp, None, w), TOL[dtype])


def test_guided_logprobs_bad_rows_and_spread():
    V = 300
    zp = _logits(4, V, scale=1e4)
    zb = _logits(4, V, scale=1e4, gen=torch.Generator().manual_seed(3))
    zp[1, 5] = float("nan")
    zb[2, 7] = float("inf")
    zp[3] = float("-inf")
    w = torch.tensor([2.0, 1.0, 5.6, 1.0])
    out = tk.guided_logprobs(zp, zb, w)
    assert torch.isnan(out[1:]).all() and torch.isfinite(out[0]).any()
    _close(out, tb.guided_logprobs(zp, zb, w), 1e-3)


# ---------------------------------------------------------------- guided_sample: same tokens as torch

def _check_sample(zp, zb, w, tau, k, p, rng, tol, **kw):
    tok, lp = tri_sample(zp, zb, w, tau, k, p, rng, **kw)
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
        tok, _ = tri_sample(z, None, torch.ones(B), torch.ones(B), kk, pp, rng)
        keep = topk_mask(z, kk)
        keep = topp_mask(z.masked_fill(~keep, float("-inf")), pp)
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
    tok, lp = tri_sample(zp.expand(B, V), zb.expand(B, V), torch.full((B,), w), torch.ones(B),
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
        v, i = tk.topk_candidates(x, k)
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
    t, c, s = tk.topk_rescore(base, rm, ref, k, weight, tau, rng)
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
    t, c, s = tk.topk_rescore(base, rm, ref, k, w, tau, rng)
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
    out = tk.rescore_candidates(b, r, cand, lam, tau, rng, V)
    ref_out = tb.rescore_candidates(b, r, cand, lam, tau, rng, V)
    for a, e in zip(out, ref_out):
        assert torch.equal(a, e)
    assert out[0][5] == -1 and out[0][6] == -1


# ---------------------------------------------------------------- through the public API

def test_public_api_with_triton_backend():
    B, V = 4, 600
    zp = _logits(B, V, torch.bfloat16, strided=True)
    zb = _logits(B, V, torch.bfloat16, gen=torch.Generator().manual_seed(1), strided=True)
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
