"""Guided pairs in vLLM vs plain vLLM vs pyalign's HF loop (issue 13), written to bench/results/vllm_<device>.md/.json.

For 1, 4 and 16 questions (greedy Amulet, preference 'concise', default model, float32 on CPU):
* guided pairs: ``pyalign.integrations.vllm.generate`` (2 vLLM requests per question, one op call per step);
* plain vLLM: the same 2n contexts as independent requests (no guidance), same max_tokens;
* HF loop: ``pyalign.generate`` for the same questions.
Throughputs are generated tokens per second of wall time of the call (prefill included, the engine's start
excluded); "rows/s" counts both members of a pair (what the engine computes), "answers/s" one per question.
The processor's share = seconds inside ``GuidedPairs.apply`` / wall time of the guided call (in-process engine).

    .venv-vllm/bin/python bench/bench_vllm.py [--max-new-tokens 48] [--sizes 1 4 16] [--engine-arg KEY=VALUE]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")    # in-process: the processor's timer is readable
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


import torch  # noqa: E402

QUESTIONS = [
    "What are some tips for staying focused while studying?", "How do I boil an egg?", "Why is the sky blue?",
    "Give me three tips for a job interview.", "What should I pack for a weekend hike?",
    "How can I save money on groceries?", "Explain photosynthesis to a child.", "How do I start running?",
    "What is a good way to learn a new language?", "How do vaccines work?", "How can I sleep better?",
    "What are the benefits of reading every day?", "How do I write a cover letter?",
    "What is the difference between weather and climate?", "How do I make a simple budget?",
    "Why do cats purr?",
]
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def _processor(llm):
    from pyalign.integrations.vllm import GuidedPairs
    try:
        runner = llm.llm_engine.engine_core.engine_core.model_executor.driver_worker.worker.model_runner
        return next(p for p in runner.input_batch.logitsprocs.all if isinstance(p, GuidedPairs))
    except (AttributeError, StopIteration):
        return None


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--no-hf", action="store_true", help="skip pyalign's HF loop")
    ap.add_argument("--out", default=None, help="output stem (default bench/results/vllm_<device>)")
    args = ap.parse_args(argv)

    import vllm
    from vllm import SamplingParams as VSP
    from vllm.inputs import TokensPrompt

    import pyalign
    from pyalign import backends
    from pyalign.integrations.vllm import generate, make_llm, parse_engine_args
    from pyalign.methods import SamplingParams
    from pyalign.preferences import context_ids, get_preference

    device = "cuda" if torch.cuda.is_available() else "cpu"
    engine_args = dict(max_num_seqs=64)
    engine_args.update(parse_engine_args(args.engine_arg))
    t0 = time.perf_counter()
    llm = make_llm(**engine_args)
    startup = time.perf_counter() - t0
    tok = llm.get_tokenizer()
    proc = _processor(llm)
    backend = backends.for_device(device).__name__.rsplit(".", 1)[-1]
    sp = SamplingParams(max_new_tokens=args.max_new_tokens)
    pref = get_preference("concise")
    generate(llm, QUESTIONS[:2], "concise", "amulet", sampling=SamplingParams(max_new_tokens=4))   # warm-up
    hf = None
    if not args.no_hf:
        from pyalign.models import load_model
        hf = load_model(device=device)
        pyalign.generate(hf[0], hf[1], QUESTIONS[:1], "concise", method="amulet", max_new_tokens=2)
    rows = []
    for n in args.sizes:
        qs = (QUESTIONS * ((n + len(QUESTIONS) - 1) // len(QUESTIONS)))[:n]
        if proc is not None:
            proc.stats.update(seconds=0.0, steps=0)
        llm.reset_prefix_cache()              # both runs start cold: neither reuses the other's prefill
        t = time.perf_counter()
        res = generate(llm, qs, "concise", "amulet", sampling=sp)
        guided_s = time.perf_counter() - t
        guided_tokens = sum(len(r.token_ids) for r in res)
        proc_s = proc.stats["seconds"] if proc is not None else float("nan")
        steps = proc.stats["steps"] if proc is not None else 0
        ctx = [c for q in qs for c in context_ids(tok, q, pref)]
        llm.reset_prefix_cache()
        t = time.perf_counter()
        outs = llm.generate([TokensPrompt(prompt_token_ids=c) for c in ctx],
                            VSP(max_tokens=args.max_new_tokens, temperature=0.0), use_tqdm=False)
        plain_s = time.perf_counter() - t
        plain_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        row = dict(pairs=n, guided_answer_tokens=guided_tokens, guided_s=guided_s,
                   guided_rows_tok_s=2 * guided_tokens / guided_s, guided_answers_tok_s=guided_tokens / guided_s,
                   rounds=sum(r.timings["rounds"] for r in res), plain_requests=2 * n, plain_tokens=plain_tokens,
                   plain_s=plain_s, plain_rows_tok_s=plain_tokens / plain_s, processor_s=proc_s, steps=steps,
                   processor_share=proc_s / guided_s)
        row["guided_vs_plain"] = row["guided_rows_tok_s"] / row["plain_rows_tok_s"]
        if hf is not None:
            t = time.perf_counter()
            hres = pyalign.generate(hf[0], hf[1], qs, "concise", method="amulet", max_new_tokens=args.max_new_tokens)
            hf_s = time.perf_counter() - t
            hf_tokens = sum(len(r.token_ids) for r in hres)
            row.update(hf_s=hf_s, hf_answers_tok_s=hf_tokens / hf_s,
                       hf_equal=sum(a.token_ids == b.token_ids for a, b in zip(res, hres)))
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = dict(device=device, machine=f"{platform.machine()} {os.cpu_count()} cpus", torch=torch.__version__,
                vllm=vllm.__version__, model="SmolLM2-135M-Instruct (default)", dtype="float32" if device == "cpu"
                else "auto", method="amulet (greedy)", preference="concise", max_new_tokens=args.max_new_tokens,
                engine_args=engine_args, startup_s=startup, pyalign_backend=backend,
                runner="V1 (CPUModelRunner)" if device == "cpu" else "vLLM default")
    stem = pathlib.Path(args.out) if args.out else RESULTS / f"vllm_{device}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=2))
    stem.with_suffix(".md").write_text(_markdown(meta, rows))
    print(f"wrote {stem}.md and {stem}.json")
    return dict(meta=meta, rows=rows)


def _markdown(meta: dict, rows: list) -> str:
    out = [f"# pyalign in vLLM: guided pairs vs plain vLLM vs pyalign's HF loop ({meta['device']})", "",
           f"Model {meta['model']}, {meta['dtype']}, {meta['method']}, preference '{meta['preference']}', "
           f"{meta['max_new_tokens']} new tokens at most; vLLM {meta['vllm']} ({meta['runner']}), torch "
           f"{meta['torch']}, {meta['machine']}; pyalign op backend: {meta['pyalign_backend']}; engine args "
           f"{meta['engine_args']}; engine start {meta['startup_s']:.0f} s (excluded). tok/s = generated tokens / "
           "wall time of the call (prefill included). Row tok/s counts both members of a pair; plain vLLM runs "
           "the same 2n contexts as independent requests; the prefix cache is reset before each run. Processor share = time in GuidedPairs.apply / wall "
           "time of the guided call.", "",
           "| pairs | guided rows tok/s | plain vLLM (2n requests) tok/s | guided / plain | guided answers tok/s "
           "| HF loop answers tok/s | vLLM / HF (answers) | processor share | rounds | equal to HF |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        hf = r.get("hf_answers_tok_s")
        hf_cells = ("", "", "") if hf is None else (
            f"{hf:.1f}", f"{r['guided_answers_tok_s'] / hf:.2f}", f"{r['hf_equal']}/{r['pairs']}")
        out.append(f"| {r['pairs']} | {r['guided_rows_tok_s']:.1f} | {r['plain_rows_tok_s']:.1f} | "
                   f"{r['guided_vs_plain']:.2f} | {r['guided_answers_tok_s']:.1f} | {hf_cells[0]} | {hf_cells[1]} | "
                   f"{100 * r['processor_share']:.1f} % | {r['rounds']} | {hf_cells[2]} |")
    out.append("")
    out.append("Goals (issue 13): guided / plain >= 0.9 and processor share <= 3 % at 16 pairs.")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
