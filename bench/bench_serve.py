"""Benchmark ``pyalign serve``: throughput and latency under 1, 8 and 32 concurrent clients, base vs amulet,
continuous batching (``--max-batch 16``) vs one request at a time (``--max-batch 1``).

Both servers (one per max batch) run side by side on one loaded model and the two cells of a pair (same method
and clients) run back to back, so a change in the machine's load hits both alike. Each cell starts clients on
threads that share a pool of requests (distinct questions, greedy, ``max_tokens``
new tokens, streamed through the official ``openai`` client against a server on a free 127.0.0.1 port), and
measures per request the time to the first token and to the last, and per cell the generated tokens per second
of wall time. Writes ``bench/results/serve_cpu.md`` and ``.json``::

    .venv/bin/python bench/bench_serve.py                   # the full grid (minutes on 2 CPU cores)
    .venv/bin/python bench/bench_serve.py --quick           # a smoke run: 1 and 4 clients, few tokens
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = ["How do I boil an egg?", "Describe autumn.", "Give me advice on exams.", "Explain tides.",
             "What is a good way to learn a language?", "How do plants grow?", "Why is the sky blue?",
             "Tell me about cats.", "How do I make tea?", "What is a prime number?", "How do bees make honey?",
             "Suggest a name for a boat."]


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def one_request(client, question, method, max_tokens):
    """Stream one answer; (latency s, time to first token s, completion tokens, finish reason)."""
    body = {"method": method} if method == "base" else {"method": method, "preference": "concise"}
    t0 = time.perf_counter()
    first, usage, finish = None, None, None
    stream = client.chat.completions.create(model="bench", messages=[{"role": "user", "content": question}],
                                            max_tokens=max_tokens, stream=True, extra_body=body,
                                            stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices:
            c = chunk.choices[0]
            if first is None and c.delta.content:
                first = time.perf_counter() - t0
            finish = c.finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    latency = time.perf_counter() - t0
    return latency, first if first is not None else latency, usage.completion_tokens, finish


def run_cell(url, method, clients, n_requests, max_tokens, offset):
    import openai
    pool = list(range(n_requests))
    lock = threading.Lock()
    results = []

    def worker(_):
        client = openai.OpenAI(base_url=url, api_key="bench", max_retries=0, timeout=1800)
        while True:
            with lock:
                if not pool:
                    return
                i = pool.pop(0)
            q = QUESTIONS[(i + offset) % len(QUESTIONS)]
            r = one_request(client, q, method, max_tokens)
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        list(ex.map(worker, range(clients)))
    wall = time.perf_counter() - t0
    lat = [r[0] for r in results]
    ttft = [r[1] for r in results]
    tokens = sum(r[2] for r in results)
    return {"requests": len(results), "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            "latency_p50_s": percentile(lat, 50), "latency_p95_s": percentile(lat, 95),
            "ttft_p50_s": percentile(ttft, 50), "ttft_p95_s": percentile(ttft, 95),
            "complete": sum(r[3] in ("stop", "length") for r in results)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="1,8,32", help="concurrency levels (default 1,8,32)")
    ap.add_argument("--methods", default="base,amulet", help="methods (default base,amulet)")
    ap.add_argument("--max-batch", default="16,1", help="engine max batch per mode (default 16,1: continuous "
                                                        "batching vs one request at a time)")
    ap.add_argument("--max-tokens", type=int, default=24, help="new tokens per answer (default 24)")
    ap.add_argument("--min-requests", type=int, default=8,
                    help="requests per cell: max(this, clients) (default 8)")
    ap.add_argument("--model", default=None, help="model directory (default: the embedded SmolLM2-135M)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_cpu"),
                    help="output path without extension (default bench/results/serve_cpu)")
    ap.add_argument("--quick", action="store_true", help="smoke run: clients 1,4, 4 requests, 8 tokens")
    a = ap.parse_args(argv)
    if a.quick:
        a.clients, a.max_tokens, a.min_requests = "1,4", 8, 4
    clients = [int(x) for x in a.clients.split(",")]
    methods = a.methods.split(",")
    batches = [int(x) for x in a.max_batch.split(",")]
    if any(c < 1 for c in clients) or any(b < 1 for b in batches) or a.max_tokens < 1:
        ap.error("--clients, --max-batch and --max-tokens must be >= 1")

    import torch
    from pyalign.engine.hf import HFEngine
    from pyalign.models import load_model
    from pyalign.serve.app import create_app
    from pyalign.serve.background import serve_in_thread
    torch.set_num_threads(max(1, min(os.cpu_count() or 1, 16)))
    t = time.perf_counter()
    model, tok = load_model(a.model)
    print(f"model loaded in {time.perf_counter() - t:.1f} s; {len(batches) * len(methods) * len(clients)} cells",
          flush=True)
    rows = []
    t_all = time.perf_counter()
    with contextlib.ExitStack() as stack:          # one server per max batch, all up; cells of a pair run back to back
        urls = {}
        for mb in batches:
            engine = HFEngine(model, tok, max_batch=mb, max_waiting=max(64, 2 * max(clients)))
            urls[mb] = stack.enter_context(serve_in_thread(create_app(engine, tok, "bench")))
            run_cell(urls[mb], "amulet", 1, 1, 4, 0)          # warm-up: kernels built, caches allocated
        for method in methods:
            for c in clients:
                n = max(a.min_requests, c)
                for mb in batches:
                    print(f"  max-batch {mb:>2}  {method:<6}  {c:>2} clients  {n:>2} requests ...", end=" ",
                          flush=True)
                    r = run_cell(urls[mb], method, c, n, a.max_tokens, offset=len(rows) // len(batches))
                    r.update(max_batch=mb, method=method, clients=c)
                    rows.append(r)
                    print(f"{r['tokens_per_s']:7.1f} tok/s  p50 {r['latency_p50_s']:6.2f} s  "
                          f"p95 {r['latency_p95_s']:6.2f} s  ({r['wall_s']:.1f} s)", flush=True)
                    if r["complete"] != r["requests"]:
                        print(f"    WARNING: {r['requests'] - r['complete']} answers incomplete", flush=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}",
            "load_avg_at_end": os.getloadavg(), "python": platform.python_version(), "torch": torch.__version__,
            "model": a.model or "SmolLM2-135M-Instruct (embedded)", "max_tokens": a.max_tokens,
            "min_requests": a.min_requests, "command": "python bench/bench_serve.py " + " ".join(argv or sys.argv[1:]),
            "total_s": time.perf_counter() - t_all}
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    out.with_suffix(".md").write_text(markdown(meta, rows))
    print(f"wrote {out.with_suffix('.md')} and .json ({meta['total_s']:.0f} s)")
    return 0


def markdown(meta, rows) -> str:
    one = {(r["method"], r["clients"]): r for r in rows if r["max_batch"] == 1}
    lines = [
        "# `pyalign serve` throughput and latency (CPU)", "",
        f"{meta['date']} · {meta['machine']} · {meta['model']} · greedy, {meta['max_tokens']} new tokens per answer,"
        f" streamed through the `openai` client on 127.0.0.1 · `{meta['command'].strip()}`", "",
        "Each cell: `clients` threads share max(min_requests, clients) requests (distinct questions); throughput ="
        " generated tokens / wall time; latency = request sent → last token; TTFT = → first token. "
        "`max batch 1` serves one request at a time (the others queue); `speedup` = tok/s over max batch 1 at the "
        "same method and clients (the two cells ran back to back). amulet decodes two contexts per request (preference + plain prompt).", "",
        "| max batch | method | clients | requests | tokens | tok/s | p50 latency s | p95 latency s | p50 TTFT s |"
        " p95 TTFT s | speedup |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        base = one.get((r["method"], r["clients"]))
        sp = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}×" if base and r["max_batch"] != 1 else "—"
        lines.append(f"| {r['max_batch']} | {r['method']} | {r['clients']} | {r['requests']} | {r['tokens']} | "
                     f"{r['tokens_per_s']:.1f} | {r['latency_p50_s']:.2f} | {r['latency_p95_s']:.2f} | "
                     f"{r['ttft_p50_s']:.2f} | {r['ttft_p95_s']:.2f} | {sp} |")
    la = meta["load_avg_at_end"]
    lines += ["", f"Load average at the end: {la[0]:.1f}, {la[1]:.1f}, {la[2]:.1f} (the machine is shared; "
                  "numbers from one run)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
