"""End-to-end decoding speed: tokens/s and ms per token of every method, at batch 1 and 8, same prompts and
the same number of new tokens (EOS is ignored so that every row decodes exactly --max-new-tokens tokens).

Rows: pyalign's ``base, pref, la, amulet`` (two contexts batched into one forward per step) and ``pad, args,
panda`` when registered (skipped with the reason otherwise), and for comparison the two baselines of
``bench/baselines.py``: the Amulet authors' loop (two uncached full-sequence forwards + T full log-softmax
iterations per token), the two-cache unbatched loop of Linear Alignment / LM-arithmetic, and transformers' own
classifier-free guidance (``model.generate(guidance_scale=A, negative_prompt_ids=...)``, the same formula).

    python bench/bench_e2e.py                       # default model, 32 tokens, batch 1 and 8
    python bench/bench_e2e.py --max-new-tokens 16 --batch-sizes 1,8 --methods base,amulet
    python bench/bench_e2e.py --smoke --out-dir /tmp/x   # CI: tiny random model, 2 tokens, no timing claims

Definitions: ``tokens_per_s`` = (batch × new tokens) / wall time of the whole call (prompt formatting,
prefill and decode); ``ms_per_token`` = wall time / new tokens per row (the latency of one decoding step of
the batch). Results go to ``<out-dir>/<name>.json`` (resumed: entries already measured with the same
configuration are kept), ``.md`` and ``.png``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import platform
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import torch  # noqa: E402

OURS = ("base", "pref", "la", "amulet", "pad", "args", "panda")
BASELINES = ("authors_amulet", "two_cache", "hf_cfg")
#: keyword arguments the reward-guided methods need to run without a trained reward model
METHOD_KWARGS = {"args": {"reward": "sentiment"}, "panda": {"reward": "sentiment"}}
FALLBACK_PROMPTS = ["How do I boil an egg?", "What is the capital of France?", "Explain photosynthesis.",
                    "Give me three tips for studying.", "Why is the sky blue?", "What is a prime number?",
                    "How do vaccines work?", "Describe a cat."]


def load_prompts(n: int) -> list[str]:
    try:
        from pyalign.evaluation.data import load_questions
        qs = [q.text for q in load_questions("helpsteer", limit=n)]
    except FileNotFoundError:
        qs = []
    qs = qs or FALLBACK_PROMPTS
    return [qs[i % len(qs)] for i in range(n)]


def build_model(args):
    from pyalign.models import load_model, load_tokenizer, tiny_random_model
    if args.smoke and args.model is None:
        tok = load_tokenizer()
        model = tiny_random_model(vocab_size=len(tok), hidden=32, layers=2, heads=4, seed=0, max_positions=1024)
        return model, tok, "tiny-random-llama (smoke)"
    model, tok = load_model(args.model)
    return model, tok, args.model or "SmolLM2-135M-Instruct (default)"


def run_ours(model, tok, method, prompts, n, preference):
    import pyalign
    kw = dict(METHOD_KWARGS.get(method, {}))
    t0 = time.perf_counter()
    res = pyalign.generate(model, tok, prompts, preference=preference, method=method, max_new_tokens=n,
                           temperature=0.0, ignore_eos=True, **kw)
    wall = time.perf_counter() - t0
    return wall, [len(r.token_ids) for r in res], [r.token_ids for r in res]


def run_baseline(model, tok, name, prompts, n, preference, full_seq_softmax=True):
    import baselines
    from pyalign import amulet_weight
    from pyalign.engine.text import pad_token_id
    from pyalign.preferences import batch_context_ids as context_ids
    t0 = time.perf_counter()
    pref, base = context_ids(tok, prompts, preference, "system")
    if name == "authors_amulet":
        out = baselines.authors_amulet(model, pref, base, n, full_seq_softmax=full_seq_softmax)
    elif name == "two_cache":
        out = baselines.two_cache(model, pref, base, n, amulet_weight(), pad_token_id(tok, model))
    elif name == "hf_cfg":
        out = baselines.hf_cfg(model, pref, base, n, amulet_weight(), pad_token_id(tok, model))
    else:
        raise ValueError(name)
    wall = time.perf_counter() - t0
    return wall, [len(o) for o in out], out


def method_available(method: str) -> tuple[bool, str]:
    try:
        from pyalign.methods import get_method
        get_method(method)
        return True, ""
    except Exception as e:  # noqa: BLE001
        return False, f"{type(e).__name__}: {e}"


def config_id(cfg: dict) -> str:
    return hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]


def save_json(path: pathlib.Path, obj: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def fmt(x, d=2):
    return "–" if x is None else (f"{x:.{d}f}" if x < 100 else f"{x:.0f}")


def write_markdown(path: pathlib.Path, data: dict) -> None:
    res = data["results"]
    cfg = data["config"]
    bss = cfg["batch_sizes"]
    names = list(cfg["methods"]) + list(cfg["baselines"])
    lines = [f"# End-to-end decoding speed ({cfg['device']})", "",
             f"Model: {cfg['model']}; {cfg['max_new_tokens']} new tokens per row (EOS ignored), greedy, "
             f"preference '{cfg['preference']}'; torch {cfg['torch']}, {cfg['threads']} threads; "
             f"{cfg['host']}. tokens/s = batch × tokens / wall time of the call (prefill included); "
             "ms/token = wall time / tokens per row; × base = tokens/s relative to pyalign base at that batch.", "",
             "| method | " + " | ".join(f"tok/s (B={b}) | ms/token (B={b}) | × base (B={b})" for b in bss) + " |",
             "|---|" + "---|---|---|" * len(bss)]
    for m in names:
        cells = []
        for b in bss:
            e = res.get(f"{m}@{b}")
            base = res.get(f"base@{b}")
            if e is None or e.get("status") != "ok":
                reason = (e or {}).get("status", "not run")
                cells += [reason.replace("|", "/")[:60], "–", "–"]
                continue
            ratio = e["tokens_per_s"] / base["tokens_per_s"] if base and base.get("status") == "ok" else None
            cells += [fmt(e["tokens_per_s"]), fmt(e["ms_per_token"], 1), fmt(ratio)]
        label = m if m in OURS else f"baseline: {m}"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Baselines (bench/baselines.py): authors_amulet = two uncached full-sequence forwards and "
              f"T={cfg['T']} log-softmax iterations per token"
              + (" (re-softmaxing every position, as their code does)" if cfg.get("full_seq_softmax") else
                 " (last position only)") + f", one question at a time, measured over the first "
              f"{cfg.get('authors_tokens')} tokens of {cfg.get('authors_prompts')} prompt(s) at batch > 1 (sequential: "
              "its tokens/s does not depend on the batch; its per-token cost grows with the length, so this "
              "flatters it); two_cache = two separate KV caches, two "
              "forwards per step (Linear Alignment / LM-arithmetic pattern).", ""]
    path.write_text("\n".join(lines))


def write_plot(path: pathlib.Path, data: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    res, cfg = data["results"], data["config"]
    names = [m for m in list(cfg["methods"]) + list(cfg["baselines"])
             if any((res.get(f"{m}@{b}") or {}).get("status") == "ok" for b in cfg["batch_sizes"])]
    if not names:
        return
    bss = cfg["batch_sizes"]
    width = 0.8 / len(bss)
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 3.8))
    for i, b in enumerate(bss):
        vals = [(res.get(f"{m}@{b}") or {}).get("tokens_per_s") or 0 for m in names]
        ax.bar([x + i * width for x in range(len(names))], vals, width=width, label=f"batch {b}")
    ax.set_xticks([x + width * (len(bss) - 1) / 2 for x in range(len(names))])
    ax.set_xticklabels(names, rotation=20, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("tokens / s (log)")
    ax.set_title(f"{cfg['model']}, {cfg['max_new_tokens']} tokens, {cfg['device']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="local HF model dir (default: embedded SmolLM2-135M)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--methods", default=",".join(OURS))
    ap.add_argument("--baselines", default=",".join(BASELINES))
    ap.add_argument("--preference", default="concise")
    ap.add_argument("--repeats", type=int, default=1, help="measured runs per entry (the best is kept)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs (2 tokens) before the first entry")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--last-position-only", action="store_true",
                    help="authors baseline: skip their whole-sequence re-softmax (a lower bound on their cost)")
    ap.add_argument("--authors-tokens", type=int, default=4,
                    help="authors baseline: new tokens measured (its per-token cost only grows with length, so "
                         "fewer tokens flatter it; default 4)")
    ap.add_argument("--authors-prompts", type=int, default=2,
                    help="authors baseline: prompts measured at batch B > 1 (it runs them one after another, so its "
                         "tokens/s does not depend on B; default 2)")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--name", default=None, help="file stem (default e2e_cpu, or e2e_smoke with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="tiny random model, 2 tokens, batch 1 and 2")
    ap.add_argument("--fresh", action="store_true", help="ignore the existing results file")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.max_new_tokens = 2 if args.max_new_tokens == 32 else args.max_new_tokens
        if args.batch_sizes == "1,8":
            args.batch_sizes = "1,2"
        args.warmup = 0
        args.last_position_only = True
        args.authors_tokens = 1
        args.authors_prompts = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    from pyalign.reference import amulet_weight  # noqa: F401  (imports pyalign early: clearer errors)
    bss = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bls = [m.strip() for m in args.baselines.split(",") if m.strip()]
    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.name or ("e2e_smoke" if args.smoke else "e2e_cpu")
    jpath = out_dir / f"{stem}.json"

    model, tok, model_name = build_model(args)
    prompts_all = load_prompts(max(bss))
    device = "cpu" if next(model.parameters()).device.type == "cpu" else torch.cuda.get_device_name()
    cfg = {"model": model_name, "max_new_tokens": args.max_new_tokens, "batch_sizes": bss, "methods": methods,
           "baselines": bls, "preference": args.preference, "T": 60, "full_seq_softmax": not args.last_position_only,
           "prompts_sha": hashlib.sha1("\x00".join(prompts_all).encode()).hexdigest()[:12],
           "torch": torch.__version__, "threads": torch.get_num_threads(), "device": device,
           "host": f"{platform.machine()} {os.cpu_count()} cpus"}
    cfg.update(authors_tokens=min(args.max_new_tokens, args.authors_tokens), authors_prompts=args.authors_prompts)
    key_cfg = {k: cfg[k] for k in ("model", "max_new_tokens", "preference", "T", "full_seq_softmax", "prompts_sha",
                                   "authors_tokens", "authors_prompts")}
    data = {"config": cfg, "config_id": config_id(key_cfg), "results": {}}
    if jpath.exists() and not args.fresh:
        try:
            old = json.loads(jpath.read_text())
            if old.get("config_id") == data["config_id"]:
                data["results"] = old.get("results", {})
            else:
                print(f"[bench] {jpath} was measured with another configuration: starting over", file=sys.stderr)
        except (json.JSONDecodeError, OSError):
            print(f"[bench] {jpath} is unreadable: starting over", file=sys.stderr)

    entries = [(m, b) for b in bss for m in methods + bls]
    todo = [(m, b) for m, b in entries if f"{m}@{b}" not in data["results"]]
    if args.warmup and todo:
        run_ours(model, tok, "base", prompts_all[:1], 2, args.preference)
    from tqdm.auto import tqdm
    bar = tqdm(todo, desc="bench e2e", unit="run", disable=args.no_progress, dynamic_ncols=True)
    for m, b in bar:
        bar.set_postfix_str(f"{m} B={b}")
        prompts = prompts_all[:b]
        entry = {"method": m, "batch": b, "kind": "baseline" if m in bls and m not in OURS else "pyalign"}
        if entry["kind"] == "pyalign":
            ok, why = method_available(m)
            if not ok:
                entry["status"] = f"skipped (not registered: {why[:80]})"
                data["results"][f"{m}@{b}"] = entry
                save_json(jpath, data)
                continue
        try:
            best = None
            for _ in range(max(1, args.repeats)):
                if entry["kind"] == "pyalign":
                    wall, lens, _ids = run_ours(model, tok, m, prompts, args.max_new_tokens, args.preference)
                elif m == "authors_amulet":
                    wall, lens, _ids = run_baseline(model, tok, m, prompts[:max(1, args.authors_prompts)],
                                                    min(args.max_new_tokens, args.authors_tokens), args.preference,
                                                    not args.last_position_only)
                else:
                    wall, lens, _ids = run_baseline(model, tok, m, prompts, args.max_new_tokens, args.preference)
                if best is None or wall < best[0]:
                    best = (wall, lens)
            wall, lens = best
            n = max(lens)
            entry.update(status="ok", wall_s=wall, new_tokens=sum(lens), tokens_per_row=lens,
                         tokens_per_s=sum(lens) / wall, ms_per_token=1000.0 * wall / max(1, n))
        except Exception as e:  # noqa: BLE001  (a method that cannot run here is reported, not fatal)
            entry["status"] = f"error: {type(e).__name__}: {str(e)[:120]}"
        data["results"][f"{m}@{b}"] = entry
        save_json(jpath, data)
    bar.close()
    data["config"] = cfg
    save_json(jpath, data)
    write_markdown(out_dir / f"{stem}.md", data)
    write_plot(out_dir / f"{stem}.png", data)
    print((out_dir / f"{stem}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
