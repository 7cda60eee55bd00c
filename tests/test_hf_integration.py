"""AmuletLogitsProcessor inside Hugging Face ``model.generate`` gives pyalign.generate(method="amulet")'s tokens."""
from __future__ import annotations

import pytest
import torch

import pyalign
from pyalign.preferences import context_ids, get_preference
from pyalign.models import load_tokenizer, tiny_random_model

PROMPTS = ["How do I boil an egg?", "Write one sentence about the sea, please, with some detail in it."]


@pytest.fixture(scope="module")
def tok():
    try:
        return load_tokenizer()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def tiny(tok):
    return tiny_random_model(vocab_size=len(tok), hidden=32, layers=2, heads=4, seed=1, max_positions=512)


def _hf(model, tok, prompts, n, **proc_kwargs):
    pref = [context_ids(tok, p, get_preference("concise"))[0] for p in prompts]
    base = [context_ids(tok, p, None)[1] for p in prompts]
    L = max(map(len, pref))
    ids = torch.tensor([[tok.pad_token_id] * (L - len(s)) + s for s in pref])
    mask = torch.tensor([[0] * (L - len(s)) + [1] * len(s) for s in pref])
    proc = pyalign.AmuletLogitsProcessor(model, base, **proc_kwargs)
    out = model.generate(input_ids=ids, attention_mask=mask, logits_processor=[proc], do_sample=False,
                         max_new_tokens=n, min_new_tokens=n, pad_token_id=tok.pad_token_id, eos_token_id=None)
    return out[:, L:].tolist()


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS])
def test_processor_matches_generate_amulet(tiny, tok, prompts):
    n = 6
    hf = _hf(tiny, tok, prompts, n)
    ours = pyalign.generate(tiny, tok, prompts, "concise", method="amulet", max_new_tokens=n)
    assert hf == [r.token_ids for r in ours]


def test_processor_ratio_is_la(tiny, tok):
    hf = _hf(tiny, tok, PROMPTS[:1], 5, ratio=2.0)
    [ours] = pyalign.generate(tiny, tok, PROMPTS[:1], "concise", method="la", max_new_tokens=5)
    assert hf == [ours.token_ids]


def test_processor_rejects_row_mismatch(tiny, tok):
    proc = pyalign.AmuletLogitsProcessor(tiny, [context_ids(tok, PROMPTS[0], None)[1]])
    with pytest.raises(ValueError, match="base rows"):
        proc(torch.zeros((2, 3), dtype=torch.long), torch.zeros((2, len(tok))))


@pytest.mark.model
def test_processor_default_model():
    from pyalign.models import load_model
    try:
        model, tok = load_model()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    q = "Name a fruit."
    pref = torch.tensor([context_ids(tok, q, get_preference("verbose"))[0]])
    proc = pyalign.AmuletLogitsProcessor(model, [context_ids(tok, q, None)[1]])
    out = model.generate(pref, attention_mask=torch.ones_like(pref), logits_processor=[proc], do_sample=False,
                         max_new_tokens=6, pad_token_id=tok.pad_token_id)
    [ours] = pyalign.generate(model, tok, q, "verbose", method="amulet", max_new_tokens=6)
    assert out[0, pref.shape[1]:].tolist() == ours.token_ids
