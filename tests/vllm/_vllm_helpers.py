"""Helpers of the vLLM tests (imported by the test modules; fixtures live in conftest.py)."""
from __future__ import annotations

def method_kwargs(row) -> dict:
    h = row["hyper"]
    if row["method"] == "la":
        return {"ratio": h["ratio"]}
    return {k: h[k] for k in ("T", "alpha", "lam", "eta")}


_HF_CACHE: dict = {}


def hf_results(hf_model, prompts, preference, method, max_new, *, input_ids=None, seeds=None, temperature=0.0,
           top_k=0, top_p=1.0, **kw) -> list:
    """``GenerationResult``s of pyalign's own HF path (``pyalign.generate``), memoised across test modules."""
    import pyalign
    key = (tuple(map(str, prompts)), preference, method, max_new, str(input_ids), str(seeds), temperature, top_k,
           top_p, tuple(sorted(kw.items())))
    if key not in _HF_CACHE:
        model, tok = hf_model
        extra = {}
        if input_ids is not None:
            extra = dict(pref_input_ids=[p for p, _ in input_ids], base_input_ids=[b for _, b in input_ids])
        res = pyalign.generate(model, tok, list(prompts), preference, method=method, max_new_tokens=max_new,
                               temperature=temperature, top_k=top_k, top_p=top_p,
                               seed=None if seeds is None else list(seeds), **extra, **kw)
        _HF_CACHE[key] = res
    return _HF_CACHE[key]


def hf_ids(hf_model, prompts, preference, method, max_new, **kw) -> list:
    return [r.token_ids for r in hf_results(hf_model, prompts, preference, method, max_new, **kw)]


def make_test_llm(**engine_args):
    """An in-process engine on the default model; eager (no compile step: faster to start on 2 cores)."""
    from pyalign.integrations.vllm import make_llm
    args = dict(max_model_len=512, enforce_eager=True, seed=0)
    args.update(engine_args)
    return make_llm(**args)


def processor_stats(llm) -> dict:
    """The in-process GuidedPairs' counters (guided pairs, single rows, interrupted rows, seconds)."""
    from pyalign.integrations.vllm import GuidedPairs
    runner = llm.llm_engine.engine_core.engine_core.model_executor.driver_worker.worker.model_runner
    procs = [p for p in runner.input_batch.logitsprocs.all if isinstance(p, GuidedPairs)]
    assert len(procs) == 1, procs
    return procs[0].stats


def shutdown(llm) -> None:
    import gc
    try:
        llm.llm_engine.engine_core.shutdown()
    except Exception:  # noqa: BLE001 - best effort: the next module starts its own engine
        pass
    del llm
    gc.collect()


#: Eight questions for the schedule and multiprocess tests (their contexts are 70-90 tokens long).
QUESTIONS = [
    "What are some tips for staying focused while studying?", "How do I boil an egg?", "Why is the sky blue?",
    "Give me three tips for a job interview.", "What should I pack for a weekend hike?",
    "How can I save money on groceries?", "Explain photosynthesis to a child.", "How do I start running?",
]
