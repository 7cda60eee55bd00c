"""Op benchmarks on this machine's CPU (and GPU when present): writes bench/results/ops_cpu.json, ops_cpu.md and
ops_cpu.png. Resumable: configurations already in the JSON are skipped (delete the file to re-measure).
Ratios are against the reference measured in the same run.

    python bench/run_ops_bench.py [--seconds 1.0] [--force]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import pyalign  # noqa: E402
sys.path.insert(0, str(ROOT / "bench"))
from harness import timeit  # noqa: E402
from pyalign.reference.amulet import amulet_iterative  # noqa: E402

OUT = ROOT / "bench" / "results"


def configs(device: str):
    C = torch.ops.pyalign_C
    dev = torch.device(device)
    sync = torch.cuda.synchronize if device == "cuda" else None
    V = 49152
    g = torch.Generator().manual_seed(0)

    def data(B):
        zp = (torch.randn(B, V, generator=g) * 3).to(dev)
        zb = (torch.randn(B, V, generator=g) * 3).to(dev)
        return zp, zb

    def params(B, tau, k=0, p=1.0, w=None):
        w = torch.full((B,), pyalign.amulet_weight() if w is None else w, device=dev)
        return (w, torch.full((B,), tau, device=dev), torch.full((B,), k, dtype=torch.long, device=dev),
                torch.full((B,), p, device=dev), pyalign.make_rng(B, dev, seed=1))

    # 1. greedy Amulet step, B=1
    zp, zb = data(1)
    prm = params(1, 0.0)
    A = pyalign.amulet_weight()
    yield (f"{device}/greedy_B1_V{V}", {
        "amulet_loop_T60 (reference)": lambda: amulet_iterative(zp, zb, 60).argmax(-1),
        "torch eager combine+argmax": lambda: (zb + A * (zp - zb)).argmax(-1),
        "pyalign_C fused (direct)": lambda: C.guided_sample(zp, zb, *prm),
        "pyalign op (cpp backend)": lambda: torch.ops.pyalign.guided_sample(zp, zb, *prm),
    }, "amulet_loop_T60 (reference)", sync)
    # 1b. the public wrapper's overhead (issue 9): public vs dispatcher vs raw C++ op vs eager, greedy B=1 and B=8
    for B in (1, 8):
        zpB, zbB = data(B)
        prmB = params(B, 0.0)
        yield (f"{device}/wrapper_greedy_B{B}_V{V}", {
            "torch eager combine+argmax (reference)": lambda zp=zpB, zb=zbB: (zb + A * (zp - zb)).argmax(-1),
            "pyalign.guided_sample (public, validating)":
                lambda zp=zpB, zb=zbB: pyalign.guided_sample(zp, zb, A, temperature=0.0),
            "torch.ops.pyalign.guided_sample (dispatcher)":
                lambda zp=zpB, zb=zbB, prm=prmB: torch.ops.pyalign.guided_sample(zp, zb, *prm),
            "torch.ops.pyalign_C.guided_sample (raw)": lambda zp=zpB, zb=zbB, prm=prmB: C.guided_sample(zp, zb, *prm),
        }, "torch eager combine+argmax (reference)", sync)
    # 2. sampling B=8
    zp8, zb8 = data(8)
    prm8 = params(8, 0.8)
    gen = torch.Generator(device=dev).manual_seed(0)
    yield (f"{device}/sample_B8_V{V}", {
        "torch eager combine+softmax+multinomial (reference)":
            lambda: torch.multinomial(torch.softmax((zb8 + A * (zp8 - zb8)) / 0.8, -1), 1, generator=gen),
        "pyalign_C fused (direct)": lambda: C.guided_sample(zp8, zb8, *prm8),
    }, "torch eager combine+softmax+multinomial (reference)", sync)
    # 2b. filtered sampling B=8 (top-k 50, top-p 0.9)
    prm8f = params(8, 0.8, 50, 0.9)
    yield (f"{device}/sample_topk50_topp0.9_B8_V{V}", {
        "torch backend (reference)": lambda: pyalign.backends.torch_backend.guided_sample(zp8, zb8, *prm8f),
        "pyalign_C fused (direct)": lambda: C.guided_sample(zp8, zb8, *prm8f),
    }, "torch backend (reference)", sync)
    # 3. time vs T through the Amulet path
    yield (f"{device}/amulet_T_B1_V{V}", {
        "T=1 (reference)": lambda: C.guided_sample(zp, zb, torch.full((1,), pyalign.amulet_weight(1), device=dev),
                                                   *prm[1:]),
        "T=60": lambda: C.guided_sample(zp, zb, torch.full((1,), pyalign.amulet_weight(60), device=dev), *prm[1:]),
        "T=1000": lambda: C.guided_sample(zp, zb, torch.full((1,), pyalign.amulet_weight(1000), device=dev),
                                          *prm[1:]),
    }, "T=1 (reference)", sync)
    # 4. PAD top-k rescore, B=8, k=10
    rm = zb8[:, None, :]
    wk = torch.ones(8, 1, device=dev)
    t0 = torch.zeros(8, device=dev)

    def torch_pad():
        vals, cand = torch.topk(zp8, 10, dim=-1)
        r = torch.log_softmax(zb8.gather(-1, cand), -1) - torch.log_softmax(zb8.gather(-1, cand), -1)
        return cand.gather(-1, (vals + r).argmax(-1, keepdim=True))

    yield (f"{device}/topk_rescore_B8_k10_V{V}", {
        "torch topk+gather+log_softmax+argmax (reference)": torch_pad,
        "pyalign_C fused (direct)": lambda: C.topk_rescore(zp8, rm, zb8, 10, wk, t0, prm8[4]),
    }, "torch topk+gather+log_softmax+argmax (reference)", sync)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "ops_cpu.json"
    results = {} if args.force or not path.exists() else json.loads(path.read_text())
    with pyalign.backends.use("cpp"):
        from pyalign.backends import cpp_backend
        meta = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                "torch": torch.__version__, "build": cpp_backend.BUILD_INFO}
        results.setdefault("_meta", meta)
        devices = ["cpu"]
    if torch.cuda.is_available():
        try:
            from pyalign.backends import cuda_backend  # noqa: F401
            devices.append("cuda")
        except Exception as exc:  # noqa: BLE001
            print(f"[bench] skipping GPU section: {exc}")
    for device in devices:
        ctx = pyalign.backends.use("cpp" if device == "cpu" else "cuda")
        with ctx:
            for name, fns, ref_name, sync in configs(device):
                if name in results:
                    print(f"[bench] {name}: cached, skipped")
                    continue
                row = {}
                for label, fn in fns.items():
                    t = timeit(fn, args.seconds, sync)
                    row[label] = {"us": t}
                    print(f"[bench] {name} | {label}: {t:,.1f} µs", flush=True)
                for label in row:
                    row[label]["speedup_vs_reference"] = row[ref_name]["us"] / row[label]["us"]
                row["_reference"] = ref_name
                results[name] = row
                path.write_text(json.dumps(results, indent=2))
    write_md(results)
    write_png(results)


def write_md(results):
    lines = ["# pyalign op benchmarks", "", f"Machine: `{json.dumps(results.get('_meta', {}))}`", "",
             "Times are medians per call; speedup = reference time / time (reference measured in the same run).", ""]
    for name, row in results.items():
        if name.startswith("_"):
            continue
        lines += [f"## {name}", "", "| variant | µs/call | speedup vs reference |", "|---|---:|---:|"]
        for label, v in row.items():
            if label.startswith("_"):
                continue
            lines.append(f"| {label} | {v['us']:,.1f} | {v['speedup_vs_reference']:,.2f}× |")
        lines.append("")
    (OUT / "ops_cpu.md").write_text("\n".join(lines))


def write_png(results):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[bench] matplotlib missing: no plot")
        return
    rows = [(n, r) for n, r in results.items() if not n.startswith("_")]
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 2.2 * len(rows)))
    for ax, (name, row) in zip(axes if len(rows) > 1 else [axes], rows):
        labels = [k for k in row if not k.startswith("_")]
        ax.barh(labels, [row[k]["us"] for k in labels], color="tab:blue")
        ax.set_xscale("log")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("µs per call (log)", fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "ops_cpu.png", dpi=110)


if __name__ == "__main__":
    main()
