"""The HF engine: incremental text, continuous batching (join, leave, cancel), one host sync per step, errors."""
from __future__ import annotations

import random

import pytest
import torch

import pyalign
from pyalign.engine import hf as H
from pyalign.engine.text import RowText
from pyalign.errors import InvalidArgument, Overloaded
from pyalign.methods import SamplingParams
from pyalign.models import load_tokenizer, tiny_random_model

PROMPTS = ["How do I boil an egg?", "Write one sentence about the sea, please, with some detail in it.", "Why?",
           "Name three colours."]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def tiny(tok):
    return tiny_random_model(vocab_size=len(tok), hidden=32, layers=2, heads=4, seed=0, max_positions=512)


# ----------------------------------------------------------------------------------------------- text
def test_incremental_text_equals_full_decode(tok):
    rng = random.Random(0)
    emoji = tok("🙂 naïve café — 日本語", add_special_tokens=False)["input_ids"]
    for trial in range(150):
        ids = [rng.randrange(len(tok)) for _ in range(rng.randint(1, 30))]
        if trial % 3 == 0:                                  # multi-byte characters split over tokens
            ids = ids[:5] + emoji + ids[5:]
        t = RowText(tok)
        streamed = "".join(t.add(i) for i in ids) + t.flush()
        full = tok.decode(ids, skip_special_tokens=True)
        assert t.text == full and streamed == full


def test_incremental_stop_strings_hold_back(tok):
    ids = tok("Hello there. STOP and more text", add_special_tokens=False)["input_ids"]
    t = RowText(tok, stop=("STOP",))
    deltas = []
    for i in ids:
        deltas.append(t.add(i))
        if t.stopped:
            break
    assert t.stopped and t.text == "Hello there. " and "".join(deltas) == t.text
    assert all("S" not in d for d in deltas[:-1])           # no prefix of the stop string streamed early


# ----------------------------------------------------------------------------------------------- batching
def _alone(tiny, tok, prompt, method, preference, n, **kw):
    [r] = pyalign.generate(tiny, tok, prompt, preference, method=method, max_new_tokens=n, ignore_eos=True, **kw)
    return r.token_ids


def test_requests_join_a_running_batch_and_leave_it(tiny, tok):
    """Mixed methods, preferences and lengths; requests arrive while others decode; each answer equals the
    answer computed alone, and the batch shrinks as rows finish."""
    eng = H.HFEngine(tiny, tok, max_batch=8)
    plan = [(PROMPTS[0], "amulet", "concise", 6), (PROMPTS[1], "base", None, 3), (PROMPTS[2], "la", "formal", 7),
            (PROMPTS[3], "pref", "verbose", 5)]
    ids, got, rows_seen = {}, {}, []
    for step in range(40):
        if step < len(plan):               # one new request per step
            p, m, pref, n = plan[step]
            rid = eng.submit(p, pref, m, SamplingParams(max_new_tokens=n, ignore_eos=True))
            ids[rid] = plan[step]
        if not eng.has_work():
            break
        for ev in eng.step():
            got.setdefault(ev.request_id, []).append(ev.token_id)
        rows_seen.append(0 if eng.guided.batch is None else eng.guided.batch.num_rows)
    assert not eng.has_work()
    for rid, (p, m, pref, n) in ids.items():
        assert got[rid] == _alone(tiny, tok, p, m, pref, n), (m, p)
    assert max(rows_seen) >= 5 and rows_seen[-1] == 0           # several requests at once, then all left
    assert any(b < a for a, b in zip(rows_seen, rows_seen[1:]))


def test_same_seed_same_answer_whatever_the_batch(tiny, tok):
    kw = dict(temperature=0.9, top_k=40, top_p=0.95, seed=7)
    s = SamplingParams(max_new_tokens=6, ignore_eos=True, **kw)
    eng = H.HFEngine(tiny, tok)
    a = eng.run([eng.build_request(PROMPTS[1], "uplifting", "amulet", s)])[0].token_ids
    eng2 = H.HFEngine(tiny, tok)
    crowd = [eng2.build_request(PROMPTS[i], "concise", "la", SamplingParams(max_new_tokens=4, temperature=1.0))
             for i in (0, 2, 3)]
    mine = eng2.build_request(PROMPTS[1], "uplifting", "amulet", s)
    out = eng2.run(crowd[:2] + [mine] + crowd[2:])
    assert out[2].token_ids == a


def test_eviction_does_not_change_tokens(tiny, tok):
    """Rows leaving the batch (and the trimmed padding) change no token of the rows that stay."""
    reqs = lambda e: [e.build_request(p, "concise", "amulet", SamplingParams(max_new_tokens=n, ignore_eos=True))
                      for p, n in zip(PROMPTS, (2, 9, 4, 6))]
    a = H.HFEngine(tiny, tok)
    b = H.HFEngine(tiny, tok, evict_finished=False)
    ra, rb = a.run(reqs(a)), b.run(reqs(b))
    assert [r.token_ids for r in ra] == [r.token_ids for r in rb]
    assert [len(r.token_ids) for r in ra] == [2, 9, 4, 6]


def test_cancel_frees_rows(tiny, tok):
    eng = H.HFEngine(tiny, tok)
    keep = eng.submit(PROMPTS[0], "concise", "amulet", SamplingParams(max_new_tokens=5, ignore_eos=True))
    gone = eng.submit(PROMPTS[1], "concise", "amulet", SamplingParams(max_new_tokens=50, ignore_eos=True))
    eng.step()
    assert eng.guided.batch.num_rows == 4
    eng.cancel(gone)
    evs = eng.step()
    assert [e.finish_reason for e in evs if e.request_id == gone] == ["cancelled"]
    assert eng.guided.batch.num_rows == 2
    toks = [e.token_id for e in evs if e.request_id == keep]
    while eng.has_work():
        toks += [e.token_id for e in eng.step() if e.request_id == keep]
    first = _alone(tiny, tok, PROMPTS[0], "amulet", "concise", 5)
    assert first[1:] == toks


def test_one_host_sync_per_step(tiny, tok, monkeypatch):
    """The decode loop brings tokens and log-probs back in ONE copy per step: count every tensor-to-host
    conversion (tolist, item, bool, int, float) during steps after admission, outside the model's own forward
    (transformers' SDPA mask builder checks the padding mask with one ``bool()`` per forward; that is the
    model's, not the loop's)."""
    eng = H.HFEngine(tiny, tok)
    in_model = {"depth": 0}
    inner_forward = tiny.forward

    def forward(*a, **k):
        in_model["depth"] += 1
        try:
            return inner_forward(*a, **k)
        finally:
            in_model["depth"] -= 1
    monkeypatch.setattr(tiny, "forward", forward)
    for i, p in enumerate(PROMPTS):
        eng.submit(p, "concise", ("amulet", "la", "base", "pref")[i],
                   SamplingParams(max_new_tokens=6, temperature=0.7 if i % 2 else 0.0, seed=i, ignore_eos=True))
    eng.step()                                       # admission (prefill) step
    counts = {"n": 0}
    for name in ("tolist", "item", "__bool__", "__int__", "__float__"):
        orig = getattr(torch.Tensor, name)

        def counted(self, *a, _orig=orig, **k):
            counts["n"] += in_model["depth"] == 0
            return _orig(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    steps = 0
    while eng.has_work():
        eng.step()
        steps += 1
    monkeypatch.undo()
    assert steps == 5 and counts["n"] == steps


# ----------------------------------------------------------------------------------------------- errors
def test_submit_validates_and_names_the_field(tiny, tok):
    eng = H.HFEngine(tiny, tok, max_waiting=1)
    cases = [(dict(prompt="", method="base"), "prompt"), (dict(prompt=[], method="base"), "messages"),
             (dict(prompt="Hi", method="nope"), "method"), (dict(prompt="Hi", method="amulet"), "preference"),
             (dict(prompt="Hi", method="amulet", preference="concize"), "preference"),
             (dict(prompt="Hi", method="amulet", preference="concise", eta=0.0), "eta"),
             (dict(prompt="Hi", method="amulet", preference="concise", ratio=1.0), "ratio"),
             (dict(prompt="word " * 600, method="base"), "prompt")]
    for kw, param in cases:
        with pytest.raises(InvalidArgument) as e:
            eng.submit(**kw)
        assert e.value.param == param, (kw, e.value)
    with pytest.raises(InvalidArgument) as e:
        SamplingParams(temperature=-1)
    assert e.value.param == "temperature"
    eng.submit("Hi", method="base")
    with pytest.raises(Overloaded):
        eng.submit("Hi again", method="base")


class _NaNModel(torch.nn.Module):
    """Wraps a model; its logits become NaN for every row after ``after`` forwards."""

    def __init__(self, inner, after):
        super().__init__()
        self.inner, self.after, self.calls = inner, after, 0
        self.config, self.generation_config = inner.config, inner.generation_config

    def get_output_embeddings(self):
        return None

    def forward(self, **kw):
        out = self.inner(**kw)
        self.calls += 1
        if self.calls > self.after:
            out.logits = torch.full_like(out.logits, float("nan"))
        return out


def test_nan_logits_fail_the_request_with_a_clear_error(tiny, tok):
    with pytest.raises(ValueError, match="NaN"):
        pyalign.generate(_NaNModel(tiny, 2), tok, PROMPTS[:2], "concise", method="amulet", max_new_tokens=5)
