"""Build a small PersRM pair set, P-Soups style (simulated preferences).

For each question (the question sets in ``../shared/data/`` beside the repository, read like the evaluation's) and each
preference p: chosen = the model's answer WITH the preference prompt (method ``pref``, Amulet's preference
sentence), rejected = its answer WITHOUT it (method ``base``), or with the opposite preference
(``--negative opposite``: the preference record's ``opposite``, e.g. "long-winded and verbose" for
concise). Greedy by default; identical chosen/rejected answers are skipped.

    python bench/make_persrm_pairs.py --out pairs.jsonl --n 16 --preferences uplifting,concise
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

from ..preferences import get_preference

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"   # ../shared/data


def load_questions(data_dir=DEFAULT_DATA, n: int = 16, files=None) -> list[str]:
    """The first ``n`` distinct questions of the question sets ``files`` (default: every ``*.json`` of
    ``data_dir``), each read by ``pyalign.evaluation.data.load_questions``; files that are not question sets
    are skipped."""
    from ..evaluation.data import load_questions as read_question_set
    qs: list[str] = []
    seen: set[str] = set()
    paths = [pathlib.Path(f) for f in files] if files else sorted(pathlib.Path(data_dir).glob("*.json"))
    for path in paths:
        try:
            questions = read_question_set(path)
        except (ValueError, UnicodeDecodeError):        # not a question set (json errors are ValueErrors)
            continue
        for q in questions:
            text = q.text.strip()
            if text not in seen:
                seen.add(text)
                qs.append(text)
    if not qs:
        raise FileNotFoundError(f"no questions found in {data_dir}")
    return qs[:n]


def build_pairs(model, tok, questions, preferences, max_new_tokens: int = 64, negative: str = "base",
                batch_size: int = 4, log=None) -> list[dict]:
    from ..engine.generate import generate
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    pairs = []
    for pref in preferences:
        for i in range(0, len(questions), batch_size):
            qs = questions[i:i + batch_size]
            ch = generate(model, tok, qs, pref, method="pref", max_new_tokens=max_new_tokens)
            if negative == "opposite":
                rj = generate(model, tok, qs, get_preference(pref).opposite, method="pref",
                              max_new_tokens=max_new_tokens)
            else:
                rj = generate(model, tok, qs, None, method="base", max_new_tokens=max_new_tokens)
            for q, c, r in zip(qs, ch, rj):
                if c.text.strip() and r.text.strip() and c.text.strip() != r.text.strip():
                    pairs.append({"prompt": q, "chosen": c.text.strip(), "rejected": r.text.strip(),
                                  "preference": pref})
            log(f"[pairs] {pref}: {min(i + batch_size, len(questions))}/{len(questions)} questions")
    return pairs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA))
    ap.add_argument("--n", type=int, default=16, help="number of questions")
    ap.add_argument("--preferences", default="uplifting")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--negative", choices=("base", "opposite"), default="base")
    ap.add_argument("--model", default=None)
    a = ap.parse_args(argv)
    from ..models import load_model
    model, tok = load_model(a.model)
    qs = load_questions(a.data_dir, a.n)
    pairs = build_pairs(model, tok, qs, [p.strip() for p in a.preferences.split(",") if p.strip()],
                        a.max_new_tokens, a.negative)
    with open(a.out, "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    print(f"wrote {len(pairs)} pairs to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
