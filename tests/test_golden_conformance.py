"""Conformance with the authors' own Amulet and LA code (``shared/data/golden_authors_amulet_la_smollm2.jsonl``):
the exact input ids of both contexts fed to pyalign's batched, KV-cached path give the authors' greedy output ids
(default model, fp32, 24 new tokens, EOS included). A divergence is accepted only after a near-tie (< 1e-4
between the top-2 guided log-probs of the authors' uncached computation at the first differing step), and is
printed, never hidden. Our template must reproduce the authors' input ids."""
from __future__ import annotations

import json

import pytest
import torch

import pyalign
from pyalign.preferences import AMULET_SYSTEM_PROMPT, context_ids, get_preference

GOLDEN = "data/golden_authors_amulet_la_smollm2.jsonl"
NEAR_TIE = 1e-4


@pytest.fixture(scope="module")
def golden(shared_dir):
    return [json.loads(line) for line in open(shared_dir / GOLDEN)]


@pytest.fixture(scope="module")
def default_model():
    from pyalign.models import load_model
    try:
        return load_model()
    except FileNotFoundError as e:
        pytest.skip(str(e))


def _weight(row) -> float:
    h = row["hyper"]
    if row["method"] == "la":
        return 1.0 + h["ratio"]
    return pyalign.amulet_weight(h["T"], h["alpha"], h["lam"], h["eta"])


def _gap_at(model, row, j) -> float:
    """Top-2 gap of the guided log-probs at step j, computed like the authors (full forwards, no cache)."""
    prefix = row["output_ids"][:j]
    with torch.inference_mode():
        zp = model(input_ids=torch.tensor([row["pref_input_ids"] + prefix])).logits[:, -1].float()
        zb = model(input_ids=torch.tensor([row["base_input_ids"] + prefix])).logits[:, -1].float()
    top = pyalign.guided_logprobs(zp, zb, _weight(row)).topk(2).values[0]
    return float(top[0] - top[1])


@pytest.mark.model
def test_template_reproduces_golden_input_ids(golden, default_model):
    _, tok = default_model
    for row in golden:
        assert row["system_prompt"] == AMULET_SYSTEM_PROMPT
        pref = get_preference(row["preference"])
        assert row["preference_sentence"] == pref.sentence
        assert context_ids(tok, row["question"], pref) == (row["pref_input_ids"], row["base_input_ids"])


@pytest.mark.model
@pytest.mark.parametrize("method", ["amulet", "la"])
def test_golden_output_ids(golden, default_model, method):
    model, tok = default_model
    rows = [r for r in golden if r["method"] == method]
    assert rows
    h = rows[0]["hyper"]
    kw = dict(T=h["T"], alpha=h["alpha"], lam=h["lam"], eta=h["eta"]) if method == "amulet" else dict(ratio=h["ratio"])
    res = pyalign.generate(model, tok, [r["question"] for r in rows], "concise", method=method,
                           max_new_tokens=max(r["max_new_tokens"] for r in rows),
                           pref_input_ids=[r["pref_input_ids"] for r in rows],
                           base_input_ids=[r["base_input_ids"] for r in rows], **kw)
    exact = 0
    for row, r in zip(rows, res):
        gold = row["output_ids"]
        if r.token_ids == gold:
            exact += 1
            continue
        j = next((i for i, (a, b) in enumerate(zip(r.token_ids, gold)) if a != b), min(len(r.token_ids), len(gold)))
        gap = _gap_at(model, row, j)
        print(f"[golden] {method}/{row['preference']}/{row['question'][:40]!r}: first divergence at step {j}, "
              f"ours {r.token_ids[j:j + 3]} vs authors {gold[j:j + 3]}, top-2 gap {gap:.3g}")
        assert gap < NEAR_TIE, f"divergence at step {j} with a top-2 gap of {gap} (not a near-tie)"
    print(f"[golden] {method}: {exact}/{len(rows)} rows match exactly")
