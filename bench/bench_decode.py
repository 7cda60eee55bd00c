"""Decode-loop benchmarks of the HF engine (issue 9): row eviction on a mixed-length batch, and long answers.

1. Mixed lengths: 8 prompts whose answers are cut at 8 … 256 tokens (``max_new_tokens`` per request, EOS
   ignored), Amulet, greedy, run with finished rows leaving the batch (``evict_finished=True``, the default) and
   with finished rows kept decoding until the last one ends (``evict_finished=False``, the previous loop's
   behaviour). Same tokens; the ratio of wall times is the gain.
2. Long answers: one 1 000-token Amulet answer; ms per token in windows of 100 tokens (attention grows with the
   position, so a slow rise is expected; a quadratic loop would rise much faster).

    python bench/bench_decode.py [--smoke] [--out-dir bench/results]

Writes ``decode_cpu.json`` (resumable: finished sections are kept) and ``decode_cpu.md``.
"""
from __future__ import annotations

import argparse
import pathlib
import platform
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

from harness import Results, markdown_table  # noqa: E402

LENGTHS = (8, 16, 32, 48, 64, 96, 128, 256)


def load(smoke: bool):
    from pyalign.models import load_model, load_tokenizer, tiny_random_model
    if smoke:
        tok = load_tokenizer()
        return tiny_random_model(vocab_size=len(tok), hidden=32, layers=2, heads=4, seed=0, max_positions=2048), tok
    return load_model()


def mixed(model, tok, prompts, lengths, evict: bool) -> tuple[float, list]:
    from pyalign.engine.hf import HFEngine
    from pyalign.methods import SamplingParams
    eng = HFEngine(model, tok, evict_finished=evict)
    reqs = [eng.build_request(p, "concise", "amulet", SamplingParams(max_new_tokens=n, ignore_eos=True))
            for p, n in zip(prompts, lengths)]
    t0 = time.perf_counter()
    out = eng.run(reqs)
    return time.perf_counter() - t0, [r.token_ids for r in out]


def long_answer(model, tok, prompt, n: int, window: int) -> list:
    from pyalign.engine.hf import HFEngine
    from pyalign.methods import SamplingParams
    eng = HFEngine(model, tok)
    eng.submit(prompt, "verbose", "amulet", SamplingParams(max_new_tokens=n, ignore_eos=True))
    stamps = []
    while eng.has_work():
        eng.step()
        stamps.append(time.perf_counter())
    return [1000 * (stamps[i + window] - stamps[i]) / window for i in range(0, len(stamps) - window, window)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny random model, short lengths (CI)")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--force", action="store_true", help="re-measure everything")
    a = ap.parse_args(argv)
    model, tok = load(a.smoke)
    name = "decode_smoke" if a.smoke else "decode_cpu"
    out = pathlib.Path(a.out_dir)
    res = Results(out / f"{name}.json", meta=dict(machine=platform.processor() or platform.machine(),
                                                   threads=torch.get_num_threads(), torch=torch.__version__),
                  force=a.force)
    from bench_e2e import load_prompts          # HelpSteer questions from ../shared/data, or built-in ones
    prompts = load_prompts(8)
    lengths = tuple(max(2, n // 32) for n in LENGTHS) if a.smoke else LENGTHS
    if not res.done("mixed"):
        print("[decode] mixed-length batch, with and without eviction ...", flush=True)
        t_on, tok_on = mixed(model, tok, prompts, lengths, True)
        t_off, tok_off = mixed(model, tok, prompts, lengths, False)
        res.put("mixed", dict(lengths=list(lengths), evict_s=t_on, keep_s=t_off, speedup=t_off / t_on,
                              same_tokens=tok_on == tok_off))
    n_long, window = (40, 10) if a.smoke else (1000, 100)
    if not res.done("long"):
        print(f"[decode] one {n_long}-token answer ...", flush=True)
        res.put("long", dict(tokens=n_long, window=window, ms_per_token=long_answer(model, tok, prompts[0], n_long,
                                                                                     window)))
    m, lg = res.get("mixed"), res.get("long")
    md = ["# Decode loop (HF engine)", "", f"Machine: `{res.get('_meta')}`", "",
          f"## Mixed-length batch of {len(m['lengths'])} (amulet, greedy, answers of {m['lengths']} tokens)", "",
          markdown_table([["finished rows leave the batch (evict)", f"{m['evict_s']:.2f}", f"{m['speedup']:.2f}×"],
                          ["finished rows keep decoding (no eviction, reference)", f"{m['keep_s']:.2f}", "1.00×"]],
                         ["loop", "wall s", "speed-up"]), "", f"Same tokens: {m['same_tokens']}.", "",
          f"## One {lg['tokens']}-token answer (amulet): ms per token, windows of {lg['window']} tokens", "",
          markdown_table([[f"{i * lg['window']}–{(i + 1) * lg['window']}", f"{v:.1f}"]
                          for i, v in enumerate(lg["ms_per_token"])], ["tokens", "ms/token"]), ""]
    (out / f"{name}.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0 if m["same_tokens"] else 1


if __name__ == "__main__":
    sys.exit(main())
