"""The C++ CPU backend (``torch.ops.pyalign_C``) against the torch backend, op by op.

Tokens must be identical for the same rng (greedy and sampled: both backends use the same Philox noise); the
only tolerated difference is a near-tie of the noisy scores within a few ulps (different ``log`` libraries),
which ``_assert_same_tokens`` checks explicitly. Log-probs: fp32 ~1e-5, bf16/fp16 looser (input rounding is the
same on both sides, so the tolerance is mostly the log-sum-exp order)."""
from __future__ import annotations

import math

import pytest
import torch

import pyalign
from pyalign import reference as ref
from pyalign.backends import torch_backend as T

from pyalign.backends import cpp_backend as C  # a failed build fails loudly here

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
TOL = {torch.float32: (1e-5, 1e-4), torch.bfloat16: (5e-2, 5e-2), torch.float16: (5e-2, 5e-2)}


def _rng(B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, 2 ** 62, (B,), generator=g), torch.randint(0, 1000, (B,), generator=g)], 1)


def _logits(B, V, dtype, mask=0.0, scale=3.0, seed=0, noncontig=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(B, 3, V, generator=g) * scale).to(dtype)
    if mask > 0:
        m = torch.rand(B, 3, V, generator=g) < mask
        m[:, :, int(torch.randint(0, V, (1,), generator=g))] = False  # keep one finite token per row
        x.masked_fill_(m, float("-inf"))
    return x[:, 1, :] if noncontig else x[:, 1, :].contiguous()


def _noisy(zp, zb, w, tau, top_k, top_p, rng):
    """Reference noisy scores s + g after the filters (for explaining a near-tie)."""
    z = ref.guided_logits(zp, zb, w).float()
    t = torch.where(tau <= 0, torch.ones_like(tau), tau).reshape(-1, 1)
    s = z / t
    s = s.masked_fill(~ref.sampling.topk_mask(s, top_k), float("-inf"))
    s = s.masked_fill(~ref.sampling.topp_mask(s, top_p), float("-inf"))
    noisy = s + ref.philox.row_gumbel(rng, z.shape[-1])
    return torch.where((tau <= 0).reshape(-1, 1), z, noisy)


def _assert_same_tokens(a, b, noisy=None):
    diff = (a != b).nonzero().flatten().tolist()
    if not diff:
        return
    assert noisy is not None, f"tokens differ at rows {diff}: {a[diff]} vs {b[diff]}"
    for r in diff:
        assert a[r] >= 0 and b[r] >= 0, (r, a[r], b[r])
        va, vb = float(noisy[r, a[r]]), float(noisy[r, b[r]])
        assert math.isclose(va, vb, rel_tol=4e-7, abs_tol=1e-6), f"row {r}: {a[r]} ({va}) vs {b[r]} ({vb})"


def _params(B, V, tau, k, p, w=None, seed=0):
    g = torch.Generator().manual_seed(seed + 7)
    w = torch.rand(B, generator=g) * 6 if w is None else torch.full((B,), float(w))
    full = lambda v, dt: v if isinstance(v, torch.Tensor) else torch.full((B,), v, dtype=dt)  # noqa: E731
    return w, full(tau, torch.float32), full(k, torch.int64), full(p, torch.float32), _rng(B, seed)


def _check_sample(zp, zb, w, tau, k, p, rng, dtype):
    a_tok, a_lp = C.guided_sample(zp, zb, w, tau, k, p, rng)
    b_tok, b_lp = T.guided_sample(zp, zb, w, tau, k, p, rng)
    _assert_same_tokens(a_tok, b_tok, _noisy(zp, zb, w, tau, k, p, rng) if (b_tok >= 0).all() else None)
    assert torch.equal(a_tok < 0, b_tok < 0)
    ok = b_tok >= 0
    rtol, atol = TOL[dtype]
    same = a_tok == b_tok
    torch.testing.assert_close(a_lp[ok & same], b_lp[ok & same], rtol=rtol, atol=atol)
    assert torch.isnan(a_lp[~ok]).all()


@pytest.mark.parametrize("V,dtype,mask", [(V, d, m) for V in (7, 1000, 49157) for d in DTYPES
                                          for m in (0.0, 0.5, 0.99)]
                         + [(262144, torch.float32, 0.5), (262144, torch.bfloat16, 0.0)])
def test_guided_sample_unfiltered(V, dtype, mask):
    B = 2 if V == 262144 else 5
    zp, zb = _logits(B, V, dtype, mask, seed=1), _logits(B, V, dtype, mask / 2, seed=2)
    for tau in (0.0, 0.8):
        w, t, k, p, rng = _params(B, V, tau, 0, 1.0, seed=V)
        _check_sample(zp, zb, w, t, k, p, rng, dtype)
        _check_sample(zp, None, w, t, k, p, rng, dtype)


@pytest.mark.parametrize("V", [7, 1000, 20011])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,p", [(1, 1.0), (5, 1.0), (300, 1.0), (0, 0.9), (0, 0.5), (40, 0.8), (0, 0.999)])
def test_guided_sample_filtered(V, dtype, k, p):
    B = 4
    zp, zb = _logits(B, V, dtype, 0.3, seed=3), _logits(B, V, dtype, 0.0, seed=4)
    w, t, kk, pp, rng = _params(B, V, 0.9, k, p, seed=k)
    _check_sample(zp, zb, w, t, kk, pp, rng, dtype)


def test_per_row_params_mixed_batch():
    B, V = 64, 5003
    g = torch.Generator().manual_seed(11)
    zp, zb = _logits(B, V, torch.float32, 0.2, seed=5), _logits(B, V, torch.float32, 0.0, seed=6)
    w = torch.rand(B, generator=g) * 5
    tau = torch.where(torch.rand(B, generator=g) < 0.3, 0.0, torch.rand(B, generator=g) * 2 + 0.05)
    k = torch.where(torch.rand(B, generator=g) < 0.5, 0, torch.randint(1, 60, (B,), generator=g))
    p = torch.where(torch.rand(B, generator=g) < 0.5, 1.0, torch.rand(B, generator=g) * 0.9 + 0.05)
    _check_sample(zp, zb, w, tau, k, p, _rng(B, 3), torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_noncontiguous_rows_and_large_spread(dtype):
    B, V = 3, 4099
    zp = _logits(B, V, dtype, 0.1, scale=1e4 if dtype != torch.float16 else 1e3, seed=7, noncontig=True)
    zb = _logits(B, V, dtype, 0.1, scale=1e4 if dtype != torch.float16 else 1e3, seed=8, noncontig=True)
    assert zp.stride(-1) == 1 and not zp.is_contiguous()
    for tau, k, p in ((0.0, 0, 1.0), (1.0, 0, 1.0), (500.0, 10, 0.9)):
        w, t, kk, pp, rng = _params(B, V, tau, k, p, seed=9)
        _check_sample(zp, zb, w, t, kk, pp, rng, dtype)
    torch.testing.assert_close(C.guided_logprobs(zp, zb, w), T.guided_logprobs(zp, zb, w),
                               rtol=TOL[dtype][0], atol=TOL[dtype][1] * 10, equal_nan=True)


def test_single_allowed_token_and_bad_rows():
    B, V = 6, 777
    zp = torch.randn(B, V)
    zb = torch.randn(B, V)
    zp[0] = float("-inf"); zp[0, 123] = 1.0                 # single allowed token
    zp[1, 5] = float("nan")                                  # NaN row
    zb[2, 9] = float("inf")                                  # +inf row
    zp[3] = float("-inf")                                    # no finite entry
    zb[4, :] = float("-inf"); zb[4, 700] = 0.0               # single token through the base mask
    for tau, k, p in ((0.0, 0, 1.0), (1.0, 0, 1.0), (1.0, 3, 0.5)):
        w, t, kk, pp, rng = _params(B, V, tau, k, p, w=2.0)
        tok, lp = C.guided_sample(zp, zb, w, t, kk, pp, rng)
        assert tok[:5].tolist() == [123, -1, -1, -1, 700]
        assert torch.isnan(lp[1:4]).all() and lp[0] == 0.0 and lp[4] == 0.0
        _check_sample(zp, zb, w, t, kk, pp, rng, torch.float32)
    out = C.guided_logprobs(zp, zb, torch.full((B,), 2.0))
    assert torch.isnan(out[1:4]).all() and not torch.isnan(out[[0, 4, 5]]).any()


@pytest.mark.parametrize("V", [7, 1000, 65539])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask", [0.0, 0.5, 0.99])
def test_guided_logprobs(V, dtype, mask):
    B = 3
    zp, zb = _logits(B, V, dtype, mask, seed=12), _logits(B, V, dtype, mask, seed=13)
    w = torch.tensor([0.0, 1.0, 5.6487])
    rtol, atol = TOL[dtype]
    for base in (zb, None):
        a, b = C.guided_logprobs(zp, base, w), T.guided_logprobs(zp, base, w)
        assert torch.equal(torch.isfinite(a), torch.isfinite(b))
        fin = torch.isfinite(b)
        torch.testing.assert_close(a[fin], b[fin], rtol=rtol, atol=atol)


@pytest.mark.parametrize("V,k", [(7, 1), (7, 7), (1000, 10), (65539, 10), (65539, 300), (5000, 1500), (262144, 64)][:7])
@pytest.mark.parametrize("dtype", DTYPES)
def test_topk_candidates_exact(V, k, dtype):
    B = 3
    x = _logits(B, V, dtype, 0.3, seed=V + k)
    x[1] = torch.randint(-3, 3, (V,)).to(dtype)              # many ties: order by index
    a, b = C.topk_candidates(x, k), T.topk_candidates(x, k)
    assert torch.equal(a[1], b[1])
    assert torch.equal(a[0], b[0])


@pytest.mark.parametrize("D", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", [0.0, 0.7])
def test_topk_rescore(D, dtype, tau):
    B, V, k = 8, 3001, 10
    base, refl = _logits(B, V, dtype, 0.3, seed=20), _logits(B, V, dtype, 0.0, seed=21)
    rm = torch.stack([_logits(B, V, dtype, 0.0, seed=22 + d) for d in range(D)], 1)
    rm[2, 0, :] = float("-inf")                               # no valid candidate
    base[3, 17] = float("nan")                                # bad row
    w = torch.rand(B, D) * 1.5
    t = torch.full((B,), tau)
    rng = _rng(B, 4)
    a, b = C.topk_rescore(base, rm, refl, k, w, t, rng), T.topk_rescore(base, rm, refl, k, w, t, rng)
    assert torch.equal(a[1], b[1])
    assert a[0][[2, 3]].tolist() == [-1, -1]
    _assert_same_tokens(a[0], b[0], a[2] if tau == 0 else None)
    torch.testing.assert_close(a[2], b[2], rtol=1e-5, atol=1e-4, equal_nan=True)


@pytest.mark.parametrize("M", [1, 4])
@pytest.mark.parametrize("tau", [0.0, 1.3])
def test_rescore_candidates(M, tau):
    B, k, V = 16, 10, 50000
    g = torch.Generator().manual_seed(M)
    bt = torch.randn(B, k, generator=g)
    bt[0, :5] = float("-inf")
    rw = torch.randn(B, k, generator=g)
    cand = torch.randint(0, V, (B, k), generator=g)
    lam = torch.rand(B, M, generator=g) * 2
    bt[1] = float("-inf")                                     # no finite base term
    rw[2, 3] = float("nan")                                   # bad reward
    t, rng = torch.full((B,), tau), _rng(B, 5)
    a = C.rescore_candidates(bt, rw, cand, lam, t, rng, V)
    b = T.rescore_candidates(bt, rw, cand, lam, t, rng, V)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert a[0][1] == -1 and a[0][2] == -1


def test_sampler_distribution():
    """Many seeds on a known distribution: the histogram matches softmax(z/τ) (chi-square, fixed seeds)."""
    V, N = 12, 60000
    z = torch.linspace(-2.0, 2.0, V)
    zp = z.expand(N, V).contiguous()
    w, t, k, p, _ = _params(N, V, 0.8, 0, 1.0, w=1.0)
    rng = torch.stack([torch.arange(N) * 7919 + 13, torch.zeros(N, dtype=torch.long)], 1)
    tok, _ = C.guided_sample(zp, None, w, t, k, p, rng)
    counts = torch.bincount(tok, minlength=V).double()
    expected = torch.softmax(z.double() / 0.8, 0) * N
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 40.0, chi2                                   # 11 dof: p ~ 3e-5
    cos = torch.nn.functional.cosine_similarity(counts, expected, dim=0)
    assert cos > 0.999
    # filtered: never outside the top-k / top-p set
    k3, p5 = torch.full((N,), 3), torch.full((N,), 0.5)
    tok, _ = C.guided_sample(zp, None, w, t, k3, p, rng)
    assert set(tok.unique().tolist()) <= {9, 10, 11}
    tok, _ = C.guided_sample(zp, None, w, t, k, p5, rng)
    allowed = ref.sampling.topp_mask((z / 0.8)[None], torch.tensor([0.5]))[0].nonzero().flatten().tolist()
    assert set(tok.unique().tolist()) <= set(allowed)


def test_masked_tokens_never_drawn():
    B, V = 2000, 64
    x = torch.randn(B, V)
    x[:, ::2] = float("-inf")
    w, t, k, p, rng = _params(B, V, 5.0, 0, 1.0, w=1.0)
    tok, _ = C.guided_sample(x, None, w, t, k, p, rng)
    assert (tok % 2 == 1).all()


def test_public_api_with_cpp_backend():
    zp, zb = torch.randn(4, 3000), torch.randn(4, 3000)
    with pyalign.backends.use("cpp"):
        assert pyalign.backends.default_name("cpu") == "cpp"
        t1, lp1 = pyalign.guided_sample(zp, zb, weight=pyalign.amulet_weight(), temperature=0.7, top_k=50,
                                         top_p=0.9, seed=1234)
        lpf = pyalign.guided_logprobs(zp, zb, 2.0)
        cand = pyalign.topk_candidates(zp, 10)
        tok = pyalign.topk_rescore(zp, zb, zb, 10, weight=1.0, temperature=0.0)
    with pyalign.backends.use("torch"):
        t2, lp2 = pyalign.guided_sample(zp, zb, weight=pyalign.amulet_weight(), temperature=0.7, top_k=50,
                                         top_p=0.9, seed=1234)
        assert torch.equal(tok, pyalign.topk_rescore(zp, zb, zb, 10, weight=1.0, temperature=0.0))
        assert torch.equal(cand[1], pyalign.topk_candidates(zp, 10)[1])
        torch.testing.assert_close(lpf, pyalign.guided_logprobs(zp, zb, 2.0), rtol=1e-5, atol=1e-4)
    assert torch.equal(t1, t2)
    torch.testing.assert_close(lp1, lp2, rtol=1e-5, atol=1e-4)


def test_opcheck_with_cpp_backend():
    B, V = 3, 257
    zp, zb = torch.randn(B, V), torch.randn(B, V)
    w, t, k, p, rng = _params(B, V, 0.7, 5, 0.9)
    with pyalign.backends.use("cpp"):
        torch.library.opcheck(torch.ops.pyalign.guided_sample.default, (zp, zb, w, t, k, p, rng))
        torch.library.opcheck(torch.ops.pyalign.guided_logprobs.default, (zp, zb, w))
        torch.library.opcheck(torch.ops.pyalign.topk_candidates.default, (zp, 7))
        torch.library.opcheck(torch.ops.pyalign.topk_rescore.default,
                              (zp, zb[:, None, :].contiguous(), zb, 7, torch.ones(B, 1), t, rng))
        torch.library.opcheck(torch.ops.pyalign.rescore_candidates.default,
                              (torch.randn(B, 5), torch.randn(B, 5), torch.randint(0, V, (B, 5)), torch.rand(B, 2),
                               t, rng, V))


def test_direct_pyalign_C_ops():
    zp = torch.randn(2, 100)
    w, t, k, p, rng = _params(2, 100, 0.0, 0, 1.0, w=1.0)
    tok, _ = torch.ops.pyalign_C.guided_sample(zp, None, w, t, k, p, rng)
    assert torch.equal(tok, zp.argmax(-1))


def test_torch_compile_smoke():
    def step(zp, zb, w, t, k, p, rng):
        tok, lp = torch.ops.pyalign.guided_sample(zp, zb, w, t, k, p, rng)
        return tok + 0, lp * 1.0

    B, V = 2, 500
    zp, zb = torch.randn(B, V), torch.randn(B, V)
    args = (zp, zb) + _params(B, V, 0.0, 0, 1.0)
    with pyalign.backends.use("cpp"):
        compiled = torch.compile(step, backend="eager", fullgraph=True)
        tok, _ = compiled(*args)
    assert torch.equal(tok, T.guided_sample(*args)[0])


# ---------------------------------------------------------------- shared argument preparation (op_args.h)
def _empty_batch_args(V=50, k=5, D=2, M=3):
    B = 0
    f, i = torch.float32, torch.int64
    z = torch.randn(B, V)
    return {
        "guided_sample": (z, z.clone(), torch.zeros(B), torch.zeros(B), torch.zeros(B, dtype=i), torch.ones(B),
                          torch.zeros(B, 2, dtype=i)),
        "guided_logprobs": (z, None, torch.zeros(B)),
        "topk_candidates": (z, k),
        "topk_rescore": (z, torch.randn(B, D, V), z.clone(), k, torch.zeros(B, D), torch.zeros(B),
                         torch.zeros(B, 2, dtype=i)),
        "rescore_candidates": (torch.zeros(B, k, dtype=f), torch.zeros(B, k), torch.zeros(B, k, dtype=i),
                               torch.zeros(B, M), torch.zeros(B), torch.zeros(B, 2, dtype=i), V),
    }


@pytest.mark.parametrize("op", ["guided_sample", "guided_logprobs", "topk_candidates", "topk_rescore",
                                "rescore_candidates"])
def test_empty_batch_returns_empty_outputs(op):
    """B = 0: empty outputs with the shapes and dtypes of the op's fake kernel (pyalign/ops/), no crash."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    args = _empty_batch_args()[op]
    out = getattr(torch.ops.pyalign_C, op)(*args)
    out = out if isinstance(out, tuple) else (out,)
    with FakeTensorMode() as mode:
        fake_args = tuple(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args)
        want = getattr(torch.ops.pyalign, op)(*fake_args)
    want = want if isinstance(want, tuple) else (want,)
    assert len(out) == len(want)
    for o, w in zip(out, want):
        assert o.shape == w.shape and o.dtype == w.dtype and o.device.type == "cpu", (op, o.shape, w.shape)
        assert o.numel() == 0
    via_backend = getattr(C, op)(*args)                            # through the backend adapter too
    via_backend = via_backend if isinstance(via_backend, tuple) else (via_backend,)
    assert [o.shape for o in via_backend] == [o.shape for o in out]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", [0.0, 0.7])
def test_topk_rescore_without_reward_models(dtype, tau):
    """D = 0 (no reward terms): score_j = base_j exactly (bit-identical to the reference); a row is still bad
    when base or ref is NaN/+inf, and candidates that are -inf in ref are not valid."""
    B, V, k = 6, 2003, 8
    base, refl = _logits(B, V, dtype, 0.3, seed=31), _logits(B, V, dtype, 0.0, seed=32)
    rm = torch.empty(B, 0, V, dtype=dtype)
    refl[4, :] = float("-inf")                                # no valid candidate
    base[5, 3] = float("nan")                                 # bad row
    w, t, rng = torch.empty(B, 0), torch.full((B,), tau), _rng(B, 6)
    a = C.topk_rescore(base, rm, refl, k, w, t, rng)
    b = T.topk_rescore(base, rm, refl, k, w, t, rng)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    torch.testing.assert_close(a[2], b[2], rtol=0, atol=0, equal_nan=True)
    assert a[0][[4, 5]].tolist() == [-1, -1]
    good = [0, 1, 2, 3]
    r_tok, r_cand, r_score = ref.topk_rescore(base[good], rm[good], refl[good], k, w[good], t[good], rng[good])
    assert torch.equal(a[0][good], r_tok) and torch.equal(a[1][good], r_cand)
    assert torch.equal(a[2][good], r_score)
    assert torch.equal(a[2][good], base[good].float().gather(-1, a[1][good]))


def test_bad_arguments_name_the_argument_and_the_fix():
    B, V = 3, 40
    zp = torch.randn(B, V)
    w, t, k, p, rng = _params(B, V, 0.7, 0, 1.0)
    G = torch.ops.pyalign_C
    with pytest.raises(RuntimeError, match=r"guided_sample: weight must have 3 entries \(one guidance weight"):
        G.guided_sample(zp, None, torch.ones(2), t, k, p, rng)
    with pytest.raises(RuntimeError, match=r"guided_sample: rng must have 6 entries \(\[B, 2\]"):
        G.guided_sample(zp, None, w, t, k, p, rng[:, :1])
    with pytest.raises(RuntimeError, match="guided_logprobs: logits_base must have the shape of logits_pref"):
        G.guided_logprobs(zp, torch.randn(B, V + 1), w)
    with pytest.raises(RuntimeError, match=r"logits_base has dtype .*Half.* cast both to one dtype"):
        G.guided_logprobs(zp, zp.half(), w)
    with pytest.raises(RuntimeError, match=r"guided_logprobs: logits_pref has dtype Int.*cast it with \.float\(\)"):
        G.guided_logprobs(zp.int(), None, w)
    with pytest.raises(RuntimeError, match=r"guided_logprobs: logits_pref must be \[B, V\], got shape \[3, 40, 1\]"):
        G.guided_logprobs(zp[..., None], None, w)
    with pytest.raises(RuntimeError, match=r"guided_sample: logits_pref has an empty vocabulary"):
        G.guided_sample(zp[:, :0], None, w, t, k, p, rng)
    with pytest.raises(RuntimeError, match=r"topk_candidates: k must be in \[1, V\] = \[1, 40\], got 41"):
        G.topk_candidates(zp, V + 1)
    with pytest.raises(RuntimeError, match=r"topk_rescore: rm_logits must be \[B, D, V\] = \[3, D, 40\]"):
        G.topk_rescore(zp, torch.randn(B, 2, V - 1), zp, 4, torch.ones(B, 2), t, rng)
    with pytest.raises(RuntimeError, match=r"topk_rescore: weight must have 6 entries \(\[B, D\]"):
        G.topk_rescore(zp, torch.randn(B, 2, V), zp, 4, torch.ones(B), t, rng)
    with pytest.raises(RuntimeError, match=r"rescore_candidates: lambdas must be \[B, M\] with B = 3 and M >= 1"):
        G.rescore_candidates(torch.randn(B, 4), torch.randn(B, 4), torch.zeros(B, 4, dtype=torch.long),
                             torch.ones(B, 0), t, rng, V)
    with pytest.raises(RuntimeError, match=r"rescore_candidates: vocab_size must be >= 1"):
        G.rescore_candidates(torch.randn(B, 4), torch.randn(B, 4), torch.zeros(B, 4, dtype=torch.long),
                             torch.ones(B, 2), t, rng, 0)


# ---------------------------------------------------------------- a backend that cannot load says why, once
FALLBACK_SCRIPT = r"""
import json, warnings
import torch
import pyalign
from pyalign import backends
x = torch.randn(2, 50)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with backends.use("torch"):                                # an explicit choice: nothing to warn about
        torch.ops.pyalign.topk_candidates(x, 3)
    quiet = len(caught)
    for _ in range(3):                                         # automatic choice, three calls: one warning
        torch.ops.pyalign.topk_candidates(x, 3)
    default = backends.default_name("cpu")
print(json.dumps({"quiet": quiet, "default": default, "status": backends.status(),
                  "warnings": [(w.category.__name__, str(w.message)) for w in caught]}))
"""


def test_failed_cpp_build_warns_once_and_status_says_why(tmp_path):
    """PYALIGN_CSRC pointing at an empty folder makes the cpp build fail: CPU ops fall back to torch with one
    BackendFallbackWarning naming the backend, the reason and the fix; ``status()`` reports the reason."""
    import json
    import os
    import subprocess
    import sys
    empty = tmp_path / "no_sources"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYALIGN_BACKEND"}
    env["PYALIGN_CSRC"] = str(empty)
    res = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["quiet"] == 0 and out["default"] == "torch"
    fallback = [m for cat, m in out["warnings"] if cat == "BackendFallbackWarning"]
    assert len(fallback) == 1, out["warnings"]
    msg = fallback[0]
    assert "the cpp backend is unavailable" in msg and "run on the torch backend" in msg
    assert f"PYALIGN_CSRC={empty} holds no pyalign C++ sources" in msg            # the reason
    assert "Fix:" in msg and "ninja" in msg and "PYALIGN_BACKEND=torch" in msg      # the fix
    status = out["status"]
    assert status["torch"] == "ok" and set(status) == set(pyalign.backends.NAMES)
    assert "BuildError" in status["cpp"] and "holds no pyalign C++ sources" in status["cpp"]


def test_status_reports_the_loaded_cpp_backend():
    status = pyalign.backends.status()
    assert status["cpp"] == "ok" and status["torch"] == "ok"
    assert all(isinstance(v, str) and v for v in status.values())
