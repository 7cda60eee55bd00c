"""guided_sample / topk_rescore / rescore_candidates through the public API on the active CPU backend, and the
reference sampler's distribution. Backend-vs-reference comparisons live in test_<backend>_backend.py."""
from __future__ import annotations

import pytest
import torch

import pyalign
from pyalign import backends
from pyalign.reference import topk_mask, topp_mask

CPU_BACKENDS = [b for b in ("torch", "cpp") if backends.available(b)]


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    with backends.use(request.param):
        yield request.param


def _chi2_ok(counts: torch.Tensor, probs: torch.Tensor, n: int) -> bool:
    expected = probs * n
    keep = expected > 5
    chi2 = float((((counts - expected) ** 2) / expected.clamp(min=1e-9))[keep].sum())
    dof = int(keep.sum()) - 1
    return chi2 < dof + 5 * (2 * dof) ** 0.5      # ~ a 5-sigma bound: fixed seeds, no flakiness


def test_greedy_equals_argmax(backend):
    g = torch.Generator().manual_seed(0)
    zp, zb = torch.randn(16, 3000, generator=g), torch.randn(16, 3000, generator=g)
    tok, logp = pyalign.guided_sample(zp, zb, 2.5, temperature=0.0)
    z = zb + 2.5 * (zp - zb)
    assert torch.equal(tok, z.argmax(-1))
    torch.testing.assert_close(logp, torch.log_softmax(z, -1).gather(-1, tok[:, None])[:, 0])


def test_greedy_ties_go_to_smallest_index(backend):
    z = torch.zeros(2, 100)
    z[0, [7, 40, 90]] = 5.0
    z[1, :] = 1.0
    tok, _ = pyalign.guided_sample(z, None, temperature=0.0)
    assert tok.tolist() == [7, 0]


def test_sampling_distribution_matches_softmax(backend):
    V, n = 12, 20000
    g = torch.Generator().manual_seed(3)
    zp, zb = torch.randn(1, V, generator=g), torch.randn(1, V, generator=g)
    w, tau = 1.7, 0.8
    probs = torch.softmax((zb + w * (zp - zb)) / tau, -1)[0]
    tok, _ = pyalign.guided_sample(zp.expand(n, V), zb.expand(n, V), w, temperature=tau,
                                   seed=torch.arange(n), offset=5)
    counts = torch.bincount(tok, minlength=V).float()
    assert _chi2_ok(counts, probs, n)
    assert torch.nn.functional.cosine_similarity(counts, probs * n, dim=0) > 0.99


def test_masked_tokens_never_drawn(backend):
    V, n = 64, 4000
    zp, zb = torch.randn(1, V).expand(n, V).clone(), torch.randn(1, V).expand(n, V).clone()
    zp[:, ::2] = float("-inf")     # masked in the preference context
    zb[:, 1::4] = float("-inf")    # masked in the base context
    tok, logp = pyalign.guided_sample(zp, zb, 5.0, temperature=2.0, seed=torch.arange(n))
    assert (tok % 2 == 1).all() and (tok % 4 != 1).all()
    assert torch.isfinite(logp).all()


def test_single_allowed_token(backend):
    z = torch.full((3, 500), float("-inf"))
    z[:, 123] = -1e4
    tok, logp = pyalign.guided_sample(z, None, temperature=1.0, top_k=5, top_p=0.5, seed=1)
    assert tok.tolist() == [123] * 3 and torch.allclose(logp, torch.zeros(3))


def test_topk_topp_never_outside_set(backend):
    V, n = 40, 3000
    g = torch.Generator().manual_seed(11)
    z = torch.randn(1, V, generator=g) * 0.7
    tok, _ = pyalign.guided_sample(z.expand(n, V), None, temperature=1.3, top_k=6, seed=torch.arange(n))
    allowed = set(torch.topk(z[0], 6).indices.tolist())
    assert set(tok.tolist()) <= allowed and len(set(tok.tolist())) == 6
    tok, _ = pyalign.guided_sample(z.expand(n, V), None, temperature=1.0, top_p=0.6, seed=torch.arange(n))
    keep = topp_mask(z, torch.tensor([0.6]))[0]
    assert int(keep.sum()) >= 3 and keep[tok].all()
    probs = torch.softmax(z[0].masked_fill(~keep, float("-inf")), -1)
    assert _chi2_ok(torch.bincount(tok, minlength=V).float(), probs, n)


def test_seeded_runs_reproduce_per_row(backend):
    zp, zb = torch.randn(5, 800), torch.randn(5, 800)
    a, _ = pyalign.guided_sample(zp, zb, 2.0, temperature=1.0, generator=torch.Generator().manual_seed(7))
    b, _ = pyalign.guided_sample(zp, zb, 2.0, temperature=1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    seeds = torch.tensor([10, 11, 12, 13, 14])
    full, _ = pyalign.guided_sample(zp, zb, 2.0, temperature=1.0, seed=seeds, offset=3)
    for r in range(5):   # a row's draw does not depend on the rest of the batch
        one, _ = pyalign.guided_sample(zp[r:r + 1], zb[r:r + 1], 2.0, temperature=1.0, seed=seeds[r:r + 1], offset=3)
        assert one.item() == full[r].item()


def test_scalar_seed_gives_rows_independent_noise(backend):
    n, V = 2000, 8
    z = torch.zeros(n, V)                      # uniform rows: identical noise would give one token everywhere
    tok, _ = pyalign.guided_sample(z, None, temperature=1.0, seed=123)
    counts = torch.bincount(tok, minlength=V).float()
    assert _chi2_ok(counts, torch.full((V,), 1.0 / V), n)
    again, _ = pyalign.guided_sample(z, None, temperature=1.0, seed=123)
    assert torch.equal(tok, again)


def test_topk_mask_ties_and_topp_definition():
    s = torch.tensor([[3.0, 1.0, 3.0, 2.0, 0.0]])
    assert topk_mask(s, torch.tensor([1])).tolist() == [[True, False, True, False, False]]
    assert topk_mask(s, torch.tensor([3])).tolist() == [[True, False, True, True, False]]
    q = torch.softmax(s, -1)[0]
    keep = topp_mask(s, torch.tensor([float(q[0]) + 1e-6]))[0]
    assert keep.tolist() == [True, False, True, False, False]     # tie group kept whole


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=-1.0), "temperature"), (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"),
    (dict(top_k=-2), "top_k"), (dict(weight=torch.ones(3)), "weight"), (dict(weight=float("nan")), "weight"),
])
def test_bad_sampling_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pyalign.guided_sample(torch.randn(2, 10), torch.randn(2, 10), **kwargs)


def test_bad_logits(backend):
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        pyalign.guided_sample(torch.randn(2, 10), torch.randn(2, 11))
    with pytest.raises(ValueError, match="shape"):
        pyalign.guided_sample(torch.randn(2, 3, 10))
    with pytest.raises(ValueError, match="empty batch"):
        pyalign.guided_sample(torch.randn(0, 10))
    with pytest.raises(TypeError, match="dtype"):
        pyalign.guided_sample(torch.randn(2, 10), torch.randn(2, 10).half())
    with pytest.raises(TypeError, match="float32"):
        pyalign.guided_sample(torch.randint(0, 5, (2, 10)))
    z = torch.randn(2, 10)
    z[1, 4] = float("nan")
    with pytest.raises(ValueError, match="logits_pref contains NaN.*row 1"):
        pyalign.guided_sample(z, torch.randn(2, 10))
    with pytest.raises(ValueError, match="logits_base contains NaN"):
        pyalign.guided_logprobs(torch.randn(2, 10), z)
    z = torch.randn(2, 10)
    z[0] = float("-inf")
    with pytest.raises(ValueError, match="row 0 .*-inf"):
        pyalign.guided_sample(z, None)


def test_topk_rescore_matches_hand_computation(backend):
    base = torch.tensor([[0.0, 5.0, 4.0, 3.0, -1.0, 2.0]])
    rm = torch.tensor([[0.0, 0.0, 3.0, 0.0, 9.0, 1.0]])
    ref = torch.zeros(1, 6)
    tok, cand, scores = pyalign.topk_rescore(base, rm, ref, k=3, weight=1.0, return_details=True)
    assert cand.tolist() == [[1, 2, 3]]
    lsm = torch.log_softmax(torch.tensor([0.0, 3.0, 0.0]), -1) - torch.log_softmax(torch.zeros(3), -1)
    torch.testing.assert_close(scores[0], torch.tensor([5.0, 4.0, 3.0]) + lsm)
    assert tok.item() == 2
    assert pyalign.topk_rescore(base, rm, ref, k=3, weight=0.0).item() == 1
    with pytest.raises(ValueError, match="k must be between"):
        pyalign.topk_rescore(base, rm, ref, k=7)
    with pytest.raises(ValueError, match="vocabularies"):
        pyalign.topk_rescore(base, torch.zeros(1, 5), ref, k=2)


def test_rescore_candidates_panda_argmax_over_lambda(backend):
    base_terms = torch.tensor([[0.0, -0.5, -3.0]])
    rewards = torch.tensor([[0.0, 1.0, 2.0]])
    cand = torch.tensor([[10, 20, 30]])
    tok, pos, lam = pyalign.rescore_candidates(base_terms, rewards, cand, [0.0, 1.0, 2.0], vocab_size=50)
    # scores: λ=0 → [0, -.5, -3]; λ=1 → [0, .5, -1]; λ=2 → [0, 1.5, 1]: best (λ=2, j=1)
    assert (tok.item(), pos.item(), lam.item()) == (20, 1, 2)
