"""Device time of the compiled Triton sampler on a CUDA GPU: greedy / sampled / filtered (top-k 50 + top-p 0.9),
and the filtered-to-sampled ratio the filtered design targets (<= ~2x).

    python bench/bench_triton_gpu.py [--quick]      # writes bench/results/triton_gpu_<device>.{md,json}

Device µs per call from CUDA events over a CUDA-graph of 20 calls (no host overhead in the number), for
B in {1, 8, 64, 256} x V in {32000, 128256, 262144} x fp32/bf16 and two logit shapes: "llm" (a peaked,
language-model-like row: Zipf-distributed logits, the nucleus holds tens of tokens) and "flat" (N(0, 1)
logits: a near-uniform row, the hard case for top-p). Achieved GB/s counts 2·B·V·itemsize bytes (two contexts).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyalign.triton_kernels.guided_sample import guided_sample  # noqa: E402

MODES = {"greedy": (0.0, 0, 1.0), "sampled": (1.0, 0, 1.0), "top-k50+top-p0.9": (1.0, 50, 0.9),
         "top-p0.9": (1.0, 0, 0.9)}


def _logits(B, V, dtype, shape, gen):
    if shape == "flat":
        return torch.randn(B, V, device="cuda", generator=gen).to(dtype)
    ranks = torch.randperm(V, device="cuda", generator=gen).float() + 1.0          # Zipf: p_i ∝ 1 / rank_i
    return (-torch.log(ranks) * 1.1 + 0.05 * torch.randn(B, V, device="cuda", generator=gen)).to(dtype)


def _time(fn, reps=20, graphs=True):
    fn()
    torch.cuda.synchronize()
    if graphs:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(reps):
                fn()
        run = g.replay
    else:
        def run():
            for _ in range(reps):
                fn()
    run()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(5):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        run()
        b.record()
        b.synchronize()
        best = min(best, a.elapsed_time(b) * 1e3 / reps)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="B in {1, 64}, V = 128256, bf16 only")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    Bs, Vs, dts = ([1, 64], [128256], [torch.bfloat16]) if args.quick else \
        ([1, 8, 64, 256], [32000, 128256, 262144], [torch.float32, torch.bfloat16])
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows = []
    for dt in dts:
        for V in Vs:
            for B in Bs:
                for shape in ("llm", "flat"):
                    zp, zb = _logits(B, V, dt, shape, gen), _logits(B, V, dt, shape, gen)
                    w = torch.full((B,), 2.0, device="cuda")
                    rng = torch.stack([torch.arange(B, device="cuda") + 11, torch.zeros(B, dtype=torch.int64,
                                                                                        device="cuda")], 1)
                    res = {}
                    for mode, (tau, k, p) in MODES.items():
                        tt = torch.full((B,), tau, device="cuda")
                        kk = torch.full((B,), k, dtype=torch.int64, device="cuda")
                        pp = torch.full((B,), p, device="cuda")
                        res[mode] = _time(lambda: guided_sample(zp, zb, w, tt, kk, pp, rng))
                    gbs = 2 * B * V * zp.element_size() / (res["sampled"] * 1e-6) / 1e9
                    rows.append(dict(dtype=str(dt).split(".")[-1], V=V, B=B, logits=shape, **res, sampled_GBps=gbs,
                                     ratio_topk_topp=res["top-k50+top-p0.9"] / res["sampled"],
                                     ratio_topp=res["top-p0.9"] / res["sampled"]))
                    print(rows[-1], flush=True)
    name = torch.cuda.get_device_name().replace(" ", "_")
    out = ROOT / "bench" / "results" / f"triton_gpu_{name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(dict(device=torch.cuda.get_device_name(), rows=rows), indent=1))
    cols = ["dtype", "V", "B", "logits", *MODES, "sampled_GBps", "ratio_topk_topp", "ratio_topp"]
    lines = [f"# Triton guided_sample on {torch.cuda.get_device_name()} (device µs per call)", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.md/.json")


if __name__ == "__main__":
    main()
