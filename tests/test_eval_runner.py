"""The evaluation runner (resume after a kill), grids, question loading, the CLI parser and the report."""
from __future__ import annotations

import argparse
import json

import pytest

from pyalign.evaluation import data as D
from pyalign.evaluation.cli import add_parsers, config_from_args
from pyalign.evaluation.report import mean_ci, write_report
from pyalign.evaluation.runner import (EvalConfig, parse_grid, read_jsonl, repair_tail, run_evaluation)
from pyalign.engine import GenerationResult


FakeResult = GenerationResult   # fake_generate returns the real result type


def fake_generate(prompts, method="amulet", preference=None, max_new_tokens=16, placement="system", **kw):
    """Deterministic answers: base is long, concise Amulet short, strong weights degenerate into the sentence."""
    out = []
    for p in prompts:
        words = [f"{method}{len(p) % 7}", "answer", "about"] + p.split()
        if method == "base":
            words = words + [f"detail{i}" for i in range(30)]
        if preference == "verbose":
            words = words + [f"more{i}" for i in range(2 * len(words))]
        if kw.get("weight", 0) and kw["weight"] > 4:
            words = f"Your answer should be {preference} as much as possible.".split()
        words = words[:max_new_tokens]
        ids = [len(w) for w in words]
        out.append(FakeResult(p, preference, method, " ".join(words), ids, [-0.5] * len(ids),
                              "length" if len(words) == max_new_tokens else "eos", 10 + len(p),
                              {"prefill_s": 0.01, "decode_s": 0.1, "total_s": 0.11, "tokens_per_s": 100.0,
                               "ms_per_token": 1.0}))
    return out


def _questions(tmp_path, n=5):
    f = tmp_path / "qs.json"
    f.write_text(json.dumps([{"index": i, "question": f"Question number {i}: how do I do thing {i}?"}
                             for i in range(n)]))
    return f


def _config(tmp_path, out, **kw):
    base = dict(data=[str(_questions(tmp_path))], preferences=["concise", "verbose"],
                methods=["base", "pref", "amulet"], grid=parse_grid(["amulet:weight=2,5.65"]),
                placements=["system", "user"], out=str(out), max_new_tokens=64, batch_size=2,
                coherence=False, progress=False)
    base.update(kw)
    return EvalConfig(**base)


def _strip(rows):
    return sorted((json.dumps({k: v for k, v in r.items() if k != "timings"}, sort_keys=True) for r in rows))


def test_resume_after_kill_gives_the_same_rows(tmp_path):
    full = tmp_path / "full.jsonl"
    stats = run_evaluation(_config(tmp_path, full), generate_fn=fake_generate)
    rows_full = read_jsonl(full)
    # 5 questions × (base: 2 prefs + pref: 2×2 + amulet 2 weights × 2 prefs × 2 placements) = 5 × 14
    assert stats["rows_written"] == len(rows_full) == 70
    assert len({r["key"] for r in rows_full}) == 70

    killed = tmp_path / "killed.jsonl"
    calls = {"n": 0}

    def dying(prompts, **kw):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt            # the process is killed during the 6th batch
        return fake_generate(prompts, **kw)

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(_config(tmp_path, killed), generate_fn=dying)
    partial = read_jsonl(killed)
    assert 0 < len(partial) < 70
    with killed.open("a") as f:                # ... and died in the middle of writing a line
        f.write('{"key": "dead", "text": "half a li')
    assert len(read_jsonl(killed)) == len(partial)   # the half line is tolerated when reading

    seen = []
    stats2 = run_evaluation(_config(tmp_path, killed), generate_fn=lambda p, **kw: seen.append(len(p)) or
                            fake_generate(p, **kw))
    assert stats2["rows_skipped"] == len(partial) and stats2["rows_written"] == 70 - len(partial)
    rows = read_jsonl(killed)
    assert _strip(rows) == _strip(rows_full)
    assert all(line.endswith("}") for line in killed.read_text().splitlines())
    # a third run has nothing to do and generates nothing
    stats3 = run_evaluation(_config(tmp_path, killed), generate_fn=lambda *a, **k: pytest.fail("regenerated"))
    assert stats3["rows_written"] == 0 and stats3["rows_skipped"] == 70


def test_rows_metrics_and_degeneration(tmp_path):
    out = tmp_path / "r.jsonl"
    run_evaluation(_config(tmp_path, out, limit=2), generate_fn=fake_generate)
    rows = read_jsonl(out)
    base = [r for r in rows if r["method"] == "base"]
    assert {r["placement"] for r in base} == {"-"} and len(base) == 4     # once per question, per preference
    strong = [r for r in rows if r["hyper"].get("weight") == 5.65]
    assert strong and all("echo" in r["degenerate"] for r in strong)
    assert all(r["degenerate"] == [] for r in base)
    r = rows[0]
    for k in ("key", "dataset", "question_id", "question", "preference", "method", "hyper", "placement", "text",
              "token_ids", "metrics", "timings", "finish_reason"):
        assert k in r
    assert r["dataset"] == "qs" and r["metrics"]["length_tokens"] == len(r["token_ids"])
    assert {"distinct_2", "rep_4", "diversity", "sentiment"} <= set(r["metrics"])


def test_repair_tail(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"a": 1}\n{"b": 2}\n{"c": ')
    assert repair_tail(f) == len('{"c": ')
    assert f.read_text() == '{"a": 1}\n{"b": 2}\n'
    assert repair_tail(f) == 0
    f.write_text('{"c": ')
    repair_tail(f)
    assert f.read_text() == ""


def test_parse_grid():
    g = parse_grid(["amulet:T=1,5,60", "amulet:weight=1.5,2", "la:ratio=1,2;T=5"])
    assert g["amulet"] == [{"T": 1}, {"T": 5}, {"T": 60}, {"weight": 1.5}, {"weight": 2}]
    assert g["la"] == [{"ratio": 1, "T": 5}, {"ratio": 2, "T": 5}]
    with pytest.raises(ValueError):
        parse_grid("amulet")
    with pytest.raises(ValueError):
        parse_grid("amulet:T")


def test_load_questions_formats(tmp_path, shared_dir):
    jl = tmp_path / "q.jsonl"
    jl.write_text('{"prompt": "first?"}\n\n{"instruction": "second?", "id": 7}\n"third?"\n')
    qs = D.load_questions(jl)
    assert [(q.id, q.text) for q in qs] == [("0", "first?"), ("7", "second?"), ("2", "third?")]
    koala = D.load_questions(shared_dir / "data" / "pad_koala_eval_50.json", limit=3)
    assert len(koala) == 3 and koala[0].dataset == "koala" and koala[0].text.startswith("List the layers")
    hs = D.load_questions(shared_dir / "data" / "amulet_HelpSteer_train.json", limit=2, offset=1)
    assert [q.id for q in hs] == ["1", "2"] and hs[0].dataset == "helpsteer"
    assert D.parse_preferences("concise, verbose,humor") == ["concise", "verbose", "humor"]
    assert D.parse_preferences("like a pirate, arr; formal") == ["like a pirate, arr", "formal"]
    assert D.preference_text("humor") == "humorous"
    bad = tmp_path / "bad.json"
    bad.write_text('[{"foo": 1}]')
    with pytest.raises(ValueError, match="question"):
        D.load_questions(bad)
    with pytest.raises(FileNotFoundError):
        D.load_questions(tmp_path / "missing.json")


def test_cli_parser_builds_config(tmp_path):
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["eval", "--data", str(_questions(tmp_path)), "--preferences", "concise,verbose",
                           "--methods", "base,amulet", "--limit", "2", "--max-new-tokens", "8", "--out",
                           str(tmp_path / "o.jsonl"), "--grid", "amulet:T=1,5", "--placement", "system,user",
                           "--seed", "3", "--batch-size", "4", "--judge-url", "http://localhost:1/v1"])
    cfg = config_from_args(a)
    assert cfg.methods == ["base", "amulet"] and cfg.grid == {"amulet": [{"T": 1}, {"T": 5}]}
    assert cfg.placements == ["system", "user"] and cfg.seed == 3 and cfg.judge == "http://localhost:1/v1"
    assert a.func.__name__ == "run_eval"
    r = parser.parse_args(["report", "x.jsonl", "--out", str(tmp_path)])
    assert r.func.__name__ == "run_report"


def test_report_renders_from_fixture(tmp_path):
    out = tmp_path / "r.jsonl"
    run_evaluation(_config(tmp_path, out, limit=3), generate_fn=fake_generate)
    with out.open("a") as f:
        f.write('{"truncated": ')
    res = write_report(out, tmp_path / "rep")
    md = res["markdown"].read_text()
    assert "| dataset | method | setting | placement | concise: length_words ↓ | verbose: length_words ↑" in md
    assert "| qs | amulet | weight=5.65 | user |" in md and "degenerate" in md and "## Speed" in md
    strong = [l for l in md.splitlines() if l.startswith("| qs | amulet | weight=5.65 | system |")][0]
    assert strong.rstrip(" |").endswith("6/6")          # every strong-weight answer echoes the sentence
    names = {p.name for p in res["plots"]}
    assert {"proxy_concise.png", "proxy_verbose.png", "speed.png"} <= names
    assert all(p.stat().st_size > 1000 for p in res["plots"])


def test_mean_ci():
    m, ci, n = mean_ci([1.0, 2.0, 3.0, None])
    assert (m, n) == (2.0, 3) and ci == pytest.approx(4.303 * 1.0 / 3 ** 0.5, rel=1e-3)
    assert mean_ci([])[2] == 0
