"""pyalign.preferences and pyalign.chat: the Preference records, free text and typos, chat-message prompts,
placement, PAD's template, the exact token ids of the authors' golden file, and every reader of a preference
reading the record."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from pyalign.chat import render_chat
from pyalign.models import load_tokenizer, tiny_random_model
from pyalign.preferences import (AMULET_SYSTEM_PROMPT, NAMED_PREFERENCES, PAD_PREFERENCES, PAD_TEMPLATE, PLACEMENTS,
                                 Preference, batch_context_ids, build_messages, context_ids, get_preference)

GOLDEN = "data/golden_authors_amulet_la_smollm2.jsonl"
PAPER_ORDER = ("creative", "sycophantic", "verbose", "complex", "formal", "pleasant", "concise", "uplifting")
BASE_SYSTEM = AMULET_SYSTEM_PROMPT.replace("{preference}", "")


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def golden(shared_dir):
    return [json.loads(line) for line in open(shared_dir / GOLDEN)]


# ------------------------------------------------------------------------------------------ records
def test_named_records():
    assert tuple(NAMED_PREFERENCES) == PAPER_ORDER
    proxies = {"creative": ("distinct_2", 1), "sycophantic": ("sentiment", 1), "verbose": ("length_words", 1),
               "complex": ("length_words", 1), "formal": (None, 1), "pleasant": ("sentiment", 1),
               "concise": ("length_words", -1), "uplifting": ("sentiment", 1)}
    for name, p in NAMED_PREFERENCES.items():
        assert p.name == name and p.named
        assert p.sentence == f"Your answer should be {name} as much as possible."
        assert p.principle == p.sentence
        assert isinstance(p.opposite, str) and name not in p.opposite.replace(",", " ").split()
        assert (p.proxy, p.proxy_sign) == proxies[name]
        assert p.default_reward == ("sentiment" if name == "uplifting" else "embedding")
        assert get_preference(name.upper()) is p and get_preference(f"  {name} ") is p
        assert get_preference(p) is p
    assert NAMED_PREFERENCES["concise"].opposite == "long-winded and verbose"
    with pytest.raises(dataclasses.FrozenInstanceError):
        NAMED_PREFERENCES["concise"].name = "x"


def test_free_text_records():
    p = get_preference("  like a pirate ")
    assert p == Preference(name="like a pirate", named=False,
                           sentence="Your answer should be like a pirate as much as possible.",
                           principle="like a pirate", opposite="not like a pirate", proxy=None, proxy_sign=1,
                           default_reward="embedding")
    assert get_preference("Humorous").name == "Humorous"                     # free text is kept verbatim
    assert (get_preference("humorous").proxy, get_preference("humorous").proxy_sign) == ("sentiment", 1)
    assert PAD_PREFERENCES["humor"].name == "humorous" and not PAD_PREFERENCES["humor"].named
    assert set(PAD_PREFERENCES) == {"helpful", "harmless", "humor"}


def test_typos_and_bad_input():
    with pytest.raises(ValueError, match="did you mean 'concise'"):
        get_preference("concize")
    with pytest.raises(ValueError, match="did you mean 'uplifting'"):
        get_preference("Upliftng")
    assert get_preference("concize please").name == "concize please"       # a phrase is free text
    for bad in ("", "   "):
        with pytest.raises(ValueError, match="preference is empty"):
            get_preference(bad)
    for bad in (3, None, ["concise"]):
        with pytest.raises(TypeError, match="preference must be a string"):
            get_preference(bad)


# ------------------------------------------------------------------------------------------ messages
def test_amulet_messages_and_placement():
    c = get_preference("concise")
    assert build_messages("Q?", c) == [{"role": "system", "content": BASE_SYSTEM + c.sentence},
                                       {"role": "user", "content": "Q?"}]
    assert build_messages("Q?", c, placement="user") == [{"role": "system", "content": BASE_SYSTEM},
                                                         {"role": "user", "content": "Q?\n\n" + c.sentence}]
    for pl in PLACEMENTS:
        assert build_messages("Q?", None, placement=pl) == [{"role": "system", "content": BASE_SYSTEM},
                                                            {"role": "user", "content": "Q?"}]
    assert build_messages("Q?", c, system_prompt="Be kind.")[0]["content"] == "Be kind. " + c.sentence
    assert build_messages("Q?", c, system_prompt="A {preference} B")[0]["content"] == f"A {c.sentence} B"
    assert build_messages("Q?", None, system_prompt="") == [{"role": "user", "content": "Q?"}]
    assert build_messages("Q?", c, system_prompt="")[0] == {"role": "system", "content": c.sentence}
    assert build_messages("Q?", "Concise") == build_messages("Q?", c)          # a string is resolved
    with pytest.raises(ValueError, match="placement"):
        build_messages("Q?", c, placement="middle")
    with pytest.raises(ValueError, match="template"):
        build_messages("Q?", c, template="chatml")


def test_chat_message_prompts(tok):
    c = get_preference("formal")
    chat = [{"role": "system", "content": "You are terse. {preference}"}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Q2"}]
    sys_msgs = build_messages(chat, c)
    assert sys_msgs[0] == {"role": "system", "content": "You are terse. " + c.sentence}
    assert sys_msgs[1:] == chat[1:]
    user_msgs = build_messages(chat, c, placement="user")
    assert user_msgs[0] == {"role": "system", "content": "You are terse. "}
    assert user_msgs[1:3] == chat[1:3]                                           # only the LAST user turn
    assert user_msgs[3] == {"role": "user", "content": "Q2\n\n" + c.sentence}
    assert chat[3]["content"] == "Q2"                                            # the input is not mutated
    no_sys = build_messages(chat[1:], c)
    assert no_sys[0]["content"] == BASE_SYSTEM + c.sentence                      # default system prompt
    one = [{"role": "user", "content": "Q?"}]
    assert context_ids(tok, one, c) == context_ids(tok, "Q?", c)
    with pytest.raises(ValueError, match="given twice"):
        build_messages(chat, c, system_prompt="X")
    with pytest.raises(ValueError, match="no user message"):
        build_messages([{"role": "system", "content": "S"}], c)
    with pytest.raises(ValueError, match=r"prompt\[1\]\['role'\]"):
        build_messages([{"role": "user", "content": "Q"}, {"role": "tool", "content": "x"}], c)
    with pytest.raises(TypeError, match=r"prompt\[0\]\['content'\]"):
        build_messages([{"role": "user", "content": 3}], c)
    with pytest.raises(ValueError, match="more than one system"):
        build_messages([chat[0], chat[0], chat[1]], c)


def test_pad_template():
    q = "How do I sleep better?"
    for pref, principle in (("concise", "Your answer should be concise as much as possible."),
                            ("humorous", "humorous")):
        p = get_preference(pref)
        assert p.principle == principle
        user = build_messages(q, p, placement="user", template="pad")
        assert user == [{"role": "system", "content": BASE_SYSTEM},
                        {"role": "user", "content": "[Guidelines] Your task is to generate a response by considering "
                                                    f"the following principle.\n[Principles] {principle}\n"
                                                    f"[Instruction] {q}"}]
        assert user[1]["content"] == PAD_TEMPLATE.format(principle=principle, question=q)
        system = build_messages(q, p, placement="system", template="pad")
        assert system == [{"role": "system", "content": BASE_SYSTEM + "[Guidelines] Your task is to generate a "
                           f"response by considering the following principle.\n[Principles] {principle}"},
                          {"role": "user", "content": f"[Instruction] {q}"}]
        # PAD's base context is the one every method uses
        for pl in PLACEMENTS:
            assert build_messages(q, None, pl, template="pad") == build_messages(q, None, pl)


# ------------------------------------------------------------------------------------------ token ids
def test_golden_ids(tok, golden):
    """context_ids reproduces the input ids of the authors' own code (golden file), for every prompt in it."""
    seen = set()
    for row in golden:
        key = (row["question"], row["preference"])
        if key in seen:
            continue
        seen.add(key)
        p = get_preference(row["preference"])
        assert row["system_prompt"] == AMULET_SYSTEM_PROMPT and row["preference_sentence"] == p.sentence
        assert context_ids(tok, row["question"], p) == (row["pref_input_ids"], row["base_input_ids"])
        assert context_ids(tok, row["question"], None) == (None, row["base_input_ids"])
    assert len(seen) >= 6
    qs = sorted({q for q, _ in seen})
    pref, base = batch_context_ids(tok, qs, get_preference("verbose"))
    want = {r["question"]: (r["pref_input_ids"], r["base_input_ids"]) for r in golden if r["preference"] == "verbose"}
    assert [(a, b) for a, b in zip(pref, base)] == [want[q] for q in qs]


def test_context_ids_bad_input(tok):
    c = get_preference("concise")
    with pytest.raises(ValueError, match="prompt is empty"):
        context_ids(tok, "   ", c)
    with pytest.raises(TypeError, match="prompt must be a string or a list of chat messages"):
        context_ids(tok, 42, c)
    with pytest.raises(ValueError, match=r"prompts\[1\] is empty"):
        batch_context_ids(tok, ["ok", ""], c)
    with pytest.raises(TypeError, match="prompts must be a list"):
        batch_context_ids(tok, "one prompt", c)


class _PlainTok:
    """No chat template: records the text it tokenizes (one id per character)."""
    chat_template = None

    def __init__(self):
        self.texts = []

    def __call__(self, text):
        self.texts.append(text)
        return {"input_ids": [ord(ch) for ch in text]}


def test_render_chat(tok):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    plain = _PlainTok()
    assert render_chat(plain, msgs) == [ord(ch) for ch in "S\n\nU\n"]
    render_chat(plain, msgs + [{"role": "assistant", "content": "A"}], add_generation_prompt=False)
    assert plain.texts[-1] == "S\n\nU\n\nA"
    ids = render_chat(tok, msgs)
    assert tok.decode(ids) == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    done = render_chat(tok, msgs + [{"role": "assistant", "content": "A"}], add_generation_prompt=False)
    assert tok.decode(done).endswith("<|im_start|>assistant\nA<|im_end|>\n") and done[:len(ids)] == ids
    with pytest.raises(TypeError, match="messages must be a list"):
        render_chat(tok, "hi")
    with pytest.raises(ValueError, match="empty list"):
        render_chat(tok, [])


# ------------------------------------------------------------------------------------------ readers
def test_every_reader_reads_the_record():
    from pyalign.evaluation import data as D
    from pyalign.evaluation.report import proxy_metric
    from pyalign.reward_guided.rewards import default_reward_name
    assert D.AMULET_PREFERENCES == PAPER_ORDER
    assert D.preference_text("humor") == "humorous" and D.preference_text("Concise") == "concise"
    assert D.preference_sentence("humor") == PAD_PREFERENCES["humor"].sentence
    for name, p in NAMED_PREFERENCES.items():
        assert default_reward_name(name) == p.default_reward
        assert proxy_metric(name) == ((p.proxy, p.proxy_sign) if p.proxy else ("length_words", 1))
    assert proxy_metric("humor") == ("sentiment", 1) and proxy_metric("formal", ["reward"]) == ("reward", 1)
    assert default_reward_name(["uplifting", "concise"]) == "embedding" and default_reward_name(None) == "embedding"


def test_persrm_negative_pairs_use_the_record_opposite(monkeypatch):
    from pyalign.persrm import make_pairs
    calls = []

    def fake_generate(model, tok, qs, pref, method, max_new_tokens):
        calls.append((pref, method))
        return [type("R", (), {"text": f"{method}:{pref}:{q}"})() for q in qs]
    monkeypatch.setattr("pyalign.engine.generate.generate", fake_generate)
    pairs = make_pairs.build_pairs(None, None, ["q1"], ["concise"], negative="opposite", log=lambda s: None)
    assert calls == [("concise", "pref"), ("long-winded and verbose", "pref")]
    assert pairs[0]["rejected"] == "pref:long-winded and verbose:q1"


# ------------------------------------------------------------------------------------------ PAD's prompt path
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_pad_uses_the_one_prompt_path(tok, placement):
    """PAD's rows are context_ids(template="pad") with the configured placement, its base rows the base context."""
    import pyalign
    tiny = tiny_random_model(vocab_size=len(tok), hidden=32, seed=0)
    q, k, w, n = "Give me one tip for a calm morning routine.", 5, 1.5, 3
    res = pyalign.generate(tiny, tok, [q], "concise", method="pad", max_new_tokens=n, placement=placement, k=k,
                           reward_weight=w)[0]
    _, base = context_ids(tok, q, None, placement)
    rm, _ = context_ids(tok, q, get_preference("concise"), placement, template="pad")
    gen = []
    for t in range(n):
        with torch.no_grad():
            zb = tiny(input_ids=torch.tensor([base + gen])).logits[0, -1].float()
            zr = tiny(input_ids=torch.tensor([rm + gen])).logits[0, -1].float()
        c = torch.topk(zb, k).indices
        score = zb[c] + w * (torch.log_softmax(zr[c], -1) - torch.log_softmax(zb[c], -1))
        gen.append(int(c[score.argmax()]))
    assert res.token_ids == gen, placement
    assert res.num_prompt_tokens == len(base)


# ------------------------------------------------------------------------------------------ layers
def _pyalign_imports(path) -> set:
    """The pyalign modules a source file imports (absolute names; relative imports resolved)."""
    import ast
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1]
    rel = pathlib.Path(path).resolve().relative_to(root).with_suffix("")
    package = list(rel.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(pathlib.Path(path).read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "pyalign"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "pyalign":
                out.add(name)
    return out


def test_layers_import_nothing_above_them():
    """chat imports nothing from pyalign; preferences only chat; the scoring layer only chat and itself."""
    import pathlib
    pkg = pathlib.Path(__file__).resolve().parents[1] / "pyalign"
    assert _pyalign_imports(pkg / "chat.py") == set()
    assert _pyalign_imports(pkg / "preferences.py") == {"pyalign.chat"}
    files = sorted((pkg / "scoring").glob("*.py"))
    assert len(files) >= 4
    for f in files:
        bad = {m for m in _pyalign_imports(f) if m != "pyalign.chat" and not m.startswith("pyalign.scoring")}
        assert not bad, f"{f.name} imports {bad}"
