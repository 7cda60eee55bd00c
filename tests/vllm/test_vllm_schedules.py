"""Exactness under every schedule: each condition is forced with its own engine and the pairs' token ids are
compared with pyalign's HF path (default model, float32, greedy Amulet). Each test also checks that the
condition really broke lockstep (some pair was interrupted and resubmitted): otherwise it would prove nothing."""
from __future__ import annotations

import pytest

from pyalign.integrations.vllm import generate
from pyalign.methods import SamplingParams

from _vllm_helpers import QUESTIONS, hf_ids, make_test_llm, processor_stats, shutdown

MAX_NEW = 16
CONDITIONS = {
    # every context is longer than 64 tokens: every prefill is split into chunks
    "chunked_prefill": dict(max_num_batched_tokens=64, block_size=32, max_num_seqs=16),
    # ~300 tokens (9 blocks of 32) of KV cache for 16 requests of ~90 tokens each: requests are preempted and
    # resumed (the cache still holds max_model_len tokens, as vLLM requires)
    "preemption": dict(kv_cache_memory_bytes=14 * 2 ** 20, max_model_len=256, max_num_seqs=16, block_size=32),
    # an odd number of sequences: one member of some pair always waits without its partner
    "odd_max_num_seqs": dict(max_num_seqs=3),
}


@pytest.fixture(scope="module", params=list(CONDITIONS))
def engine(request):
    llm = make_test_llm(**CONDITIONS[request.param])
    scheduler = llm.llm_engine.engine_core.engine_core.scheduler
    preempt = scheduler._preempt_request
    llm.preemptions = 0

    def counting(*a, **kw):                   # count vLLM's own preemptions (the condition really happened)
        llm.preemptions += 1
        return preempt(*a, **kw)
    scheduler._preempt_request = counting
    yield request.param, llm
    shutdown(llm)


def test_pairs_stay_exact(engine, hf_model):
    name, llm = engine
    questions = QUESTIONS
    ours = generate(llm, questions, "concise", "amulet", sampling=SamplingParams(max_new_tokens=MAX_NEW))
    if name == "chunked_prefill":
        assert min(r.num_prompt_tokens for r in ours) > CONDITIONS[name]["max_num_batched_tokens"]
    if name == "preemption":
        assert llm.preemptions > 0, "the tiny KV cache preempted nothing"
    ref = hf_ids(hf_model, questions, "concise", "amulet", MAX_NEW)
    assert [r.token_ids for r in ours] == ref
    stats = processor_stats(llm)
    rounds = [r.timings["rounds"] for r in ours]
    print(f"[vllm schedule] {name}: rounds per pair {rounds}, stalls {[r.timings['stalls'] for r in ours]}, "
          f"preemptions {llm.preemptions}, processor {stats}")
    assert stats["interrupted"] > 0 and max(rounds) > 1, f"{name} did not break lockstep: nothing was tested"
