"""pytest-benchmark wrapper of the end-to-end decoding benchmark (default model; skipped if it cannot load).

    pytest bench/test_bench_e2e.py --benchmark-enable            # timings per method at batch 1 and 8
    pytest bench/test_bench_e2e.py --benchmark-enable -k "amulet or authors"

With the repository's default ``--benchmark-disable`` every case runs once, as a quick functional check.
The full table (tokens/s, ms/token, ratios, plot) comes from ``python bench/bench_e2e.py``.
"""
from __future__ import annotations

import os
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_e2e  # noqa: E402

TOKENS = int(os.environ.get("PYALIGN_BENCH_TOKENS", "8"))


@pytest.fixture(scope="module")
def model_tok():
    try:
        from pyalign.models import load_model
        model, tok = load_model()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"default model unavailable: {e}")
    return model, tok


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("method", list(bench_e2e.OURS))
def test_e2e_pyalign(benchmark, model_tok, method, batch):
    ok, why = bench_e2e.method_available(method)
    if not ok:
        pytest.skip(f"{method} not registered: {why}")
    model, tok = model_tok
    prompts = bench_e2e.load_prompts(batch)
    benchmark.extra_info.update(method=method, batch=batch, new_tokens=TOKENS)
    wall, lens, _ = benchmark.pedantic(bench_e2e.run_ours, args=(model, tok, method, prompts, TOKENS, "concise"),
                                       rounds=1, iterations=1)
    assert lens == [TOKENS] * batch
    benchmark.extra_info["tokens_per_s"] = sum(lens) / wall


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("name", list(bench_e2e.BASELINES))
def test_e2e_baseline(benchmark, model_tok, name, batch):
    model, tok = model_tok
    prompts = bench_e2e.load_prompts(batch)
    n = TOKENS
    if name == "authors_amulet":          # sequential and uncached: a few tokens of two prompts tell its rate
        prompts, n = prompts[:2], min(TOKENS, 2)
    benchmark.extra_info.update(method=name, batch=batch, new_tokens=n)
    wall, lens, _ = benchmark.pedantic(bench_e2e.run_baseline, args=(model, tok, name, prompts, n, "concise"),
                                       rounds=1, iterations=1)
    assert lens == [n] * len(prompts)
    benchmark.extra_info["tokens_per_s"] = sum(lens) / wall
