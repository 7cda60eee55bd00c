"""``pyalign report``: results JSONL → Markdown tables shaped like the Amulet paper's, and PNG plots.

Tables (rows: dataset × method × setting × placement; columns: preferences):
1. the *proxy metric* of each preference — the quantity the preference should move (length for concise and
   verbose, VADER sentiment for uplifting/pleasant/sycophantic, distinct-2 for creative, the reward-model
   score when present otherwise), with the number of degenerate answers of the row;
2. one table per metric (length, distinct-n, diversity, coherence, sentiment, reward, win rate vs base), the
   preferences as columns and their average, like the paper's tables;
3. speed: tokens/s and ms/token per method.
Plots: ``proxy_<preference>.png`` (each method's proxy metric, mean with a 95 % confidence interval) and
``speed.png`` (tokens/s per method).
"""
from __future__ import annotations

import math
import pathlib
from collections import OrderedDict, defaultdict
from typing import Optional, Sequence, Union

from . import data as data_mod
from .metrics import degeneration_flags
from .runner import _system_sentences, read_jsonl

METRICS = [("length_tokens", "length (tokens)"), ("length_words", "length (words)"), ("distinct_1", "distinct-1"),
           ("distinct_2", "distinct-2"), ("rep_2", "rep-2"), ("rep_4", "rep-4"), ("diversity", "diversity"),
           ("coherence", "coherence"), ("sentiment", "sentiment (VADER)"), ("reward", "reward"),
           ("win_vs_base", "win rate vs base")]


def proxy_metric(pref: str, available: Sequence[str] = ()) -> tuple[str, int]:
    """(metric, direction) the preference should move: its record's proxy (``pyalign.preferences``), else the
    reward-model score or the win rate when present, else the length in words."""
    try:
        rec = data_mod.preference_record(pref)
    except ValueError:               # a label that is no valid preference (a typo in old results)
        rec = None
    if rec is not None and rec.proxy:
        return rec.proxy, rec.proxy_sign
    for m in ("reward", "win_vs_base"):
        if m in available:
            return m, +1
    return "length_words", +1


_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t975(df: int) -> float:
    if df <= 0:
        return float("nan")
    keys = sorted(_T975)
    for k in keys:
        if df <= k:
            return _T975[k]
    return 1.96


def mean_ci(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, half-width of the 95 % t confidence interval, n); NaN/None values are ignored."""
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    n = len(v)
    if n == 0:
        return float("nan"), float("nan"), 0
    m = sum(v) / n
    if n == 1:
        return m, float("nan"), 1
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1))
    return m, t975(n - 1) * sd / math.sqrt(n), n


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}f}" if abs(x) < 1 else f"{x:.2f}"


def _row_label(r: dict) -> tuple:
    return (r.get("dataset", "?"), r.get("method", "?"), r.get("setting", "default"), r.get("placement", "-"))


def recompute_flags(rows: list[dict]) -> None:
    """Degeneration flags against the base answer of the same question (base rows may come from a later run)."""
    base = {(r.get("dataset"), r.get("question_id")): r for r in rows if r.get("method") == "base"}
    sys_sent = _system_sentences()
    for r in rows:
        if "text" not in r:
            continue
        b = base.get((r.get("dataset"), r.get("question_id")))
        pref = r.get("preference") or ""
        r["degenerate"] = degeneration_flags(
            r["text"], [data_mod.preference_sentence(pref)] + sys_sent if pref else sys_sent,
            base_text=None if (b is None or r.get("method") == "base") else b.get("text", ""),
            finish_reason=r.get("finish_reason"))


def summarise(rows: list[dict]) -> dict:
    """Nested aggregates: {(dataset, method, setting, placement): {preference: {metric: (mean, ci, n)},
    "_degenerate": {preference: count}, "_n": {preference: n}}}."""
    groups: dict = OrderedDict()
    for r in rows:
        groups.setdefault(_row_label(r), defaultdict(list))[r.get("preference", "?")].append(r)
    out: dict = OrderedDict()
    for label, by_pref in groups.items():
        entry: dict = {"_degenerate": {}, "_n": {}, "_flags": {}}
        for pref, rs in by_pref.items():
            names = sorted({k for x in rs for k in (x.get("metrics") or {})})
            entry[pref] = {k: mean_ci([(x.get("metrics") or {}).get(k) for x in rs]) for k in names}
            entry["_degenerate"][pref] = sum(1 for x in rs if x.get("degenerate"))
            entry["_n"][pref] = len(rs)
            fl: dict = defaultdict(int)
            for x in rs:
                for f in x.get("degenerate") or []:
                    fl[f] += 1
            entry["_flags"][pref] = dict(fl)
        out[label] = entry
    return out


def _sort_labels(labels):
    method_rank = {m: i for i, m in enumerate(["base", "pref", "la", "amulet", "beam", "pad", "args", "panda"])}
    return sorted(labels, key=lambda l: (l[0], method_rank.get(l[1], 99), l[1], l[3], l[2]))


def markdown(rows: list[dict], title: str = "pyalign evaluation") -> str:
    summary = summarise(rows)
    prefs = list(OrderedDict.fromkeys(r.get("preference", "?") for r in rows))
    available = sorted({k for r in rows for k in (r.get("metrics") or {})})
    labels = _sort_labels(summary)
    lines = [f"# {title}", "", f"{len(rows)} rows; {len({(r.get('dataset'), r.get('question_id')) for r in rows})} "
             f"questions; preferences: {', '.join(prefs)}.", ""]

    # 1. proxy metrics
    heads = []
    for p in prefs:
        m, d = proxy_metric(p, available)
        heads.append(f"{p}: {m} {'↓' if d < 0 else '↑'}")
    lines += ["## Proxy metric of each preference (mean ± 95% CI) and degenerate answers", "",
              "| dataset | method | setting | placement | " + " | ".join(heads) + " | degenerate |",
              "|---|---|---|---|" + "---|" * len(prefs) + "---|"]
    for lab in labels:
        e = summary[lab]
        cells = []
        for p in prefs:
            m, _ = proxy_metric(p, available)
            mean, ci, n = e.get(p, {}).get(m, (float("nan"), float("nan"), 0))
            cells.append(f"{_fmt(mean)} ± {_fmt(ci)}" if n > 1 else _fmt(mean))
        deg = sum(e["_degenerate"].values())
        tot = sum(e["_n"].values())
        lines.append(f"| {lab[0]} | {lab[1]} | {lab[2]} | {lab[3]} | " + " | ".join(cells) + f" | {deg}/{tot} |")
    lines.append("")

    # 2. one table per metric, preferences as columns + average
    for key, name in METRICS:
        if key not in available:
            continue
        lines += [f"## {name}", "", "| dataset | method | setting | placement | " + " | ".join(prefs) + " | avg |",
                  "|---|---|---|---|" + "---|" * (len(prefs) + 1)]
        for lab in labels:
            e = summary[lab]
            vals = [e.get(p, {}).get(key, (float("nan"), 0, 0))[0] for p in prefs]
            ok = [v for v in vals if not math.isnan(v)]
            avg = sum(ok) / len(ok) if ok else float("nan")
            lines.append(f"| {lab[0]} | {lab[1]} | {lab[2]} | {lab[3]} | " + " | ".join(_fmt(v) for v in vals)
                         + f" | {_fmt(avg)} |")
        lines.append("")

    # degeneration detail
    lines += ["## Degeneration flags", "",
              "| dataset | method | setting | placement | " + " | ".join(prefs) + " |",
              "|---|---|---|---|" + "---|" * len(prefs)]
    for lab in labels:
        e = summary[lab]
        cells = []
        for p in prefs:
            fl = e["_flags"].get(p, {})
            cells.append(", ".join(f"{k} {v}" for k, v in sorted(fl.items())) or "0")
        lines.append(f"| {lab[0]} | {lab[1]} | {lab[2]} | {lab[3]} | " + " | ".join(cells) + " |")
    lines.append("")

    # 3. speed
    sp = speed_table(rows)
    if sp:
        lines += ["## Speed (generation batch as run; tokens/s = steady decode rate per row)", "",
                  "| method | setting | tokens/s | ms/token | rows |", "|---|---|---|---|---|"]
        for (m, s), (tps, ms, n) in sp.items():
            lines.append(f"| {m} | {s} | {_fmt(tps)} | {_fmt(ms)} | {n} |")
        lines.append("")
    return "\n".join(lines)


def speed_table(rows: list[dict]) -> dict:
    acc: dict = OrderedDict()
    seen = set()
    for r in rows:
        t = r.get("timings") or {}
        ident = (r.get("dataset"), r.get("question_id"), r.get("method"), r.get("setting"), r.get("placement"),
                 r.get("preference") if r.get("method") != "base" else "")
        if ident in seen or not t.get("tokens_per_s"):
            continue
        seen.add(ident)
        acc.setdefault((r.get("method"), r.get("setting", "default")), []).append(
            (t["tokens_per_s"], t.get("ms_per_token", float("nan"))))
    out: dict = OrderedDict()
    for k in sorted(acc, key=lambda k: (k[0], k[1])):
        v = acc[k]
        out[k] = (sum(a for a, _ in v) / len(v), sum(b for _, b in v) / len(v), len(v))
    return out


def plots(rows: list[dict], out_dir: Union[str, pathlib.Path]) -> list[pathlib.Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir = pathlib.Path(out_dir)
    summary = summarise(rows)
    labels = _sort_labels(summary)
    prefs = list(OrderedDict.fromkeys(r.get("preference", "?") for r in rows))
    available = sorted({k for r in rows for k in (r.get("metrics") or {})})
    files = []
    for p in prefs:
        m, d = proxy_metric(p, available)
        names, means, cis = [], [], []
        for lab in labels:
            mean, ci, n = summary[lab].get(p, {}).get(m, (float("nan"), float("nan"), 0))
            if n == 0:
                continue
            short = lab[1] + ("" if lab[2] == "default" else f"\n{lab[2]}") + ("" if lab[3] in ("-", "system")
                                                                                 else f"\n[{lab[3]}]")
            if len({l[0] for l in labels}) > 1:
                short = f"{lab[0]}\n" + short
            names.append(short)
            means.append(mean)
            cis.append(0.0 if math.isnan(ci) else ci)
        if not names:
            continue
        fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.6))
        colors = ["#888888" if n.split("\n")[-1] == "base" or n.startswith("base") else "#3b75af" for n in names]
        ax.bar(range(len(names)), means, yerr=cis, capsize=4, color=colors)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, fontsize=7)
        ax.set_ylabel(f"{m} ({'lower' if d < 0 else 'higher'} = more {p})")
        ax.set_title(f"preference: {p} (mean, 95% CI)")
        fig.tight_layout()
        safe = "".join(ch if ch.isalnum() else "_" for ch in p)[:40]
        f = out_dir / f"proxy_{safe}.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f)
    sp = speed_table(rows)
    if sp:
        fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(sp) + 1.5), 3.4))
        keys = list(sp)
        ax.bar(range(len(keys)), [sp[k][0] for k in keys], color="#4c9a5a")
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([k[0] if k[1] == "default" else f"{k[0]}\n{k[1]}" for k in keys], fontsize=7)
        ax.set_ylabel("tokens / s (per row)")
        ax.set_title("decoding speed per method")
        fig.tight_layout()
        f = out_dir / "speed.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f)
    return files


def write_report(results: Union[str, pathlib.Path, Sequence[Union[str, pathlib.Path]]],
                 out_dir: Union[str, pathlib.Path], with_plots: bool = True,
                 title: Optional[str] = None) -> dict:
    """Read one or more results files, write ``report.md`` (and PNGs) into ``out_dir``; returns the paths."""
    paths = [results] if isinstance(results, (str, pathlib.Path)) else list(results)
    rows = [r for p in paths for r in read_jsonl(p)]
    if not rows:
        raise ValueError(f"no result rows in {', '.join(map(str, paths))}")
    # one row per key (a results file concatenated twice, or re-runs): keep the last
    by_key: dict = OrderedDict()
    for r in rows:
        by_key[r.get("key") or id(r)] = r
    rows = list(by_key.values())
    recompute_flags(rows)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(rows, title or f"pyalign evaluation: {', '.join(pathlib.Path(p).name for p in paths)}")
    pngs = plots(rows, out_dir) if with_plots else []
    if pngs:
        md += "\n## Plots\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in pngs) + "\n"
    (out_dir / "report.md").write_text(md, encoding="utf-8")
    return {"markdown": out_dir / "report.md", "plots": pngs, "rows": len(rows)}
