"""The default engine: the authors' conformance vectors, seeded sampling, single-context methods and refusals,
each compared token for token with pyalign's own HF path (default model, float32)."""
from __future__ import annotations

import pytest

from pyalign.errors import InvalidArgument
from pyalign.integrations.vllm import generate
from pyalign.methods import SamplingParams

from _vllm_helpers import hf_ids, hf_results, make_test_llm, method_kwargs, processor_stats, shutdown

QUESTIONS = ["How do I boil an egg?", "Why is the sky blue?", "Give me three tips for a job interview.",
             "What should I pack for a weekend hike?"]


@pytest.fixture(scope="module")
def llm():
    engine = make_test_llm(max_num_seqs=32)
    yield engine
    shutdown(engine)


@pytest.mark.parametrize("method", ["amulet", "la"])
def test_golden_vectors_equal_the_hf_path(llm, hf_model, golden, method):
    rows = [r for r in golden if r["method"] == method]
    assert rows
    kw = method_kwargs(rows[0])
    max_new = max(r["max_new_tokens"] for r in rows)
    ids = [(r["pref_input_ids"], r["base_input_ids"]) for r in rows]
    questions = [r["question"] for r in rows]
    ours = generate(llm, questions, "concise", method, sampling=SamplingParams(max_new_tokens=max_new),
                    method_kwargs=kw, input_ids=ids)
    ref = hf_results(hf_model, questions, "concise", method, max_new, input_ids=ids, **kw)
    assert [r.token_ids for r in ours] == [r.token_ids for r in ref]
    for o, h in zip(ours, ref):
        assert o.finish_reason == h.finish_reason
        assert o.logprobs == pytest.approx(h.logprobs, abs=2e-3)      # the guided log-probs, through vLLM
    authors = sum(r.token_ids == row["output_ids"] for r, row in zip(ours, rows))
    print(f"[vllm golden] {method}: {authors}/{len(rows)} equal the authors' ids; all equal pyalign's HF path")


def test_seeded_sampling_equals_the_hf_path(llm, hf_model):
    seeds, qs = [101, 202, 303], QUESTIONS[:3]
    kw = dict(temperature=0.9, top_k=50, top_p=0.95)
    ours = generate(llm, qs, "concise", "amulet", sampling=SamplingParams(max_new_tokens=12, **kw), seeds=seeds)
    assert [r.token_ids for r in ours] == hf_ids(hf_model, qs, "concise", "amulet", 12, seeds=seeds, **kw)
    again = generate(llm, list(reversed(qs)), "concise", "amulet",
                     sampling=SamplingParams(max_new_tokens=12, **kw), seeds=list(reversed(seeds)))
    assert [r.token_ids for r in reversed(again)] == [r.token_ids for r in ours]   # batch-order independent


@pytest.mark.parametrize("method", ["pref", "base"])
def test_single_context_methods_equal_the_hf_path(llm, hf_model, method):
    ours = generate(llm, QUESTIONS[:2], "concise", method, sampling=SamplingParams(max_new_tokens=12))
    assert [r.token_ids for r in ours] == hf_ids(hf_model, QUESTIONS[:2], "concise", method, 12)
    assert all(r.timings["rounds"] == 1 for r in ours)


def test_plain_requests_share_the_engine_untouched(llm):
    from vllm import SamplingParams as VSP
    before = processor_stats(llm)["pairs"]
    out = llm.generate(["Hello"], VSP(max_tokens=4, temperature=0.0), use_tqdm=False)
    assert len(out[0].outputs[0].token_ids) == 4
    assert processor_stats(llm)["pairs"] == before


@pytest.mark.parametrize("method", ["pad", "args", "panda"])
def test_reward_guided_methods_are_refused(llm, method):
    with pytest.raises(InvalidArgument, match="HF engine"):
        generate(llm, QUESTIONS[:1], "concise", method)


def test_bad_arguments_name_the_argument(llm):
    with pytest.raises(InvalidArgument, match="alpha"):
        generate(llm, QUESTIONS[:1], "concise", "amulet", method_kwargs={"alpha": -1.0})
    with pytest.raises(InvalidArgument, match="preference"):
        generate(llm, QUESTIONS[:1], None, "amulet")
    with pytest.raises(InvalidArgument, match="seeds"):
        generate(llm, QUESTIONS[:2], "concise", "amulet", seeds=[1])
