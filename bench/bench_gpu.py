"""GPU benchmarks of the sampling ops: CUDA C++ vs Triton vs PyTorch eager vs torch.compile of the eager formula,
and end-to-end Amulet vs base decoding speed on the default model.

    python bench/bench_gpu.py                       # full grid on the GPU, writes bench/results/gpu_<device>.*
    python bench/bench_gpu.py --budget-s 200        # stop starting new measurements after 200 s (partial tables)
    python bench/bench_gpu.py --quick               # tiny sizes; runs on CPU too (cpp/torch), a smoke test
    pytest bench/bench_gpu.py --benchmark-only      # the same grid as pytest-benchmark tests (CUDA only)

Grid: B ∈ {1, 8, 64, 256} × V ∈ {32000, 128256, 262144} × fp32/bf16 × guided_sample mode (greedy τ = 0,
sampled τ = 0.8, filtered τ = 0.8 with top-k 50 + top-p 0.9), two contexts (z = zb + A(zp − zb), A = 5.65).
Implementations: cuda (CUDA C++), triton, eager (the PyTorch formula a user would write: argmax / multinomial /
torch.topk + top-p over the k; torch RNG), compile (torch.compile of that formula, dynamic shapes), and on request
reference (pyalign.backends.torch_backend: the exact spec, full sorts), cpp (CPU C++).
Per (configuration, implementation):
  device_us  mean device time per call from CUDA events around `iters` back-to-back calls (GPU only);
  host_us    host time per call of the backend function (enqueue cost; calls not synchronised);
  op_us      host time per call through the registered op torch.ops.pyalign.guided_sample (dispatcher +
             backend selection): op overhead = op_us − host_us;
  GB/s       bytes / device time with bytes = 2·B·V·itemsize (both contexts read once), and its fraction of the
             card's peak (nominal from the device name, and the device-to-device copy rate measured here).
End to end: ``pyalign.generate`` with the default model in bf16 on the GPU, greedy, `--new-tokens` tokens, base
and amulet at B = 1 and 32: tokens/s = generated tokens / wall time of the call.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402
import torch  # noqa: E402

BS = [1, 8, 64, 256]
VS = [32000, 128256, 262144]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MODES = ["greedy", "sampled", "filtered"]
IMPLS = ["cuda", "triton", "eager", "compile"]
A = 5.6487  # Amulet's official weight (T=60, α=2, λ=2, η=10)
NOMINAL_GBS = {"H200": 4800, "H100 SXM": 3350, "H100 NVL": 3900, "H100 PCIe": 2000, "H100": 3350, "H800": 3350,
               "A100-SXM4-80GB": 2039, "A100 80GB PCIe": 1935, "A100": 1555, "L40S": 864, "L4": 300,
               "RTX 4090": 1008, "B200": 8000, "GH200": 4000}


# ----------------------------------------------------------------------------------------------- helpers

def device_slug(device: str) -> str:
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def nominal_bandwidth(name: str) -> float | None:
    for key, v in NOMINAL_GBS.items():
        if key.lower() in name.lower():
            return float(v)
    return None


def measured_copy_bandwidth() -> float:
    """Device-to-device copy rate in GB/s (read + write bytes / time) of a 1 GiB buffer."""
    n = 1 << 28
    a = torch.empty(n, dtype=torch.float32, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(10):
        b.copy_(a)
    e.record()
    torch.cuda.synchronize()
    sec = s.elapsed_time(e) / 1e3 / 10
    del a, b
    return 2 * n * 4 / sec / 1e9


def inputs(B: int, V: int, dtype: torch.dtype, mode: str, device: str):
    g = torch.Generator(device=device).manual_seed(B * 131 + V)
    zp = (torch.randn(B, V, device=device, generator=g) * 3).to(dtype)
    zb = (torch.randn(B, V, device=device, generator=g) * 3).to(dtype)
    w = torch.full((B,), A, device=device)
    tau = torch.full((B,), 0.0 if mode == "greedy" else 0.8, device=device)
    k = torch.full((B,), 50 if mode == "filtered" else 0, dtype=torch.int64, device=device)
    p = torch.full((B,), 0.9 if mode == "filtered" else 1.0, device=device)
    rng = torch.stack([torch.arange(B, device=device) * 7919 + 1, torch.zeros(B, dtype=torch.int64, device=device)], 1)
    return zp, zb, w, tau, k, p, rng


# The eager formula a PyTorch user would write for one decoding step (what "eager" and "compile" time): guided
# combination, log-softmax for the returned log-prob, then argmax / multinomial / top-k 50 + top-p 0.9 over the
# top-k (sort of the k survivors). torch's own RNG, not Philox: a speed baseline, not the exact spec
# (the exact spec, pyalign.backends.torch_backend, is the "reference" implementation, slower: full sorts).
def _combine(zp, zb, w):
    zp = zp.float()
    zb = zb.float()
    return zb + w[:, None] * (zp - zb)


def formula_greedy(zp, zb, w, tau, k, p, rng):
    z = _combine(zp, zb, w)
    tok = z.argmax(-1)
    return tok, torch.log_softmax(z, -1).gather(-1, tok[:, None])[:, 0]


def formula_sampled(zp, zb, w, tau, k, p, rng):
    z = _combine(zp, zb, w)
    tok = torch.multinomial(torch.softmax(z / tau[:, None], -1), 1)[:, 0]
    return tok, torch.log_softmax(z, -1).gather(-1, tok[:, None])[:, 0]


def formula_filtered(zp, zb, w, tau, k, p, rng, top_k=50, top_p=0.9):
    z = _combine(zp, zb, w)
    vals, idx = torch.topk(z / tau[:, None], top_k, dim=-1)          # sorted, descending
    probs = torch.softmax(vals, -1)
    drop = probs.cumsum(-1) - probs >= top_p                            # mass strictly above >= p
    probs = probs.masked_fill(drop, 0.0)
    pick = torch.multinomial(probs, 1)
    tok = idx.gather(-1, pick)[:, 0]
    return tok, torch.log_softmax(z, -1).gather(-1, tok[:, None])[:, 0]


FORMULAS = {"greedy": formula_greedy, "sampled": formula_sampled, "filtered": formula_filtered}
_COMPILED: dict = {}


def impl_fn(impl: str, mode: str = "sampled"):
    """(backend function, op function or None) for an implementation name; raises if it cannot run here."""
    from pyalign import backends
    if impl in ("cuda", "triton", "cpp"):
        mod = backends._load(impl)

        def op(*args, _name=impl):
            with backends.use(_name):
                return torch.ops.pyalign.guided_sample(*args)
        return mod.guided_sample, op
    from pyalign.backends import torch_backend
    if impl == "reference":
        return torch_backend.guided_sample, None
    if impl == "eager":
        return FORMULAS[mode], None
    if impl == "compile":
        if mode not in _COMPILED:
            # one dynamic-shape compile per formula serves the whole grid (static shapes: minutes of compiles)
            import torch._dynamo
            for knob in ("cache_size_limit", "recompile_limit"):
                if hasattr(torch._dynamo.config, knob):
                    setattr(torch._dynamo.config, knob, max(64, getattr(torch._dynamo.config, knob)))
            _COMPILED[mode] = torch.compile(FORMULAS[mode], dynamic=True)
        return _COMPILED[mode], None
    raise ValueError(f"unknown implementation {impl!r}")


def time_device(fn, args, iters: int, device: str) -> float:
    """Mean µs per call: CUDA events around `iters` back-to-back calls (wall clock with a sync on CPU)."""
    if device == "cuda":
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(iters):
            fn(*args)
        e.record()
        torch.cuda.synchronize()
        return s.elapsed_time(e) * 1e3 / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        fn(*args)
    return (time.perf_counter() - t0) * 1e6 / iters


def time_host(fn, args, iters: int, device: str) -> float:
    """Host µs per call (enqueue only; the queue is drained before and after, outside the timed loop)."""
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn(*args)
    t = (time.perf_counter() - t0) * 1e6 / iters
    if device == "cuda":
        torch.cuda.synchronize()
    return t


def measure(impl: str, B: int, V: int, dt: str, mode: str, device: str, iters: int) -> dict:
    fn, op = impl_fn(impl, mode)
    args = inputs(B, V, DTYPES[dt], mode, device)
    for _ in range(3):                     # warm-up: JIT, autotune, compile, allocator
        fn(*args)
    if device == "cuda":
        torch.cuda.synchronize()
    n = max(3, min(iters, int(2e9 // max(1, 2 * B * V * DTYPES[dt].itemsize)) or 3))
    dev_us = time_device(fn, args, n, device)
    host_us = time_host(fn, args, n, device) if device == "cuda" else None
    op_us = None
    if op is not None and device == "cuda":
        op(*args)
        op_us = time_host(op, args, n, device)
    nbytes = 2 * B * V * DTYPES[dt].itemsize
    return {"impl": impl, "B": B, "V": V, "dtype": dt, "mode": mode, "device_us": dev_us, "host_us": host_us,
            "op_us": op_us, "bytes": nbytes, "GBps": nbytes / (dev_us * 1e-6) / 1e9}


# ------------------------------------------------------------------------------------------ end to end

def e2e(batch_sizes, new_tokens: int, device: str, budget_end: float) -> list[dict]:
    import pyalign
    from pyalign.models import load_model
    rows = []
    try:
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model, tok = load_model(dtype=dtype, device=device)
    except Exception as exc:  # noqa: BLE001 - reported in the results
        return [{"error": f"default model unavailable: {type(exc).__name__}: {exc}"}]
    prompts = ["How do I boil an egg?", "Explain photosynthesis.", "Give me three tips for studying.",
               "Why is the sky blue?", "Describe a cat.", "What is a prime number?", "How do vaccines work?",
               "Tell me about the ocean."]
    for B in batch_sizes:
        ps = [prompts[i % len(prompts)] for i in range(B)]
        for method in ("base", "amulet"):
            if time.time() > budget_end:
                rows.append({"method": method, "B": B, "error": "skipped: time budget"})
                continue
            try:
                pyalign.generate(model, tok, ps[:1], preference="concise", method=method, max_new_tokens=4)
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                res = pyalign.generate(model, tok, ps, preference="concise", method=method,
                                       max_new_tokens=new_tokens)
                if device == "cuda":
                    torch.cuda.synchronize()
                sec = time.perf_counter() - t0
                n = sum(len(r.token_ids) for r in res)
                rows.append({"method": method, "B": B, "new_tokens": n, "seconds": sec, "tokens_per_s": n / sec})
            except Exception as exc:  # noqa: BLE001
                rows.append({"method": method, "B": B, "error": f"{type(exc).__name__}: {exc}"})
    base = {r["B"]: r.get("tokens_per_s") for r in rows if r.get("method") == "base"}
    for r in rows:
        if r.get("tokens_per_s") and base.get(r["B"]):
            r["x_base"] = r["tokens_per_s"] / base[r["B"]]
    return rows


# ------------------------------------------------------------------------------------------------ report

def _fmt(x, nd=1):
    return "—" if x is None else f"{x:.{nd}f}"


def write_markdown(path: pathlib.Path, meta: dict, rows: list[dict], e2e_rows: list[dict]) -> None:
    peak = meta.get("peak_GBps")
    lines = [f"# GPU benchmarks: {meta['device_name']}", "",
             f"torch {meta['torch']}, triton {meta.get('triton')}, {meta['when']}. bytes = 2·B·V·itemsize; "
             f"peak = {_fmt(peak, 0)} GB/s ({meta.get('peak_source')}); device µs from CUDA events; host µs = "
             "enqueue time per call of the backend function; op µs through torch.ops.pyalign (dispatcher).", ""]
    for mode in MODES:
        lines += [f"## guided_sample, {mode}", "",
                  "| B | V | dtype | impl | device µs | GB/s | % peak | host µs | op µs |",
                  "|---:|---:|---|---|---:|---:|---:|---:|---:|"]
        for r in rows:
            if r.get("mode") != mode:
                continue
            if "error" in r:
                lines.append(f"| {r['B']} | {r['V']} | {r['dtype']} | {r['impl']} | {r['error']} | | | | |")
                continue
            pct = 100 * r["GBps"] / peak if peak else None
            lines.append(f"| {r['B']} | {r['V']} | {r['dtype']} | {r['impl']} | {_fmt(r['device_us'])} | "
                         f"{_fmt(r['GBps'], 0)} | {_fmt(pct, 0)} | {_fmt(r['host_us'])} | {_fmt(r['op_us'])} |")
        lines.append("")
    # filtered / unfiltered ratio
    idx = {(r["impl"], r["B"], r["V"], r["dtype"], r["mode"]): r for r in rows if "error" not in r}
    lines += ["## filtered (top-k 50 + top-p 0.9) ÷ sampled device time", "",
              "| B | V | dtype | " + " | ".join(IMPLS) + " |", "|---:|---:|---|" + "---:|" * len(IMPLS)]
    for B in sorted({r["B"] for r in rows}):
        for V in sorted({r["V"] for r in rows}):
            for dt in DTYPES:
                cells = []
                for impl in IMPLS:
                    f, s = idx.get((impl, B, V, dt, "filtered")), idx.get((impl, B, V, dt, "sampled"))
                    cells.append(_fmt(f["device_us"] / s["device_us"], 2) if f and s else "—")
                if any(c != "—" for c in cells):
                    lines.append(f"| {B} | {V} | {dt} | " + " | ".join(cells) + " |")
    lines.append("")
    if e2e_rows:
        lines += ["## End to end (default model, bf16, greedy)", "",
                  "| method | B | tokens | s | tokens/s | × base |", "|---|---:|---:|---:|---:|---:|"]
        for r in e2e_rows:
            if "error" in r:
                lines.append(f"| {r.get('method', '')} | {r.get('B', '')} | {r['error']} | | | |")
            else:
                lines.append(f"| {r['method']} | {r['B']} | {r['new_tokens']} | {_fmt(r['seconds'], 2)} | "
                             f"{_fmt(r['tokens_per_s'])} | {_fmt(r.get('x_base'), 2)} |")
        lines.append("")
    path.write_text("\n".join(lines))


def write_plot(path: pathlib.Path, meta: dict, rows: list[dict]) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:  # noqa: BLE001
        return f"no plot: {exc}"
    fig, axes = plt.subplots(1, len(MODES), figsize=(6 * len(MODES), 4.5), squeeze=False)
    dt = "bf16" if any(r.get("dtype") == "bf16" for r in rows) else "fp32"
    for ax, mode in zip(axes[0], MODES):
        for impl in IMPLS:
            pts = sorted((r["B"] * r["V"], r["GBps"]) for r in rows
                         if "error" not in r and r["impl"] == impl and r["mode"] == mode and r["dtype"] == dt)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=impl)
        if meta.get("peak_GBps"):
            ax.axhline(meta["peak_GBps"], color="k", ls="--", lw=0.8, label="peak")
        ax.set_xscale("log")
        ax.set_xlabel("B·V")
        ax.set_ylabel("GB/s")
        ax.set_title(f"guided_sample {mode} ({dt})")
        ax.legend(fontsize=8)
    fig.suptitle(meta["device_name"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, few iterations (smoke test; CPU works)")
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    ap.add_argument("--impls", default=None, help="comma list among cuda,triton,eager,compile,reference,cpp")
    ap.add_argument("--batch-sizes", default=None)
    ap.add_argument("--vocab-sizes", default=None)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--budget-s", type=float, default=1e9, help="start no measurement after this many seconds")
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--e2e-reserve-s", type=float, default=90, help="part of --budget-s kept for the end-to-end run")
    ap.add_argument("--e2e-batch-sizes", default="1,32")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    t_start = time.time()
    budget_end = t_start + args.budget_s
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.quick:
        bs, vs, iters = [1, 4], [1000, 32000] if device == "cuda" else [1000], 3
        impls = ["cuda", "triton", "eager"] if device == "cuda" else ["cpp", "eager"]
    else:
        bs, vs, iters = BS, VS, args.iters
        impls = IMPLS if device == "cuda" else ["cpp", "eager"]
    if args.batch_sizes:
        bs = [int(x) for x in args.batch_sizes.split(",")]
    if args.vocab_sizes:
        vs = [int(x) for x in args.vocab_sizes.split(",")]
    if args.impls:
        impls = args.impls.split(",")
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slug = device_slug(device)
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    meta = {"device_name": name, "device": device, "torch": torch.__version__, "python": platform.python_version(),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick}
    try:
        import triton
        meta["triton"] = triton.__version__
    except Exception:  # noqa: BLE001
        meta["triton"] = None
    if device == "cuda":
        meta["copy_GBps"] = measured_copy_bandwidth()
        nom = nominal_bandwidth(name)
        meta["nominal_GBps"] = nom
        meta["peak_GBps"], meta["peak_source"] = (nom, "nominal") if nom else (meta["copy_GBps"], "measured copy")
    ops_end = budget_end - (0 if args.no_e2e else args.e2e_reserve_s)
    rows: list[dict] = []
    usable = {}
    for impl in impls:
        try:
            impl_fn(impl)
            usable[impl] = None
        except Exception as exc:  # noqa: BLE001
            usable[impl] = f"unavailable: {type(exc).__name__}: {str(exc)[:120]}"
            print(f"[bench_gpu] {impl}: {usable[impl]}", flush=True)
    # implementation-major order: under a time budget the slowest (torch.compile) is what gets cut
    for impl in impls:
        for mode in MODES:
            for dt in DTYPES:
                for V in vs:
                    for B in bs:
                        base = {"impl": impl, "B": B, "V": V, "dtype": dt, "mode": mode}
                        if usable[impl]:
                            rows.append({**base, "error": usable[impl]})
                            continue
                        if time.time() > ops_end:
                            rows.append({**base, "error": "skipped: time budget"})
                            continue
                        try:
                            r = measure(impl, B, V, dt, mode, device, iters)
                            rows.append(r)
                            print(f"[bench_gpu] {mode:8s} {dt} B={B:<4d} V={V:<7d} {impl:8s} "
                                  f"{r['device_us']:9.1f} us {r['GBps']:7.0f} GB/s", flush=True)
                        except Exception as exc:  # noqa: BLE001
                            rows.append({**base, "error": f"{type(exc).__name__}: {str(exc)[:160]}"})
                            print(f"[bench_gpu] {mode} {dt} B={B} V={V} {impl}: {rows[-1]['error']}", flush=True)
    e2e_rows = []
    if not args.no_e2e:
        e2e_bs = [1] if args.quick else [int(x) for x in args.e2e_batch_sizes.split(",")]
        e2e_rows = e2e(e2e_bs, 4 if args.quick else args.new_tokens, device, budget_end)
        for r in e2e_rows:
            print(f"[bench_gpu] e2e {r}", flush=True)
    meta["seconds"] = time.time() - t_start
    stem = out / f"gpu_{slug}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "ops": rows, "e2e": e2e_rows}, indent=1))
    write_markdown(stem.with_suffix(".md"), meta, rows, e2e_rows)
    note = write_plot(stem.with_suffix(".png"), meta, rows)
    if note:
        print(f"[bench_gpu] {note}")
    print(f"[bench_gpu] wrote {stem}.json/.md/.png in {meta['seconds']:.0f} s")
    return 0


# --------------------------------------------------------------------------------- pytest-benchmark tests

_cuda_only = pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                                reason="GPU benchmarks need a CUDA device (and compiled Triton)")


@_cuda_only
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("V", VS)
@pytest.mark.parametrize("B", BS)
@pytest.mark.parametrize("mode", MODES)
def test_guided_sample(benchmark, mode, B, V, dt, impl):
    try:
        fn, _ = impl_fn(impl, mode)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"{impl} unavailable: {exc}")
    args = inputs(B, V, DTYPES[dt], mode, "cuda")

    def call():
        fn(*args)
        torch.cuda.synchronize()
    for _ in range(3):
        call()
    benchmark.group = f"guided_sample-{mode}-B{B}-V{V}-{dt}"
    benchmark.extra_info.update(gpu=torch.cuda.get_device_name(), bytes=2 * B * V * DTYPES[dt].itemsize)
    benchmark.pedantic(call, rounds=20, iterations=1, warmup_rounds=2)


if __name__ == "__main__":
    sys.exit(main())
