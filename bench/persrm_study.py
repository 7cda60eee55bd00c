"""PersRM study: build simulated preference pairs from ../shared/data questions, train a PersRM on the default
model, and measure its held-out preference accuracy before and after training.

    python bench/persrm_study.py --n 48 --preference uplifting --out-dir bench/results/persrm

Pairs (P-Soups style): chosen = the model's answer with the preference prompt, rejected = its answer with the
opposite preference (``--negative opposite``, default) or without one (``base``). The last ``--heldout``
fraction of the pairs (by question) is never trained on. Accuracy = fraction of held-out pairs whose PersRM
margin β(log π_θ/π_ref(chosen) − log π_θ/π_ref(rejected)) is > 0 (ties ½; before training every margin is 0).
Each stage is skipped when its output exists, so an interrupted study resumes (training itself resumes
from its checkpoint).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=48, help="questions")
    ap.add_argument("--preference", default="uplifting")
    ap.add_argument("--negative", choices=("base", "opposite"), default="opposite")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--heldout", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--out-dir", default="bench/results/persrm")
    a = ap.parse_args(argv)

    from pyalign.models import load_model
    from pyalign.persrm.data import load_pairs
    from pyalign.persrm.make_pairs import build_pairs, load_questions
    from pyalign.persrm.train import preference_accuracy, train_persrm

    out = pathlib.Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs_file = out / "pairs.jsonl"
    model, tok = load_model()
    t0 = time.time()
    if not pairs_file.exists():
        pairs = build_pairs(model, tok, load_questions(n=a.n), [a.preference], a.max_new_tokens, a.negative,
                            batch_size=8)
        tmp = pairs_file.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
        tmp.replace(pairs_file)
    lines = [ln for ln in pairs_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    n_train = int(round(len(lines) * (1 - a.heldout)))
    (out / "train.jsonl").write_text("".join(ln + "\n" for ln in lines[:n_train]), encoding="utf-8")
    (out / "heldout.jsonl").write_text("".join(ln + "\n" for ln in lines[n_train:]), encoding="utf-8")
    pairs, train, held = load_pairs(pairs_file), lines[:n_train], load_pairs(out / "heldout.jsonl")
    t_pairs = time.time() - t0
    acc0, margin0 = preference_accuracy(model, model, tok, held, beta=a.beta)
    t1 = time.time()
    summary = train_persrm(out / "train.jsonl", out / "model", model_path=None, epochs=a.epochs, lr=a.lr,
                           beta=a.beta, batch_size=a.batch_size, resume=(out / "model").exists())
    t_train = time.time() - t1
    trained, _ = load_model(out / "model")
    acc1, margin1 = preference_accuracy(trained, model, tok, held, beta=a.beta)
    res = {"preference": a.preference, "negative": a.negative, "pairs": len(pairs), "train_pairs": len(train),
           "heldout_pairs": len(held), "epochs": a.epochs, "lr": a.lr, "beta": a.beta,
           "loss_history": summary.get("history"),
           "steps": summary.get("steps"), "heldout_accuracy_before": acc0, "heldout_margin_before": margin0,
           "heldout_accuracy_after": acc1, "heldout_margin_after": margin1,
           "seconds_pairs": round(t_pairs, 1), "seconds_train": round(t_train, 1)}
    (out / "summary.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
