"""Amulet strength × preference placement study on the default model.

Sweeps Amulet's guidance weight A directly (1 = plain preference prompt "Pref", 1.5, 2, 3, and 5.65 = the
official T=60, α=2, λ=2, η=10) × placement of the preference sentence (system prompt, user turn) for
concise / verbose / uplifting / creative, next to the base answer, and summarises which settings move each
preference the intended way without degenerating:

    concise   → fewer words than base          verbose  → more words than base
    uplifting → higher VADER sentiment          creative → higher distinct-2

It is ``pyalign eval`` with a grid (the same resumable JSONL), i.e. equivalent to

    pyalign eval --data helpsteer --preferences concise,verbose,uplifting,creative --methods base \\
        --grid "amulet:weight=1,1.5,2,3,5.65" --placement system,user --limit 8 --max-new-tokens 96 \\
        --out runs/strength/results.jsonl

followed by the summary below (``--summary-only`` re-summarises an existing file).

    python bench/strength_study.py --limit 8 --max-new-tokens 96 --out-dir runs/strength
"""
from __future__ import annotations

import argparse
import math
import pathlib
import sys
from collections import defaultdict

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from pyalign.evaluation.report import mean_ci, proxy_metric, recompute_flags, write_report  # noqa: E402
from pyalign.evaluation.runner import EvalConfig, parse_grid, read_jsonl, run_evaluation  # noqa: E402

PREFERENCES = ("concise", "verbose", "uplifting", "creative")
WEIGHTS = (1, 1.5, 2, 3, 5.65)


def summarise(rows: list[dict], max_degenerate_frac: float = 0.125) -> str:
    recompute_flags(rows)
    base = {(r["dataset"], r["question_id"], r["preference"]): r for r in rows if r["method"] == "base"}
    groups: dict = defaultdict(list)
    for r in rows:
        if r["method"] == "base":
            continue
        groups[(r["preference"], r["method"], r["setting"], r["placement"])].append(r)
    prefs = sorted({g[0] for g in groups}, key=lambda p: PREFERENCES.index(p) if p in PREFERENCES else 99)
    lines = ["# Amulet strength × placement study", "",
             "Effect = mean over questions of (method − base) of the preference's proxy metric, signed so that "
             "positive = the intended direction; 95% CI from the paired differences. A setting *works* when the "
             f"CI excludes 0 on the positive side and at most {max_degenerate_frac:.0%} of its answers degenerate.", ""]
    best_lines = []
    for p in prefs:
        metric, sign = proxy_metric(p)
        lines += [f"## {p} (proxy: {metric}, intended {'down' if sign < 0 else 'up'})", "",
                  "| method | setting | placement | mean | base mean | effect ± 95% CI | degenerate | works |",
                  "|---|---|---|---|---|---|---|---|"]
        cands = []
        for (pp, m, s, pl), rs in sorted(groups.items()):
            if pp != p:
                continue
            vals, bvals, diffs = [], [], []
            for r in rs:
                b = base.get((r["dataset"], r["question_id"], p))
                v = (r.get("metrics") or {}).get(metric)
                if v is None:
                    continue
                vals.append(v)
                if b is not None and (b.get("metrics") or {}).get(metric) is not None:
                    bvals.append(b["metrics"][metric])
                    diffs.append(sign * (v - b["metrics"][metric]))
            mean = mean_ci(vals)[0]
            bmean = mean_ci(bvals)[0]
            eff, ci, n = mean_ci(diffs)
            deg = sum(1 for r in rs if r.get("degenerate"))
            works = n > 1 and not math.isnan(ci) and eff - ci > 0 and deg <= max_degenerate_frac * len(rs)
            cands.append((works, eff, m, s, pl, deg, len(rs)))
            lines.append(f"| {m} | {s} | {pl} | {mean:.3g} | {bmean:.3g} | {eff:+.3g} ± {ci:.2g} | {deg}/{len(rs)} | "
                         f"{'yes' if works else 'no'} |")
        lines.append("")
        good = [c for c in cands if c[0]]
        if good:
            w = max(good, key=lambda c: c[1])
            best_lines.append(f"- **{p}**: best working setting {w[2]} {w[3]} [{w[4]}] (effect {w[1]:+.3g}, "
                              f"{w[5]}/{w[6]} degenerate); working: "
                              + ", ".join(f"{c[3]} [{c[4]}]" for c in good))
        else:
            best_lines.append(f"- **{p}**: no setting moves {metric} the intended way significantly without "
                              "degenerating")
    return "\n".join(lines + ["## Summary", ""] + best_lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="helpsteer")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--preferences", default=",".join(PREFERENCES))
    ap.add_argument("--weights", default=",".join(str(w) for w in WEIGHTS))
    ap.add_argument("--placements", default="system,user")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--model", default=None)
    ap.add_argument("--out-dir", default="runs/strength")
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--no-coherence", action="store_true")
    a = ap.parse_args(argv)
    out_dir = pathlib.Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / "results.jsonl"
    if not a.summary_only:
        cfg = EvalConfig(data=[a.data], preferences=[p.strip() for p in a.preferences.split(",")],
                         methods=["base"], grid=parse_grid([f"amulet:weight={a.weights}"]),
                         placements=[p.strip() for p in a.placements.split(",")], out=str(results), limit=a.limit,
                         max_new_tokens=a.max_new_tokens, batch_size=a.batch_size, model=a.model,
                         coherence=not a.no_coherence)
        stats = run_evaluation(cfg)
        print(f"[strength] {stats}", file=sys.stderr)
    rows = read_jsonl(results)
    text = summarise(rows)
    (out_dir / "summary.md").write_text(text)
    write_report(results, out_dir / "report")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
