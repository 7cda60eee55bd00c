"""vLLM's multiprocess engine (the processor runs in the engine-core process) with concurrent arrivals through
``AsyncLLM``: pairs submitted one coroutine at a time, staggered, with an odd ``max_num_seqs``. Token ids equal
pyalign's HF path. The only test that starts the multiprocess engine (30-40 s)."""
from __future__ import annotations

import asyncio
import os

import pytest

from pyalign.integrations.vllm import agenerate, make_async_engine
from pyalign.methods import SamplingParams

from _vllm_helpers import QUESTIONS, hf_ids

MAX_NEW = 16                        # same questions and length as test_vllm_schedules: one HF reference


@pytest.fixture(scope="module")
def engine():
    old = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    try:
        eng = make_async_engine(max_model_len=512, enforce_eager=True, max_num_seqs=5, seed=0)
    finally:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = old if old is not None else "0"
    yield eng
    eng.shutdown()


def test_concurrent_arrivals_in_the_multiprocess_engine(engine, hf_model):
    questions = QUESTIONS
    assert "MP" in type(engine.engine_core).__name__     # the engine core runs in its own process

    async def one(i, q):
        await asyncio.sleep(0.03 * i)                  # arrivals spread over several engine steps
        return await agenerate(engine, q, "concise", "amulet", sampling=SamplingParams(max_new_tokens=MAX_NEW))

    async def main():
        return await asyncio.gather(*(one(i, q) for i, q in enumerate(questions)))

    results = asyncio.run(main())
    assert [r.token_ids for r in results] == hf_ids(hf_model, questions, "concise", "amulet", MAX_NEW)
    print(f"[vllm async mp] rounds per pair {[r.timings['rounds'] for r in results]}")
