"""PAD / ARGS / PANDA: per-step choices against hand references, the RM KV cache, rewards, bad input."""
from __future__ import annotations

import pytest
import torch

import pyalign
from pyalign.methods.panda import SCHEDULE_SETS, resolve_lambdas
from pyalign.models import load_tokenizer, tiny_random_model
from pyalign.reward_guided import rewards as R
from pyalign.preferences import context_ids, get_preference
from pyalign.scoring import minilm_path

PROMPTS = ["Say hi.", "Give me one tip for a calm morning routine."]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def tiny(tok):
    return tiny_random_model(vocab_size=len(tok), hidden=32, seed=0)


def full_logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


class ToyReward(R.RewardModel):
    """r(c) = ((c * 7919) mod 13 − 6) / 3 + 0.1·(number of tokens generated): deterministic, varied, signed."""

    def session(self, prompts, preference, tokenizer):
        outer = self

        class S(R.RewardSession):
            def __init__(self):
                self.n = torch.zeros(len(prompts))

            def score(self, cand):
                return outer.value(cand) + 0.1 * self.n[:, None]

            def advance(self, tokens):
                self.n += 1
        return S()

    @staticmethod
    def value(cand):
        return ((cand * 7919) % 13 - 6).float() / 3


def run_steps(model, tok, name, n, preference="concise", **params):
    """[B, n] tokens of ``name`` through the engine (pyalign.generate) on PROMPTS."""
    res = pyalign.generate(model, tok, PROMPTS, preference, method=name, max_new_tokens=n, **params)
    assert [len(r.token_ids) for r in res] == [n] * len(PROMPTS)
    return torch.tensor([r.token_ids for r in res])


# ------------------------------------------------------------------------------------------ PAD
@pytest.mark.parametrize("prefs,weights", [("concise", 1.3), (["concise", "formal"], [1.0, -0.5])])
def test_pad_steps_match_hand_reference(tiny, tok, prefs, weights):
    k = 5
    out = run_steps(tiny, tok, "pad", 3, prefs, k=k, reward_weight=weights)
    plist = prefs if isinstance(prefs, list) else [prefs]
    w = torch.tensor(weights if isinstance(weights, list) else [weights])
    for b, q in enumerate(PROMPTS):
        # one prompt path: the base context of every method (Amulet's system prompt) and PAD's template
        _, base_ids = context_ids(tok, q, None)
        pr_ids = [context_ids(tok, q, get_preference(p), template="pad")[0] for p in plist]
        gen = []
        for t in range(3):
            zb = full_logits(tiny, base_ids + gen)
            c = torch.topk(zb, k).indices
            ref = torch.log_softmax(zb[c], -1)
            rew = sum(w[d] * (torch.log_softmax(full_logits(tiny, pr_ids[d] + gen)[c], -1) - ref)
                      for d in range(len(plist)))
            tok_t = int(c[torch.argmax(zb[c] + rew)])
            assert int(out[b, t]) == tok_t, (b, t)
            gen.append(tok_t)


def test_pad_rejects_sequence_reward_and_bad_k(tiny, tok):
    with pytest.raises(ValueError, match="token-level reward"):
        run_steps(tiny, tok, "pad", 2, reward="embedding")
    with pytest.raises(ValueError, match="vocabulary size"):
        run_steps(tiny, tok, "pad", 2, k=len(tok) + 1)
    with pytest.raises(ValueError, match="2 values but there are 1"):
        run_steps(tiny, tok, "pad", 2, reward_weight=[1.0, 2.0])


def test_tokenizer_mismatch_is_a_clear_error(tok):
    from transformers import AutoTokenizer
    bert = AutoTokenizer.from_pretrained(str(minilm_path()))
    with pytest.raises(ValueError, match="different tokenizer"):
        R.require_same_vocabulary(tok, bert, "the PersRM")
    assert R.same_vocabulary(tok, tok)


# ------------------------------------------------------------------------------------------ ARGS / PANDA
def hand_args(model, tok, n, k, lam_fn, form="logprob"):
    """Reference: full forwards, ToyReward, argmax over (λ, candidate), ties to smaller λ index then position."""
    out = []
    for b, q in enumerate(PROMPTS):
        ids = context_ids(tok, q, None)[1]          # the base context of every method
        gen = []
        for t in range(n):
            z = full_logits(model, ids + gen)
            c = torch.topk(z, k).indices
            lp = torch.log_softmax(z, -1)[c]
            base = lp if form == "logprob" else lp.exp()
            r = ToyReward.value(c) + 0.1 * t
            lams = lam_fn(len(ids), t)
            best = max(((float(base[j] + lam * r[j]), -m, -j) for m, lam in enumerate(lams) for j in range(k)))
            gen.append(int(c[-best[2]]))
        out.append(gen)
    return torch.tensor(out)


def test_args_steps_match_hand_reference(tiny, tok):
    got = run_steps(tiny, tok, "args", 4, reward=ToyReward(), k=6, reward_weight=1.5)
    want = hand_args(tiny, tok, 4, 6, lambda n, t: [1.5])
    assert torch.equal(got, want)


@pytest.mark.parametrize("lambdas", ["default", "decay", "context", [0.0, 3.0]])
def test_panda_steps_match_hand_reference(tiny, tok, lambdas):
    fns = resolve_lambdas(lambdas)
    got = run_steps(tiny, tok, "panda", 4, reward=ToyReward(), k=6, lambdas=lambdas)
    want = hand_args(tiny, tok, 4, 6, lambda n, t: [f(n, t) for f in fns])
    assert torch.equal(got, want)


def test_panda_probability_base_term(tiny, tok):
    """base_term="prob": the literal π_b(z) + λ r reading of Algorithm 1 (documented alternative)."""
    got = run_steps(tiny, tok, "panda", 3, reward=ToyReward(), k=6, lambdas=[0.05, 0.2], base_term="prob")
    want = hand_args(tiny, tok, 3, 6, lambda n, t: [0.05, 0.2], form="prob")
    assert torch.equal(got, want)


def test_panda_schedules_values():
    f = {x.name: x for x in SCHEDULE_SETS["default"]}
    assert f["const(1)"](10, 5) == 1.0
    assert f["decay(2)"](10, 32) == pytest.approx(1.0)           # 2·32/(32+32)
    assert f["context(1)"](256, 0) == 2.0 and f["context(1)"](8, 0) == 0.5
    w = SCHEDULE_SETS["warmup"][1]
    assert w(0, 0) == pytest.approx(1 / 8) and w(0, 20) == 1.0
    assert [x(0, 0) for x in resolve_lambdas("0.5,2")] == [0.5, 2.0]


def test_negative_weights_rejected_where_meaningless(tiny, tok):
    with pytest.raises(ValueError, match=">= 0"):
        run_steps(tiny, tok, "args", 2, reward=ToyReward(), reward_weight=-1.0)
    with pytest.raises(ValueError, match=">= 0"):
        run_steps(tiny, tok, "panda", 2, reward=ToyReward(), lambdas=[1.0, -0.5])
    with pytest.raises(ValueError, match="vocabulary size"):
        run_steps(tiny, tok, "args", 2, reward=ToyReward(), k=len(tok) + 1)


# ------------------------------------------------------------------------------------------ reward models
def test_classifier_rm_cache_equals_full_sequences(tok):
    from transformers import LlamaConfig, LlamaForSequenceClassification
    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, num_labels=3, pad_token_id=tok.pad_token_id,
                      max_position_embeddings=512)
    rm = LlamaForSequenceClassification(cfg).eval()
    reward = R.HFSequenceReward(rm, tokenizer=tok, head=2)
    sess = reward.session(PROMPTS, "concise", tok)
    assert isinstance(sess, R.CachedClassifierSession)
    prefix = [reward.scorer.prompt_ids(p) for p in PROMPTS]
    gen = [[], []]
    g = torch.Generator().manual_seed(0)
    for step in range(3):
        cand = torch.randint(100, len(tok), (2, 4), generator=g)
        got = sess.score(cand)
        for b in range(2):
            for j in range(4):
                with torch.no_grad():
                    full = rm(input_ids=torch.tensor([prefix[b] + gen[b] + [int(cand[b, j])]])).logits[0, 2]
                assert got[b, j].item() == pytest.approx(full.item(), abs=1e-4)
        chosen = cand[:, 0]
        sess.advance(chosen)
        for b in range(2):
            gen[b].append(int(chosen[b]))


def test_embedding_and_sentiment_rewards_rank_texts():
    emb = R.load_reward("embedding")
    r = emb.score_texts(["q", "q"], ["What a wonderful, joyful and hopeful day, full of light!",
                                     "Everything is hopeless, grim and miserable."], "uplifting")
    assert r[0] > r[1]
    c = emb.score_texts(["q", "q"], ["Dear Sir, I respectfully submit the enclosed report for your review.",
                                     "hey dude lol, here's the thing, whatever"], "formal")
    assert c[0] > c[1]
    s = R.load_reward(None, "uplifting")
    assert isinstance(s, R.SentimentReward)
    v = s.score_texts(["q", "q"], ["I love this, great!", "This is awful and sad."], "uplifting")
    assert v[0] > 0 > v[1]
    assert isinstance(R.load_reward(None, "concise"), R.EmbeddingReward)
    with pytest.raises(FileNotFoundError):
        R.load_reward("/nonexistent/rm")


def test_text_session_scores_decoded_responses(tok):
    seen = []

    class Echo(R.RewardModel):
        def score_texts(self, prompts, responses, preference):
            seen.extend(responses)
            return torch.tensor([float(len(r)) for r in responses])
    sess = Echo().session(["p"], "concise", tok)
    ids = tok("Hello world", add_special_tokens=False)["input_ids"]
    sess.advance(torch.tensor([ids[0]]))
    r = sess.score(torch.tensor([[ids[1], ids[1]]]))
    assert seen[0] == tok.decode(ids[:2]) and r.shape == (1, 2)


@pytest.mark.model
def test_methods_generate_on_default_model():
    import pyalign
    from pyalign.models import load_model
    m, t = load_model()
    for method in ("pad", "args", "panda"):
        res = pyalign.generate(m, t, ["Give me a tip for a good morning."], "uplifting", method=method,
                               max_new_tokens=6)
        assert len(res[0].token_ids) == 6 and res[0].text
