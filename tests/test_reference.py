"""The reference math: Amulet's collapse equals the paper's literal loop; Philox; guidance; masking."""
from __future__ import annotations

import math
import random

import pytest
import torch

import pyalign
from pyalign.reference import amulet_iterative, guided_logprobs, philox4x32_10, uniform


def test_amulet_weight_official_defaults():
    assert pyalign.amulet_weight(60, 2.0, 2.0, 10.0) == pytest.approx(5.6487, abs=5e-5)
    assert pyalign.amulet_weight(1, 2.0, 2.0, 10.0) == pytest.approx((20 + 20 + 1) / 21)


def test_amulet_weight_limits():
    # λ > α converges to λ/(λ−α); λ = α grows like ln T.
    assert pyalign.amulet_weight(20000, 1.0, 3.0, 10.0) == pytest.approx(1.5, rel=1e-3)
    a1, a2 = pyalign.amulet_weight(1000, 2.0, 2.0, 10.0), pyalign.amulet_weight(10000, 2.0, 2.0, 10.0)
    assert a2 - a1 == pytest.approx(math.log(10.0), rel=0.05)
    assert pyalign.amulet_weight(50, 0.0, 2.0, 10.0) == pytest.approx(1.0)   # α = 0: plain preference decoding


def _random_hyper(rng: random.Random):
    return rng.choice([1, 2, 3, 7, 60, 200]), rng.uniform(0, 4), rng.uniform(0.05, 5), rng.uniform(0.1, 50)


@pytest.mark.parametrize("case", range(24))
def test_collapse_equals_literal_loop_fp64(case):
    rng = random.Random(case)
    T, alpha, lam, eta = _random_hyper(rng)
    g = torch.Generator().manual_seed(case)
    zp = torch.randn(3, 257, generator=g, dtype=torch.float64) * rng.choice([1, 5])
    zb = torch.randn(3, 257, generator=g, dtype=torch.float64) * rng.choice([1, 5])
    loop = amulet_iterative(zp, zb, T, alpha, lam, eta)
    A = pyalign.amulet_weight(T, alpha, lam, eta)
    collapsed = guided_logprobs(zp, zb, torch.full((3,), A, dtype=torch.float64))
    torch.testing.assert_close(loop, collapsed, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("T", [1, 60, 1000])
def test_collapse_equals_literal_loop_fp32(T):
    g = torch.Generator().manual_seed(T)
    zp, zb = torch.randn(4, 1000, generator=g) * 3, torch.randn(4, 1000, generator=g) * 3
    loop = amulet_iterative(zp, zb, T, 2.0, 2.0, 10.0)
    fused = pyalign.guided_logprobs(zp, zb, pyalign.amulet_weight(T, 2.0, 2.0, 10.0))
    torch.testing.assert_close(loop, fused, rtol=1e-4, atol=2e-4)
    assert torch.equal(loop.argmax(-1), fused.argmax(-1))


def test_literal_loop_masks_either_context():
    zp, zb = torch.randn(2, 50, dtype=torch.float64), torch.randn(2, 50, dtype=torch.float64)
    zp[0, 3] = float("-inf")
    zb[1, 7] = float("-inf")       # the official loop turns this into +inf/NaN; we define it as masked
    loop = amulet_iterative(zp, zb, 60, 2.0, 2.0, 10.0)
    assert torch.isneginf(loop[0, 3]) and torch.isneginf(loop[1, 7])
    assert torch.isfinite(loop[0, :3]).all() and not torch.isnan(loop).any()
    collapsed = guided_logprobs(zp, zb, torch.full((2,), pyalign.amulet_weight(), dtype=torch.float64))
    torch.testing.assert_close(loop, collapsed, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("bad", [dict(T=0), dict(T=1.5), dict(eta=0.0), dict(lam=-1.0), dict(alpha=-0.1),
                                 dict(alpha=float("nan"))])
def test_amulet_hyper_validation(bad):
    kw = dict(T=60, alpha=2.0, lam=2.0, eta=10.0) | bad
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        pyalign.amulet_weight(**kw)


def test_philox_known_answers():
    # Random123 known-answer vectors for Philox4x32-10.
    assert [int(x) for x in philox4x32_10(0, 0, 0, 0, 0, 0)] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    m = 0xFFFFFFFF
    assert [int(x) for x in philox4x32_10(m, m, m, m, m, m)] == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    assert [int(x) for x in philox4x32_10(0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822,
                                          0x299F31D0)] == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


def test_uniform_strictly_inside_unit_interval_and_uniform():
    u = uniform(torch.tensor(12345), torch.tensor(0), torch.arange(200_000))
    assert float(u.min()) > 0.0 and float(u.max()) < 1.0
    hist = torch.histc(u, bins=20, min=0, max=1)
    expected = 200_000 / 20
    chi2 = float(((hist - expected) ** 2 / expected).sum())
    assert chi2 < 45.3          # χ²(19) 99.9 % quantile
    # extreme words map inside (0, 1): x0 = 0 and x0 = 2^32 − 1
    lo = (torch.tensor(0) >> 9).float() + 0.5
    assert float(lo * 2.0 ** -23) > 0 and float(((torch.tensor(2**32 - 1) >> 9).float() + 0.5) * 2.0 ** -23) < 1


def test_guidance_weight_one_is_pref_and_zero_is_base():
    zp, zb = torch.randn(2, 30), torch.randn(2, 30)
    torch.testing.assert_close(pyalign.guided_logprobs(zp, zb, 1.0), torch.log_softmax(zp, -1))
    torch.testing.assert_close(pyalign.guided_logprobs(zp, zb, 0.0), torch.log_softmax(zb, -1))
    torch.testing.assert_close(pyalign.guided_logprobs(zp, None, 7.0), torch.log_softmax(zp, -1))
    w = torch.tensor([1.0, 3.0])
    out = pyalign.guided_logprobs(zp, zb, w)
    torch.testing.assert_close(out[1], torch.log_softmax(zb[1] + 3 * (zp[1] - zb[1]), -1))
