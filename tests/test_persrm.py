"""PersRM training: pairs file validation, loss decrease, held-out preference accuracy, resume, PAD loading."""
from __future__ import annotations

import json
import math

import pytest
import torch

from pyalign.models import load_tokenizer, tiny_random_model
from pyalign.persrm import load_pairs, preference_accuracy, train_persrm
from pyalign.persrm.data import Pair

GOOD = ["wonderful", "happy", "bright", "joyful", "lovely"]
BAD = ["terrible", "sad", "gloomy", "awful", "miserable"]
TOPICS = ["rain", "cats", "work", "music", "trains", "tea", "books", "winter", "cities", "gardens"]


def pairs_for(topics, shift=0):
    out = []
    for i, t in enumerate(topics):
        g, b = GOOD[(i + shift) % 5], BAD[(i + shift) % 5]
        out.append(Pair(f"Tell me about {t}.", f"{t.capitalize()} are {g}, so {g}!", f"{t.capitalize()} are {b}, so {b}!",
                        ["uplifting"], [1.0]))
    return out


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def tiny(tok):
    return tiny_random_model(vocab_size=len(tok), hidden=32, seed=3)


def test_pairs_file_missing_field_names_the_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c", "preference": "concise"}) + "\n\n"
                 + json.dumps({"prompt": "a", "chosen": "b", "preference": "concise"}) + "\n")
    with pytest.raises(ValueError, match=r"p\.jsonl:3: missing field\(s\) rejected"):
        load_pairs(f)
    f.write_text("{not json\n")
    with pytest.raises(ValueError, match=r":1: not valid JSON"):
        load_pairs(f)
    f.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c", "preference": ["x", "y"],
                             "weights": [1]}) + "\n")
    with pytest.raises(ValueError, match="one number per preference"):
        load_pairs(f)


def test_training_lowers_loss_and_improves_heldout_accuracy(tok, tmp_path):
    model = tiny(tok)
    train, held = pairs_for(TOPICS[:8]), pairs_for(TOPICS[8:], shift=2)
    import copy
    ref = copy.deepcopy(model)
    acc0, m0 = preference_accuracy(model, ref, tok, held, beta=1.0)
    res = train_persrm(train, tmp_path / "rm", model=model, tokenizer=tok, epochs=4, lr=3e-3, beta=1.0,
                       batch_size=4, log=lambda s: None)
    h = [x["loss"] for x in res["history"]]
    assert len(h) == 8
    assert sum(h[-2:]) / 2 < h[0] - 0.05
    acc1, m1 = preference_accuracy(model, ref, tok, held, beta=1.0)
    assert acc0 == 0.5 and m0 == 0.0          # π_θ = π_ref before training: every margin is 0
    assert acc1 > acc0 and m1 > 0
    meta = json.loads((tmp_path / "rm" / "persrm.json").read_text())
    assert meta["ref_model"] == "ref" and (tmp_path / "rm" / "ref" / "config.json").exists()
    assert meta["placement"] == "system" and meta["template"] == "pad"
    # PAD loads the trained directory as its reward model
    import pyalign
    base = tiny(tok)
    res = pyalign.generate(base, tok, ["Tell me about rain."], "uplifting", method="pad", max_new_tokens=3,
                           reward=str(tmp_path / "rm"), k=4)[0]
    assert len(res.token_ids) == 3 and all(math.isfinite(x) and x <= 0 for x in res.logprobs)


def test_interrupted_run_resumes_without_loss(tok, tmp_path):
    data = pairs_for(TOPICS[:6])
    full = tiny(tok)
    train_persrm(data, tmp_path / "a", model=full, tokenizer=tok, epochs=2, lr=1e-3, beta=1.0, batch_size=2,
                 save_every=100, log=lambda s: None)

    def boom(step, loss):
        if step == 4:
            raise KeyboardInterrupt
    first = tiny(tok)
    with pytest.raises(KeyboardInterrupt):
        train_persrm(data, tmp_path / "b", model=first, tokenizer=tok, epochs=2, lr=1e-3, beta=1.0, batch_size=2,
                     save_every=100, log=lambda s: None, on_step=boom)
    assert json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["step"] == 4
    again = tiny(tok)                 # a fresh process: start from the initial weights, resume from the checkpoint
    res = train_persrm(data, tmp_path / "b", model=again, tokenizer=tok, epochs=2, lr=1e-3, beta=1.0, batch_size=2,
                       save_every=100, resume=True, log=lambda s: None)
    assert res["steps"] == 6 and [x["step"] for x in res["history"]] == [1, 2, 3, 4, 5, 6]
    for (n, p), (_, q) in zip(full.named_parameters(), again.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_cli_parser(tmp_path):
    import argparse
    from pyalign.persrm import cli
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    cli.add_parser(sub)
    a = ap.parse_args(["train-persrm", "--pairs", "x.jsonl", "--out", str(tmp_path), "--epochs", "2", "--lr", "1e-5",
                       "--beta", "0.2", "--batch-size", "3", "--max-steps", "7", "--resume"])
    assert (a.epochs, a.lr, a.beta, a.batch_size, a.max_steps, a.resume) == (2, 1e-5, 0.2, 3, 7, True)
    assert a.func is cli.run


@pytest.mark.parametrize("placement", ["system", "user"])
def test_training_contexts_are_pads_principle_rows(tok, placement):
    """PersRM training sees the contexts PAD decodes with: PAD's template through the one prompt path."""
    from pyalign.persrm.train import encode_pairs
    from pyalign.preferences import AMULET_SYSTEM_PROMPT, context_ids, get_preference
    p = Pair("Tell me about rain.", "Rain is lovely!", "Rain is awful.", ["uplifting", "like a pirate"], [1.0, 0.5])
    enc = encode_pairs([p], tok, placement=placement)[0]
    assert enc["ctx"] == [context_ids(tok, p.prompt, get_preference(d), placement, template="pad")[0]
                          for d in p.preferences]
    text = tok.decode(enc["ctx"][1])
    assert AMULET_SYSTEM_PROMPT.replace(" {preference}", "") in text
    assert "[Principles] like a pirate" in text and "[Instruction] Tell me about rain." in text
    user_turn = text.split("<|im_start|>user\n")[1]
    assert user_turn.startswith("[Guidelines]" if placement == "user" else "[Instruction]")


def test_resume_refuses_another_placement(tok, tmp_path):
    data = pairs_for(TOPICS[:4])
    with pytest.raises(RuntimeError):
        train_persrm(data, tmp_path / "rm", model=tiny(tok), tokenizer=tok, epochs=2, lr=1e-3, beta=1.0,
                     batch_size=2, save_every=1, log=lambda s: None,
                     on_step=lambda s, l: (_ for _ in ()).throw(RuntimeError("stop")) if s == 1 else None)
    with pytest.raises(ValueError, match="placement was system"):
        train_persrm(data, tmp_path / "rm", model=tiny(tok), tokenizer=tok, epochs=2, lr=1e-3, beta=1.0,
                     batch_size=2, save_every=1, resume=True, placement="user", log=lambda s: None)
    with pytest.raises(ValueError, match="placement must be"):
        train_persrm(data, tmp_path / "x", model=tiny(tok), tokenizer=tok, placement="middle")
