"""pytest-benchmark for the Triton ops on a CUDA GPU (skipped elsewhere).

    pytest bench/bench_triton_ops.py --benchmark-only --benchmark-group-by=param:op,param:V

B ∈ {1, 8, 64, 256} × V ∈ {32000, 49152, 128256, 262144} × fp32/bf16, for each op: the Triton kernel,
the PyTorch eager reference backend and ``torch.compile`` of the reference. Timings are device times
(each round is synchronised); the GPU name is stored in the benchmark's extra_info.
"""
from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("Triton benchmarks need a CUDA GPU", allow_module_level=True)
triton = pytest.importorskip("triton")

from pyalign.backends import torch_backend as tb  # noqa: E402
from pyalign.backends import triton_backend as tk  # noqa: E402

BS = [1, 8, 64, 256]
VS = [32000, 49152, 128256, 262144]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
IMPLS = ["triton", "eager", "compile"]
_COMPILED: dict = {}


def _inputs(B, V, dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    zp = torch.randn(B, V, device="cuda", generator=g).mul_(3).to(dtype)
    zb = torch.randn(B, V, device="cuda", generator=g).mul_(3).to(dtype)
    rng = torch.stack([torch.arange(B, device="cuda") * 7919 + 1, torch.zeros(B, dtype=torch.int64, device="cuda")], 1)
    return zp, zb, rng


def _fn(impl, op):
    if impl == "triton":
        return getattr(tk, op)
    if impl == "eager":
        return getattr(tb, op)
    key = op
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(getattr(tb, op), dynamic=False)
    return _COMPILED[key]


def _run(benchmark, fn, args):
    def call():
        fn(*args)
        torch.cuda.synchronize()
    for _ in range(3):
        call()
    benchmark.extra_info["gpu"] = torch.cuda.get_device_name()
    benchmark.pedantic(call, rounds=30, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("V", VS)
@pytest.mark.parametrize("B", BS)
@pytest.mark.parametrize("mode", ["greedy", "sample", "topk_topp"])
def test_guided_sample(benchmark, mode, B, V, dt, impl):
    zp, zb, rng = _inputs(B, V, DTYPES[dt])
    w = torch.full((B,), 5.6487, device="cuda")
    tau = torch.full((B,), 0.0 if mode == "greedy" else 0.8, device="cuda")
    k = torch.full((B,), 50 if mode == "topk_topp" else 0, dtype=torch.int64, device="cuda")
    p = torch.full((B,), 0.9 if mode == "topk_topp" else 1.0, device="cuda")
    benchmark.group = f"guided_sample-{mode}-B{B}-V{V}-{dt}"
    _run(benchmark, _fn(impl, "guided_sample"), (zp, zb, w, tau, k, p, rng))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("V", VS)
@pytest.mark.parametrize("B", BS)
def test_guided_logprobs(benchmark, B, V, dt, impl):
    zp, zb, _ = _inputs(B, V, DTYPES[dt])
    w = torch.full((B,), 5.6487, device="cuda")
    benchmark.group = f"guided_logprobs-B{B}-V{V}-{dt}"
    _run(benchmark, _fn(impl, "guided_logprobs"), (zp, zb, w))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("V", VS)
@pytest.mark.parametrize("B", BS)
def test_topk_candidates(benchmark, B, V, dt, impl):
    zp, _, _ = _inputs(B, V, DTYPES[dt])
    benchmark.group = f"topk_candidates-B{B}-V{V}-{dt}"
    _run(benchmark, _fn(impl, "topk_candidates"), (zp, 10))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("V", VS)
@pytest.mark.parametrize("B", BS)
def test_topk_rescore(benchmark, B, V, dt, impl):
    zp, zb, rng = _inputs(B, V, DTYPES[dt])
    rm = zp[:, None, :]
    w = torch.ones(B, 1, device="cuda")
    tau = torch.zeros(B, device="cuda")
    benchmark.group = f"topk_rescore-B{B}-V{V}-{dt}"
    _run(benchmark, _fn(impl, "topk_rescore"), (zb, rm, zp, 10, w, tau, rng))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("B", BS)
def test_rescore_candidates(benchmark, B, impl):
    g = torch.Generator(device="cuda").manual_seed(0)
    k, M = 10, 4
    b = torch.randn(B, k, device="cuda", generator=g)
    r = torch.randn(B, k, device="cuda", generator=g)
    cand = torch.randint(0, 32000, (B, k), device="cuda", generator=g)
    lam = torch.rand(B, M, device="cuda", generator=g)
    tau = torch.full((B,), 0.7, device="cuda")
    rng = torch.stack([torch.arange(B, device="cuda"), torch.zeros(B, dtype=torch.int64, device="cuda")], 1)
    benchmark.group = f"rescore_candidates-B{B}"
    _run(benchmark, _fn(impl, "rescore_candidates"), (b, r, cand, lam, tau, rng, 32000))
