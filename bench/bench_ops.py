"""pytest-benchmark of the fused ops on CPU (cpp backend) against their PyTorch references.

    pytest bench/bench_ops.py --benchmark-only
"""
from __future__ import annotations

import pytest
import torch

import pyalign
from pyalign.reference.amulet import amulet_iterative

C = pytest.importorskip("pyalign.backends.cpp_backend")
V = 49152


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    zp, zb = torch.randn(8, V, generator=g) * 3, torch.randn(8, V, generator=g) * 3
    return zp, zb


def _params(B, tau, k=0, p=1.0):
    return (torch.full((B,), pyalign.amulet_weight()), torch.full((B,), tau), torch.full((B,), k, dtype=torch.long),
            torch.full((B,), p), pyalign.make_rng(B, "cpu", seed=1))


def test_greedy_fused_cpp(benchmark, data):
    zp, zb = data[0][:1], data[1][:1]
    benchmark(torch.ops.pyalign_C.guided_sample, zp, zb, *_params(1, 0.0))


def test_greedy_amulet_loop_reference(benchmark, data):
    zp, zb = data[0][:1], data[1][:1]
    benchmark(lambda: amulet_iterative(zp, zb, 60).argmax(-1))


def test_greedy_torch_eager(benchmark, data):
    zp, zb = data[0][:1], data[1][:1]
    A = pyalign.amulet_weight()
    benchmark(lambda: (zb + A * (zp - zb)).argmax(-1))


def test_sample_fused_cpp(benchmark, data):
    benchmark(torch.ops.pyalign_C.guided_sample, *data, *_params(8, 0.8))


def test_sample_torch_eager(benchmark, data):
    zp, zb = data
    A = pyalign.amulet_weight()
    benchmark(lambda: torch.multinomial(torch.softmax((zb + A * (zp - zb)) / 0.8, -1), 1))


def test_topk_rescore_cpp(benchmark, data):
    zp, zb = data
    benchmark(torch.ops.pyalign_C.topk_rescore, zp, zb[:, None], zb, 10, torch.ones(8, 1), torch.zeros(8),
              pyalign.make_rng(8, "cpu", seed=1))
