"""pyalign.generate, the method registry and the templates, on a tiny random Llama with the default model's
tokenizer (its chat template and vocabulary; the 135M weights are not loaded except for ``model`` tests)."""
from __future__ import annotations

import pytest
import torch

import pyalign
from pyalign import methods as M
from pyalign.methods import registry as R
from pyalign.models import load_tokenizer, tiny_random_model
from pyalign.preferences import (AMULET_SYSTEM_PROMPT, NAMED_PREFERENCES, build_messages, context_ids,
                                 get_preference)


def preference_context_ids(tok, prompt, preference, placement="system"):
    return context_ids(tok, prompt, get_preference(preference), placement)[0]


def base_context_ids(tok, prompt, placement="system"):
    return context_ids(tok, prompt, None, placement)[1]


def preference_sentence(p):
    return get_preference(p).sentence

PROMPTS = ["How do I boil an egg?", "Write one sentence about the sea, please, with some detail in it.",
           "Why?"]


@pytest.fixture(scope="module")
def tok():
    try:
        return load_tokenizer()
    except FileNotFoundError as e:  # the embedded default model is not installed
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def tiny(tok):
    return tiny_random_model(vocab_size=len(tok), hidden=32, layers=2, heads=4, seed=0, max_positions=512)


def _full_logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def _reference_two_context(model, pref, base, weight, n):
    """The authors' way: both contexts re-run in full (no cache, no padding) every step; argmax of log-probs."""
    out = []
    for _ in range(n):
        lp = pyalign.guided_logprobs(_full_logits(model, pref)[None], _full_logits(model, base)[None], weight)
        t = int(lp.argmax())
        out.append(t)
        pref, base = pref + [t], base + [t]
    return out


def test_templates_named_free_and_placement(tok):
    assert len(NAMED_PREFERENCES) == 8
    assert preference_sentence("Concise") == "Your answer should be concise as much as possible."
    assert preference_sentence("  like a pirate ") == "Your answer should be like a pirate as much as possible."
    with pytest.raises(ValueError, match="preference"):
        preference_sentence("   ")
    sys_msgs = build_messages("Q?", get_preference("formal"))
    assert sys_msgs[0]["content"] == AMULET_SYSTEM_PROMPT.replace("{preference}", preference_sentence("formal"))
    user_msgs = build_messages("Q?", get_preference("formal"), placement="user")
    assert user_msgs[0]["content"] == AMULET_SYSTEM_PROMPT.replace("{preference}", "")
    assert user_msgs[1]["content"].endswith(preference_sentence("formal"))
    assert base_context_ids(tok, "Q?", placement="user") == base_context_ids(tok, "Q?")
    ids = preference_context_ids(tok, "Q?", "formal")
    assert tok.decode(ids).endswith("<|im_start|>assistant\n")
    p = build_messages("Q?", get_preference("humorous"), placement="user", template="pad")[-1]["content"]
    assert p.startswith("[Guidelines]") and "[Principles] humorous" in p and p.endswith("[Instruction] Q?")
    with pytest.raises(ValueError, match="placement"):
        build_messages("Q?", get_preference("formal"), placement="middle")


@pytest.mark.parametrize("method", ["amulet", "la"])
def test_batched_two_context_matches_uncached_reference(tiny, tok, method):
    n = 6
    res = pyalign.generate(tiny, tok, PROMPTS, "concise", method=method, max_new_tokens=n)
    weight = pyalign.amulet_weight() if method == "amulet" else 3.0
    for p, r in zip(PROMPTS, res):
        ref = _reference_two_context(tiny, preference_context_ids(tok, p, "concise"), base_context_ids(tok, p),
                                     weight, n)
        assert r.token_ids == ref
        assert r.finish_reason == "length" and len(r.logprobs) == n
        assert all(lp <= 0 for lp in r.logprobs)
        assert r.num_prompt_tokens == len(preference_context_ids(tok, p, "concise"))
        assert set(r.timings) == {"prefill_s", "decode_s", "total_s", "tokens_per_s", "ms_per_token"}


@pytest.mark.parametrize("method", ["base", "pref", "amulet"])
def test_batch_equals_one_by_one(tiny, tok, method):
    batch = pyalign.generate(tiny, tok, PROMPTS, "verbose", method=method, max_new_tokens=5)
    for p, r in zip(PROMPTS, batch):
        [single] = pyalign.generate(tiny, tok, p, "verbose", method=method, max_new_tokens=5)
        assert single.token_ids == r.token_ids
        assert single.logprobs == pytest.approx(r.logprobs, abs=1e-4)


def test_base_and_pref_contexts(tiny, tok):
    [b] = pyalign.generate(tiny, tok, PROMPTS[0], method="base", max_new_tokens=4)     # no preference needed
    assert b.token_ids == _reference_two_context(tiny, base_context_ids(tok, PROMPTS[0]),
                                                 base_context_ids(tok, PROMPTS[0]), 1.0, 4)
    [p] = pyalign.generate(tiny, tok, PROMPTS[0], "creative", method="pref", max_new_tokens=4)
    [a1] = pyalign.generate(tiny, tok, PROMPTS[0], "creative", method="amulet", weight=1.0, max_new_tokens=4)
    assert p.token_ids == a1.token_ids                      # weight 1 = the preference context alone
    [la] = pyalign.generate(tiny, tok, PROMPTS[0], "creative", method="la", ratio=1.5, max_new_tokens=4)
    [w] = pyalign.generate(tiny, tok, PROMPTS[0], "creative", method="amulet", weight=2.5, max_new_tokens=4)
    assert la.token_ids == w.token_ids


def test_per_row_eos_and_max_new_tokens(tiny, tok):
    full = pyalign.generate(tiny, tok, PROMPTS, "concise", max_new_tokens=6)
    stop_tok = full[0].token_ids[3]
    gc = tiny.generation_config
    old = gc.eos_token_id
    try:
        gc.eos_token_id = [2, stop_tok]
        res = pyalign.generate(tiny, tok, PROMPTS, "concise", max_new_tokens=6)
    finally:
        gc.eos_token_id = old
    for f, r in zip(full, res):
        if stop_tok in f.token_ids:
            k = f.token_ids.index(stop_tok)
            assert r.token_ids == f.token_ids[:k + 1] and r.finish_reason == "eos"
        else:
            assert r.token_ids == f.token_ids and r.finish_reason == "length"
    assert res[0].finish_reason == "eos" and len(res[0].token_ids) <= 4


def test_stop_strings_and_stream(tiny, tok):
    full = pyalign.generate(tiny, tok, PROMPTS[:2], "concise", max_new_tokens=8)
    text0 = full[0].text
    stop = tok.decode(full[0].token_ids[4:6], skip_special_tokens=True)
    assert stop and stop in text0
    events = []
    res = pyalign.generate(tiny, tok, PROMPTS[:2], "concise", max_new_tokens=8, stop=[stop],
                           stream=lambda r, t, d: events.append((r, t, d)))
    r0 = res[0]
    assert r0.finish_reason == "stop"
    assert r0.text == text0[:text0.find(stop)]
    assert r0.token_ids == full[0].token_ids[:len(r0.token_ids)] and len(r0.token_ids) <= 6
    for i, r in enumerate(res):
        mine = [e for e in events if e[0] == i]
        assert [e[1] for e in mine] == r.token_ids            # one call per new token, in order
        assert "".join(e[2] for e in mine) == r.text          # deltas add up to the final text


def test_seeded_sampling_reproducible_and_batch_independent(tiny, tok):
    kw = dict(method="amulet", max_new_tokens=6, temperature=1.0, top_k=50, top_p=0.95, seed=123)
    a = pyalign.generate(tiny, tok, PROMPTS, "creative", **kw)
    b = pyalign.generate(tiny, tok, PROMPTS, "creative", **kw)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    rev = pyalign.generate(tiny, tok, PROMPTS[::-1], "creative", **kw)
    assert [r.token_ids for r in rev[::-1]] == [r.token_ids for r in a]
    [one] = pyalign.generate(tiny, tok, PROMPTS[1], "creative", **kw)
    assert one.token_ids == a[1].token_ids
    other = pyalign.generate(tiny, tok, PROMPTS, "creative", **dict(kw, seed=124))
    assert [r.token_ids for r in other] != [r.token_ids for r in a]
    explicit = pyalign.generate(tiny, tok, PROMPTS[:2], "creative", **dict(kw, seed=[5, 6]))
    assert len(explicit) == 2
    greedy = pyalign.generate(tiny, tok, PROMPTS, "creative", method="amulet", max_new_tokens=6)
    assert [r.token_ids for r in greedy] != [r.token_ids for r in a]


def test_beam(tiny, tok):
    [b1] = pyalign.generate(tiny, tok, PROMPTS[0], "concise", method="beam", num_beams=1, max_new_tokens=4)
    [p] = pyalign.generate(tiny, tok, PROMPTS[0], "concise", method="pref", max_new_tokens=4)
    assert b1.token_ids == p.token_ids
    assert b1.logprobs == pytest.approx(p.logprobs, abs=1e-4)
    res = pyalign.generate(tiny, tok, PROMPTS[:2], "concise", method="beam", num_beams=3, max_new_tokens=4)
    assert [len(r.token_ids) for r in res] == [4, 4] and all(r.finish_reason == "length" for r in res)


def test_registry_plugin_and_errors(tiny, tok):
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class HalfParams(M.MethodParams):
        strength: float = M.param(0.5, "guidance weight", minimum=0.0)

    @M.register_method
    class Half(M.GuidedMethod):              # a plug-in: one new class, nothing else touched
        name, Params, contexts, summary = "test-half", HalfParams, ("pref", "base"), "z_base + s (z_pref − z_base)"

        def weight(self):
            return self.params.strength

    try:
        assert M.get_method("test-half") is Half
        [r] = pyalign.generate(tiny, tok, "Hi", "concise", method="test-half", strength=2.5, max_new_tokens=3)
        [w] = pyalign.generate(tiny, tok, "Hi", "concise", method="amulet", weight=2.5, max_new_tokens=3)
        assert r.token_ids == w.token_ids and r.method == "test-half"
        with pytest.raises(ValueError, match="strength must be >= 0"):
            pyalign.generate(tiny, tok, "Hi", "concise", method="test-half", strength=-1.0, max_new_tokens=3)
        from pyalign.cli import build_parser
        a = build_parser().parse_args(["generate", "Hi", "--method", "test-half", "--strength", "3"])
        assert a.mp_strength == 3.0                     # its CLI flag comes from the dataclass
    finally:
        R._REGISTRY.pop("test-half")
    with pytest.raises(ValueError, match=r"unknown method 'nope'.*amulet"):
        M.get_method("nope")
    for name in ("base", "pref", "la", "amulet", "beam", "pad", "args", "panda"):
        assert M.get_method(name).name == name


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="nope"), "unknown method"),
    (dict(preference="  "), "preference"),
    (dict(preference=None), "needs a preference"),
    (dict(preference="concize"), "did you mean 'concise'"),
    (dict(preference="Upliftng"), "did you mean 'uplifting'"),
    (dict(prompts=[""]), r"prompts\[0\] is empty"),
    (dict(prompts=[]), "prompts is empty"),
    (dict(T=0), "T must"),
    (dict(eta=0.0), "eta must"),
    (dict(lam=-1.0), "lam must"),
    (dict(temperature=-0.5), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=-1), "top_k"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(placement="middle"), "placement"),
    (dict(stop=[""]), "stop"),
    (dict(method="beam", num_beams=0), "num_beams"),
    (dict(ratio=2.0), "no parameter ratio"),
])
def test_bad_inputs(tiny, tok, kwargs, match):
    """Each bad argument is refused with a message naming it (free-text preferences stay allowed)."""
    args = dict(prompts=["Hi"], preference="concise", max_new_tokens=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        pyalign.generate(tiny, tok, **args)


def test_prompt_too_long(tiny, tok):
    with pytest.raises(ValueError, match=r"max_new_tokens=20.*512"):
        pyalign.generate(tiny, tok, ["word " * 600], "concise", max_new_tokens=20)


@pytest.mark.model
def test_default_model_end_to_end():
    from pyalign.models import load_model
    try:
        model, tok = load_model()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    res = pyalign.generate(model, tok, ["Name a fruit."], "concise", method="amulet", max_new_tokens=6)
    for r in res:
        assert 1 <= len(r.token_ids) <= 6 and r.text.strip()
        assert r.finish_reason in ("eos", "length")
