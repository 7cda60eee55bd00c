"""GPU tests of the CUDA C++ backend against the PyTorch reference (on the GPU), the CPU C++ backend (the same
token for the same seed) and the *compiled* Triton backend. Skipped without a CUDA device.

Run in its own pytest process without TRITON_INTERPRET (tests/test_triton_backend.py sets it at import; the
Triton comparisons here are skipped when it is set): ``scripts/gpu_check.sh`` does that.

What each test proves:
- exact tokens (and close log-probs) for unfiltered split rows, greedy rows, top-k / top-p / both, per-row
  mixtures, ties (bf16 without a base context, constant rows), masked rows, V up to 262 144, fp32/bf16/fp16,
  candidate-path corner cases that must take the exact fallback (wide nuclei, top-k concentrated in one block,
  k > the candidate budget);
- the Gumbel noise: Philox bits on the GPU equal the CPU's, and Gumbel-max tokens over flat logits equal the
  argmax of the reference noise for every seed;
- empty batches (B = 0), log-probs over B > 65 535 rows, topk_rescore with D = 0;
- CUDA-graph capture with >= 3 replays on changed inputs, two streams at once;
- the sampler's distribution (chi-square over many independent draws, filtered and unfiltered).
"""
from __future__ import annotations

import math
import os

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]

from pyalign.backends import torch_backend as TB  # noqa: E402
from pyalign.reference import philox as ref_philox  # noqa: E402

DEV = "cuda"
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-2, torch.float16: 5e-2}


@pytest.fixture(scope="module")
def CB():
    """The CUDA C++ backend: on a GPU machine with nvcc (or an installed build) it must load, not skip."""
    from pyalign.backends import _build
    if _build.nvcc_path() is None and _build._installed_library() is None:
        pytest.skip("no nvcc and no installed build: the CUDA C++ backend cannot exist here")
    from pyalign.backends import cuda_backend
    return cuda_backend


@pytest.fixture(scope="module")
def CPP():
    from pyalign.backends import cpp_backend
    return cpp_backend


@pytest.fixture(scope="module")
def KB():
    """The Triton backend, compiled (never the interpreter)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET=1 in this process: run this file alone to test compiled Triton kernels")
    pytest.importorskip("triton")
    from pyalign.backends import triton_backend
    return triton_backend


def _rng(B, base=0, device=DEV):
    b = torch.arange(B, dtype=torch.int64)
    return torch.stack([b * 7919 + 17 + base * 104729, b * 3 + base], dim=1).to(device)


def _logits(B, V, dtype, gen, scale=3.0, mask_frac=0.0, strided=False):
    x = torch.randn(B, 3 if strided else 1, V, generator=gen) * scale
    if mask_frac > 0:
        m = torch.rand(x.shape, generator=gen) < mask_frac
        m[..., 0] = False
        x = x.masked_fill(m, float("-inf"))
    x = x.to(dtype).to(DEV)
    return x[:, 1, :] if strided else x[:, 0, :].contiguous()


def _params(B, gen, mode, V):
    """(w, τ, k, p) for a mode: greedy, sample, topk, topp, topk_topp, mixed (per-row mixture)."""
    w = (torch.rand(B, generator=gen) * 6 - 1)
    tau = torch.full((B,), 0.8)
    k = torch.zeros(B, dtype=torch.int64)
    p = torch.ones(B)
    if mode == "greedy":
        tau.zero_()
    elif mode == "topk":
        k.fill_(50)
    elif mode == "topp":
        p.fill_(0.9)
    elif mode == "topk_topp":
        k.fill_(50)
        p.fill_(0.9)
    elif mode == "mixed":
        r = torch.rand(B, generator=gen)
        tau = torch.where(r < 0.2, 0.0, torch.rand(B, generator=gen) * 1.5 + 0.2)
        k = torch.where(torch.rand(B, generator=gen) < 0.5, torch.randint(1, 300, (B,), generator=gen), 0)
        p = torch.where(torch.rand(B, generator=gen) < 0.5, torch.rand(B, generator=gen) * 0.9 + 0.05, 1.0)
    return w.to(DEV), tau.to(DEV), k.to(DEV), p.float().to(DEV)


def _close(a, b, tol):
    nan_a, nan_b = torch.isnan(a), torch.isnan(b)
    assert torch.equal(nan_a, nan_b)
    torch.testing.assert_close(a[~nan_a], b[~nan_b], rtol=tol, atol=tol * 10)


def _assert_same_tokens_as_reference(tok, ref_tok, args, what):
    bad = (tok != ref_tok).nonzero().flatten().tolist()
    if bad:
        # The reference accumulates the top-p mass in fp32 (torch.cumsum), the kernels in fp64: a row whose
        # nucleus boundary sits within fp32 rounding may differ. Accept a mismatch only if nudging that row's p
        # by ±1e-5 (relative) makes the reference draw the kernel's token.
        p = args[5]
        for sign in (1.0, -1.0):
            nudged = list(args)
            nudged[5] = torch.where(p < 1, (p * (1 + sign * 1e-5)).clamp(max=0.99999), p)
            alt = TB.guided_sample(*nudged)[0]
            bad = [r for r in bad if alt[r] != tok[r]]
    assert not bad, f"{what}: != reference at rows {bad[:10]}: {tok[bad[:10]].tolist()} vs {ref_tok[bad[:10]].tolist()}"


def _check_sample(CB, args, tol, CPP=None, KB=None, what=""):
    """CUDA tokens == torch reference tokens (on GPU) == CPU C++ tokens (bit-exact), compiled Triton tokens ==
    reference tokens; log-probs close."""
    tok, lp = CB.guided_sample(*args)
    ref_tok, ref_lp = TB.guided_sample(*args)
    _assert_same_tokens_as_reference(tok, ref_tok, args, f"CUDA {what}")
    _close(lp, ref_lp, tol)
    if CPP is not None:
        cpu = [a.cpu() if isinstance(a, torch.Tensor) else a for a in args]
        c_tok, c_lp = CPP.guided_sample(*cpu)
        diff = (c_tok != tok.cpu()).nonzero().flatten().tolist()
        assert not diff, f"{what}: CUDA != CPU C++ at rows {diff[:10]}"
        _close(c_lp, lp.cpu(), tol)
    if KB is not None:
        k_tok, k_lp = KB.guided_sample(*args)
        _assert_same_tokens_as_reference(k_tok, ref_tok, args, f"Triton {what}")
        _close(k_lp, ref_lp, tol)
    return tok, lp


# ---------------------------------------------------------------------------------------------- exact tokens

@pytest.mark.parametrize("mode", ["greedy", "sample", "topk", "topp", "topk_topp", "mixed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("B,V", [(1, 7), (8, 1000), (64, 32000), (8, 128256), (4, 262144)])
def test_guided_sample_all_backends(CB, CPP, KB, mode, dtype, B, V):
    g = torch.Generator().manual_seed(B * 7 + V)
    zp = _logits(B, V, dtype, g, strided=True)
    zb = _logits(B, V, dtype, g, mask_frac=0.1)
    w, tau, k, p = _params(B, g, mode, V)
    for base in (zb, None):
        _check_sample(CB, (zp, base, w, tau, k, p, _rng(B, V)), TOL[dtype], CPP, KB,
                      f"{mode} {dtype} B={B} V={V} base={base is not None}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_filtered_peaked_logits_candidate_path(CB, CPP, KB, dtype):
    """LLM-like rows: a few hundred plausible tokens, the rest far below; top-p only and top-k + top-p."""
    g = torch.Generator().manual_seed(3)
    B, V = 64, 128256
    x = torch.randn(B, V, generator=g) * 2 - 8
    hot = torch.randint(0, V, (B, 300), generator=g)
    x.scatter_(1, hot, torch.randn(B, 300, generator=g) * 2 + 6)
    zp = x.to(dtype).to(DEV)
    ones = torch.ones(B, device=DEV)
    for k, p in ((0, 0.9), (0, 0.5), (50, 0.9), (20, 1.0), (1, 1.0), (0, 0.999)):
        kk = torch.full((B,), k, dtype=torch.int64, device=DEV)
        pp = torch.full((B,), p, device=DEV)
        for tau in (0.7, 1.3):
            t = torch.full((B,), tau, device=DEV)
            _check_sample(CB, (zp, None, ones, t, kk, pp, _rng(B, k)), TOL[dtype], CPP, KB, f"k={k} p={p} τ={tau}")


def test_filtered_adversarial_rows(CB, CPP, KB):
    """Ties at the threshold, constant rows, top-k concentrated in one block, wide nuclei, k past the candidate
    budget, nearly fully masked rows: each must match the reference exactly (the exact fallback included)."""
    V = 131072
    rows, ks, ps = [], [], []
    g = torch.Generator().manual_seed(11)
    rows.append(torch.zeros(V)); ks.append(5); ps.append(1.0)                          # all tied
    rows.append(torch.zeros(V)); ks.append(0); ps.append(0.3)                          # all tied, top-p
    rows.append(torch.arange(V, dtype=torch.float32) / V * 20); ks.append(200); ps.append(1.0)  # top-k in 1 block
    rows.append(torch.arange(V, dtype=torch.float32) / V * 20); ks.append(0); ps.append(0.9)
    rows.append(torch.randint(0, 4, (V,), generator=g).float()); ks.append(100); ps.append(1.0)  # 4 values
    rows.append(torch.randint(0, 4, (V,), generator=g).float()); ks.append(0); ps.append(0.5)
    rows.append(torch.randn(V, generator=g) * 0.5); ks.append(0); ps.append(0.9)      # nucleus ~ 100k tokens
    rows.append(torch.randn(V, generator=g) * 3); ks.append(2000); ps.append(0.95)    # k above the budget
    rows.append(torch.randn(V, generator=g) * 3); ks.append(V - 1); ps.append(1.0)
    rows.append(torch.randn(V, generator=g) * 3); ks.append(1); ps.append(0.5)
    r = torch.full((V,), float("-inf")); r[[5, 70000, 131071]] = torch.tensor([1.0, 1.0, 0.5])
    rows.append(r); ks.append(2); ps.append(0.6)                                       # 3 finite, tie
    r = torch.full((V,), float("-inf")); r[123] = 3.0
    rows.append(r); ks.append(0); ps.append(0.1)                                       # 1 finite
    x = torch.stack(rows)
    x[6:10] = x[6:10].to(torch.bfloat16).float()                                      # bf16 ties
    B = x.shape[0]
    args = (x.to(DEV), None, torch.ones(B, device=DEV), torch.full((B,), 0.9, device=DEV),
            torch.tensor(ks, dtype=torch.int64, device=DEV), torch.tensor(ps, device=DEV), _rng(B, 5))
    for trial in range(3):
        a = list(args)
        a[6] = _rng(B, 5 + trial)
        _check_sample(CB, tuple(a), 1e-5, CPP, KB, f"adversarial trial {trial}")


def test_bad_rows_give_minus_one(CB, KB):
    B, V = 6, 40000
    x = torch.randn(B, V, device=DEV)
    x[1, 3] = float("nan")
    x[2] = float("-inf")
    x[3, 39999] = float("inf")
    x[4, 17] = float("nan")
    for tau, k, p in ((0.0, 0, 1.0), (1.0, 0, 1.0), (1.0, 10, 1.0), (1.0, 0, 0.9)):
        args = (x, None, torch.ones(B, device=DEV), torch.full((B,), tau, device=DEV),
                torch.full((B,), k, dtype=torch.int64, device=DEV), torch.full((B,), p, device=DEV), _rng(B))
        for be in (CB, KB):
            tok, lp = be.guided_sample(*args)
            assert tok[[1, 2, 3, 4]].tolist() == [-1, -1, -1, -1], (be.__name__, tau, k, p)
            assert torch.isnan(lp[[1, 2, 3, 4]]).all()
            assert (tok[[0, 5]] >= 0).all()


# --------------------------------------------------------------------------------------------- Gumbel noise

def test_gumbel_noise_bits_and_gumbel_max(CB, KB):
    idx = torch.arange(300000, dtype=torch.int64)
    seed, off = torch.tensor(123456789123), torch.tensor(77)
    u_cpu = ref_philox.uniform(seed, off, idx)
    u_gpu = ref_philox.uniform(seed.to(DEV), off.to(DEV), idx.to(DEV))
    assert torch.equal(u_cpu, u_gpu.cpu())
    # flat logits: the Gumbel-max token is the argmax of the reference noise, for every seed
    B, V = 512, 5000
    rng = torch.stack([torch.arange(B) * 1000003 + 11, torch.arange(B) % 7], 1)
    noise = ref_philox.row_gumbel(rng, V)
    want = noise.argmax(-1)
    args = (torch.zeros(B, V, device=DEV), None, torch.ones(B, device=DEV), torch.ones(B, device=DEV),
            torch.zeros(B, dtype=torch.int64, device=DEV), torch.ones(B, device=DEV), rng.to(DEV))
    for be in (CB, KB):
        tok, _ = be.guided_sample(*args)
        assert torch.equal(tok.cpu(), want), be.__name__
    # filtered path, same noise: top-k = V - 1 over a constant row keeps everything
    a = list(args)
    a[4] = torch.full((B,), V - 1, dtype=torch.int64, device=DEV)
    tok, _ = CB.guided_sample(*a)
    assert torch.equal(tok.cpu(), want)


# -------------------------------------------------------------------------------------------- empty / large

def test_empty_batch_returns_empty_outputs(CB, KB):
    V, k = 1000, 8
    z = torch.empty(0, V, device=DEV)
    e = torch.empty(0, device=DEV)
    ei = torch.empty(0, dtype=torch.int64, device=DEV)
    rng = torch.empty(0, 2, dtype=torch.int64, device=DEV)
    for be in (CB,):
        tok, lp = be.guided_sample(z, None, e, e, ei, e, rng)
        assert tok.shape == (0,) and lp.shape == (0,) and tok.dtype == torch.int64
        tok, lp = be.guided_sample(z, z, e, e, ei, e, rng)
        assert tok.shape == (0,)
        assert be.guided_logprobs(z, None, e).shape == (0, V)
        vals, ids = be.topk_candidates(z, k)
        assert vals.shape == (0, k) and ids.shape == (0, k)
        tok, cand, sc = be.topk_rescore(z, torch.empty(0, 2, V, device=DEV), z, k, torch.empty(0, 2, device=DEV), e,
                                        rng)
        assert tok.shape == (0,) and cand.shape == (0, k) and sc.shape == (0, k)
        out = be.rescore_candidates(torch.empty(0, k, device=DEV), torch.empty(0, k, device=DEV),
                                    torch.empty(0, k, dtype=torch.int64, device=DEV), torch.empty(0, 3, device=DEV),
                                    e, rng, V)
        assert all(t.shape == (0,) for t in out)
    torch.cuda.synchronize()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_logprobs_more_than_65535_rows(CB, dtype):
    B, V = 70001, 96                                            # a flattened batch x sequence
    g = torch.Generator(device=DEV).manual_seed(0)
    zp = (torch.randn(B, V, device=DEV, generator=g) * 3).to(dtype)
    zb = (torch.randn(B, V, device=DEV, generator=g) * 3).to(dtype)
    w = torch.rand(B, device=DEV, generator=g) * 4
    out = CB.guided_logprobs(zp, zb, w)
    ref = TB.guided_logprobs(zp, zb, w)
    torch.testing.assert_close(out, ref, rtol=TOL[dtype], atol=TOL[dtype] * 10)
    tok, _ = CB.guided_sample(zp, zb, w, torch.zeros(B, device=DEV), torch.zeros(B, dtype=torch.int64, device=DEV),
                              torch.ones(B, device=DEV), _rng(B))
    assert torch.equal(tok, TB.guided_sample(zp, zb, w, torch.zeros(B, device=DEV),
                                             torch.zeros(B, dtype=torch.int64, device=DEV),
                                             torch.ones(B, device=DEV), _rng(B))[0])
    vals, ids = CB.topk_candidates(zp[:, :64], 4)
    rv, ri = TB.topk_candidates(zp[:, :64], 4)
    assert torch.equal(ids, ri) and torch.equal(vals, rv)


@pytest.mark.parametrize("tau", [0.0, 0.7])
def test_topk_rescore_without_reward_dimensions(CB, KB, tau):
    """D = 0: no reward terms, score_j = base logit of candidate j (pyalign/reference/rescore.py)."""
    g = torch.Generator(device=DEV).manual_seed(1)
    B, V, k = 16, 32000, 12
    base = torch.randn(B, V, device=DEV, generator=g) * 3
    ref = torch.randn(B, V, device=DEV, generator=g)
    rm = torch.empty(B, 0, V, device=DEV)
    w = torch.empty(B, 0, device=DEV)
    t = torch.full((B,), tau, device=DEV)
    tok, cand, sc = CB.topk_rescore(base, rm, ref, k, w, t, _rng(B))
    r_tok, r_cand, r_sc = TB.topk_rescore(base, rm, ref, k, w, t, _rng(B))
    assert torch.equal(cand, r_cand) and torch.equal(tok, r_tok)
    assert torch.equal(sc, base.gather(1, cand)) and torch.equal(sc, r_sc)
    k_tok, k_cand, k_sc = KB.topk_rescore(base, rm, ref, k, w, t, _rng(B))
    assert torch.equal(k_tok, tok) and torch.equal(k_cand, cand)


def test_topk_and_rescore_match_reference_and_triton(CB, KB):
    g = torch.Generator(device=DEV).manual_seed(2)
    B, V, k = 33, 50000, 10
    x = torch.randint(-3, 3, (B, V), device=DEV, generator=g).float()          # many ties: smaller index first
    x[:16] = torch.randn(16, V, device=DEV, generator=g)
    for be in (CB, KB):
        a, b = be.topk_candidates(x, k), TB.topk_candidates(x, k)
        assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0]), be.__name__
    rm = torch.randn(B, 3, V, device=DEV, generator=g)
    w = torch.rand(B, 3, device=DEV, generator=g)
    for tau in (0.0, 0.7):
        t = torch.full((B,), tau, device=DEV)
        ref = TB.topk_rescore(x, rm, x * 0.5, k, w, t, _rng(B))
        for be in (CB, KB):
            out = be.topk_rescore(x, rm, x * 0.5, k, w, t, _rng(B))
            assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1]), be.__name__
            torch.testing.assert_close(out[2], ref[2], rtol=1e-5, atol=1e-4, equal_nan=True)
    bt, rw = torch.randn(B, k, device=DEV, generator=g), torch.randn(B, k, device=DEV, generator=g)
    cand = torch.randint(0, V, (B, k), device=DEV, generator=g)
    lam = torch.rand(B, 4, device=DEV, generator=g)
    for tau in (0.0, 1.0):
        t = torch.full((B,), tau, device=DEV)
        ref = TB.rescore_candidates(bt, rw, cand, lam, t, _rng(B), V)
        for be in (CB, KB):
            for x1, y1 in zip(be.rescore_candidates(bt, rw, cand, lam, t, _rng(B), V), ref):
                assert torch.equal(x1, y1), be.__name__


# ----------------------------------------------------------------------------------- graphs and streams

@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_graph_replays_on_changed_inputs(CB, KB, backend):
    be = CB if backend == "cuda" else KB
    B, V = 16, 65536
    g = torch.Generator(device=DEV).manual_seed(4)
    zp = torch.randn(B, V, device=DEV, generator=g) * 3
    zb = torch.randn(B, V, device=DEV, generator=g) * 3
    w = torch.full((B,), 2.0, device=DEV)
    tau = torch.tensor([0.0, 0.8] * (B // 2), device=DEV)
    k = torch.tensor([0, 0, 40, 0] * (B // 4), dtype=torch.int64, device=DEV)
    p = torch.tensor([1.0, 1.0, 1.0, 0.9, 0.9, 1.0, 0.5, 1.0] * (B // 8), device=DEV)
    rng = _rng(B).clone()
    args = (zp, zb, w, tau, k, p, rng)
    for _ in range(2):                                       # warm-up: compile/allocate outside the capture
        be.guided_sample(*args)
        be.guided_logprobs(zp, zb, w)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out_tok, out_lp = be.guided_sample(*args)
        out_logp = be.guided_logprobs(zp, zb, w)
    for step in range(4):
        zp.copy_(torch.randn(B, V, device=DEV, generator=g) * 3)
        zb.copy_(torch.randn(B, V, device=DEV, generator=g) * 3)
        rng[:, 1] = step + 1
        graph.replay()
        torch.cuda.synchronize()
        ref_tok, ref_lp = TB.guided_sample(*args)
        assert torch.equal(out_tok, ref_tok), f"replay {step}"
        _close(out_lp, ref_lp, 1e-5)
        torch.testing.assert_close(out_logp, TB.guided_logprobs(zp, zb, w), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_two_streams_at_once(CB, KB, backend):
    be = CB if backend == "cuda" else KB
    B, V = 8, 128256
    g = torch.Generator(device=DEV).manual_seed(5)
    ins = []
    for s in range(2):
        zp = torch.randn(B, V, device=DEV, generator=g) * 3
        tau = torch.full((B,), 0.8, device=DEV)
        k = torch.full((B,), 50 if s else 0, dtype=torch.int64, device=DEV)
        p = torch.full((B,), 0.9 if s else 1.0, device=DEV)
        ins.append((zp, None, torch.ones(B, device=DEV), tau, k, p, _rng(B, s)))
    want = [TB.guided_sample(*a)[0] for a in ins]
    streams = [torch.cuda.Stream(), torch.cuda.Stream()]
    torch.cuda.synchronize()
    outs = [[], []]
    for _ in range(20):
        for s in range(2):
            with torch.cuda.stream(streams[s]):
                outs[s].append(be.guided_sample(*ins[s])[0])
    torch.cuda.synchronize()
    for s in range(2):
        for o in outs[s]:
            assert torch.equal(o, want[s])


# ------------------------------------------------------------------------------------------ distribution

def _chi2_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson chi-square goodness of fit (bins with expected < 5 merged into one)."""
    n = counts.sum().item()
    exp = probs * n
    small = exp < 5
    obs = torch.cat([counts[~small].double(), counts[small].double().sum().reshape(1)])
    ex = torch.cat([exp[~small], exp[small].sum().reshape(1)])
    keep = ex > 0
    assert torch.equal(obs[~keep], torch.zeros_like(obs[~keep])), "draws where the probability is 0"
    obs, ex = obs[keep], ex[keep]
    stat = ((obs - ex) ** 2 / ex).sum().item()
    dof = obs.numel() - 1
    # Wilson-Hilferty approximation of the chi-square upper tail
    z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


@pytest.mark.parametrize("k,p", [(0, 1.0), (10, 1.0), (0, 0.8), (10, 0.8)])
def test_sampler_distribution_chi_square(CB, k, p):
    """200k independent draws (distinct seeds) over a 64-token distribution embedded in a 32k vocabulary:
    frequencies fit the reference's filtered softmax, and nothing outside the kept set is drawn."""
    V, n_hot, B, reps = 32000, 64, 8192, 25
    g = torch.Generator().manual_seed(6)
    row = torch.full((V,), -30.0)
    hot = torch.randperm(V, generator=g)[:n_hot]
    row[hot] = torch.randn(n_hot, generator=g)
    tau = 0.9
    s = (row / tau)[None]
    from pyalign.reference.sampling import topk_mask, topp_mask
    keep = topk_mask(s, torch.tensor([k]))
    s = s.masked_fill(~keep, float("-inf"))
    keep = topp_mask(s, torch.tensor([p]))
    probs = torch.softmax(s.masked_fill(~keep, float("-inf")), -1)[0].double()
    x = row.to(DEV).expand(B, V)
    counts = torch.zeros(V, dtype=torch.int64, device=DEV)
    for r in range(reps):
        rng = torch.stack([torch.arange(B) * 2654435761 + r * 1000003 + 1, torch.full((B,), r)], 1).to(DEV)
        tok, _ = CB.guided_sample(x, None, torch.ones(B, device=DEV), torch.full((B,), tau, device=DEV),
                                  torch.full((B,), k, dtype=torch.int64, device=DEV), torch.full((B,), p, device=DEV),
                                  rng)
        counts += torch.bincount(tok, minlength=V)
    counts = counts.cpu()
    assert counts[probs == 0].sum() == 0
    pv = _chi2_pvalue(counts, probs)
    assert pv > 1e-4, f"chi-square p-value {pv:.2e}"
