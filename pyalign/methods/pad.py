"""PAD: personalized alignment at decoding time (method ``"pad"``).

Per token, for every prompt b (``pyalign.topk_rescore``, one op):

    c        = top-k(z_base[b])                                            (k = 10)
    reward_j = Σ_d w_d · (log_softmax_k(z_rm,d[b, c])_j − log_softmax_k(z_ref,d[b, c])_j)
    score_j  = z_base[b, c_j] + reward_j;    token = c_argmax (τ = 0) or a draw from softmax(score/τ)

d runs over the preference dimensions (``preference`` may be a list; ``reward_weight`` then a list w_p).

Reward model (``reward=``):
* default (None / "prompt"): the **prompt-induced reward** -- PAD's authors never released a trained PersRM,
  so the reward model is the base model itself with the principle in PAD's prompt form
  (``[Guidelines] … [Principles] {principle} [Instruction] {question}``), and the reference is the base
  model on the plain question (the base rows themselves, as in the authors' code).
  Prompts come from the one prompt path, ``pyalign.preferences.context_ids``: the base rows are the base
  context of every method (Amulet's system prompt, empty preference), the principle rows
  ``template="pad"`` with the same system prompt and ``placement`` ("user": the whole form in the user turn,
  the paper's; "system": guidelines and principle in the system prompt, ``[Instruction] {question}`` as
  the user turn). The base rows and the
  D principle rows of every prompt share ONE ContextBatch: one batched forward of B·(1+D) rows per step.
  ``ref_model=PATH`` replaces the reference by another model (same vocabulary) on the plain question.
* a PersRM directory from ``pyalign train-persrm`` (or a ``PersRMReward``): z_rm = the trained π_θ with the
  principle prompt, z_ref = its reference model π_ref (the model it was trained from, recorded in
  ``persrm.json``, or ``ref_model=``) with the same principle prompt -- the log-ratio the PersRM was trained
  on. When the reference is the base model object, its rows join the base ContextBatch.
Every model keeps its own KV cache. Reward and reference models must share the base vocabulary (a
``ValueError`` otherwise: the log-ratio compares the same token ids). Negative w_d are allowed (they steer
away from dimension d, as in P-Soups-style combinations of preference dimensions); they must be finite.
The returned log-prob is log_softmax over the k scores of the chosen candidate.
"""
from __future__ import annotations

import pathlib
import dataclasses
from typing import Optional, Union

import torch

from ..ops import topk_rescore
from ..batching import ContextBatch
from ..errors import InvalidArgument
from ..preferences import batch_context_ids, get_preference
from ..reward_guided.rewards import PersRMReward, is_persrm_dir, require_same_vocabulary
from .registry import MethodParams, param, register_method
from .session import RewardSession, SessionMethod, output_vocab




def check_k(k, model) -> int:
    V = output_vocab(model)
    if not 1 <= k <= V:
        raise InvalidArgument("k", f"k must be between 1 and the vocabulary size {V}, got {k}")
    return k


def preference_list(preference) -> list[str]:
    prefs = list(preference) if isinstance(preference, (list, tuple)) else [preference]
    if not prefs:
        raise ValueError("preference is an empty list: give at least one preference dimension")
    return [get_preference(p).name for p in prefs]


def weight_list(weight, D: int, what: str = "reward_weight") -> list[float]:
    ws = list(weight) if isinstance(weight, (list, tuple)) else [weight] * D
    if isinstance(weight, torch.Tensor):
        ws = weight.reshape(-1).tolist()
    if len(ws) != D:
        raise ValueError(f"{what} has {len(ws)} values but there are {D} preference dimensions")
    out = []
    for w in ws:
        w = float(w)
        if w != w or w in (float("inf"), float("-inf")):
            raise ValueError(f"{what} must be finite, got {w}")
        out.append(w)
    return out


def _same_model(model, path) -> bool:
    if path is None or str(path) in ("default", "SmolLM2-135M-Instruct"):
        from ..models import default_model_dir
        path = default_model_dir(convert=False)
    src = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    try:
        return src is not None and pathlib.Path(src).resolve() == pathlib.Path(path).resolve()
    except OSError:
        return False


class PADSession(RewardSession):
    """PAD on one group of requests (same preference(s) and parameters)."""

    def __init__(self, engine, requests):
        super().__init__(engine, requests)
        model, tokenizer, prm = self.model, self.tokenizer, self.params
        self.prefs = preference_list(self.preference)
        D = self.D = len(self.prefs)
        self.k = check_k(prm.k, model)
        self.weights = weight_list(prm.reward_weight if prm.reward_weight is not None else 1.0, D)
        B = self.B
        # one prompt path (pyalign.preferences): the base rows are the base context of every method, the
        # principle rows PAD's template with the same system prompt and placement
        placement, sysmsg = self.placement, self.system_prompt
        base_ids = self.base_ids
        per_dim = [batch_context_ids(tokenizer, self.prompts, get_preference(p), placement, sysmsg, "pad")[0]
                   for p in self.prefs]
        principle_ids = [per_dim[d][b] for b in range(B) for d in range(D)]      # prompt-major
        mnt = self.max_new_tokens
        reward = prm.reward
        ref_path = prm.ref_model
        self.extra_ctx: list[tuple[ContextBatch, str]] = []     # (context, role) for separate models
        if reward is None or reward in ("prompt", "default") or reward is model:
            self.mode = "prompt"
            self.ctx = ContextBatch(model, base_ids + principle_ids, self.pad_id, mnt)   # rows: B base, B·D rm
            if ref_path is not None:
                from ..models import load_model
                ref_m, ref_tok = load_model(ref_path, device=next(model.parameters()).device)
                require_same_vocabulary(tokenizer, ref_tok, f"ref_model {ref_path!r}")
                self.extra_ctx.append((ContextBatch(ref_m, base_ids, self.pad_id, mnt), "ref"))
        elif isinstance(reward, PersRMReward) or is_persrm_dir(reward):
            self.mode = "persrm"
            if isinstance(reward, PersRMReward):
                rm = reward
            else:
                meta_ref = ref_path
                if meta_ref is None:
                    import json
                    meta_ref = json.loads((pathlib.Path(reward) / "persrm.json").read_text()).get("ref_model")
                if meta_ref is not None and not pathlib.Path(meta_ref).is_absolute() \
                        and (pathlib.Path(reward) / meta_ref).exists():
                    meta_ref = pathlib.Path(reward) / meta_ref
                ref_is_base = _same_model(model, meta_ref)
                rm = PersRMReward(reward, ref_model=model if ref_is_base else None, ref_path=meta_ref,
                                  device=next(model.parameters()).device)
            require_same_vocabulary(tokenizer, rm.tok, "the PersRM")
            principle_ids = rm.principle_ids(self.prompts, self.prefs, placement, sysmsg)
            if rm.ref_model is model:       # reference rows join the base batch: one forward for both
                self.ctx = ContextBatch(model, base_ids + principle_ids, self.pad_id, mnt)
            else:
                self.ctx = ContextBatch(model, base_ids, self.pad_id, mnt)
                self.extra_ctx.append((ContextBatch(rm.ref_model, principle_ids, self.pad_id, mnt), "ref"))
            self.extra_ctx.append((ContextBatch(rm.model, principle_ids, self.pad_id, mnt), "rm"))
        else:
            raise InvalidArgument("reward", f"method 'pad' needs a token-level reward: None (prompt-induced, the default) or a "
                             f"PersRM directory from `pyalign train-persrm`; got {reward!r} (sequence rewards such as "
                             "'embedding', 'sentiment' or a classifier work with methods 'args' and 'panda')")

    # ------------------------------------------------------------------ logits of every role
    def _split(self, main: torch.Tensor, extras: list[torch.Tensor]):
        B, D = self.B, self.D
        base = main[:B]
        if self.mode == "prompt":
            rm = main[B:].reshape(B, D, -1)
            ref = extras[0] if extras else base
            return base, rm, ref, None
        # persrm: per-dimension reference on the principle prompt
        got = dict(zip([r for _, r in self.extra_ctx], extras))
        rm = got["rm"].reshape(B, D, -1)
        ref = (main[B:] if "ref" not in got else got["ref"]).reshape(B, D, -1)
        return base, rm, None, ref

    def _choose(self, main, extras):
        base, rm, ref, ref_d = self._split(main, extras)
        w = torch.tensor(self.weights, dtype=torch.float32)
        if ref_d is not None:
            if self.D == 1:
                rm_all, ref, w_all = rm, ref_d[:, 0], w
            else:
                # Σ_d w_d (lsm(rm_d) − lsm(ref_d)) written as topk_rescore's Σ_e w_e (lsm(x_e) − lsm(base)):
                # x = [rm_1..rm_D, ref_1..ref_D], w = [w, −w]; the common lsm(base) term cancels exactly.
                rm_all, ref, w_all = torch.cat([rm, ref_d], dim=1), base, torch.cat([w, -w])
        else:
            rm_all, w_all = rm, w
        tokens, cand, scores = topk_rescore(base, rm_all, ref, self.k, w_all.to(base.device), self.temperature,
                                            seed=self.seeds, offset=self.step_index, return_details=True)
        pos = (cand == tokens[:, None]).float().argmax(-1, keepdim=True)
        logp = torch.log_softmax(scores, dim=-1).gather(-1, pos).squeeze(-1)
        return tokens, logp

    def _all_rows(self, tokens: torch.Tensor, ctx: ContextBatch) -> torch.Tensor:
        per = ctx.num_rows // self.B
        if per == 1:
            return tokens
        if ctx is self.ctx:                     # B base rows, then B·D rows in prompt-major order
            return torch.cat([tokens, tokens.repeat_interleave(self.D)])
        return tokens.repeat_interleave(per)

    def first(self):
        main = self.ctx.prefill()
        extras = [cb.prefill() for cb, _ in self.extra_ctx]
        return self._choose(main, extras)

    def advance(self, tokens):
        tokens = tokens.reshape(-1)
        main = self.ctx.step(self._all_rows(tokens, self.ctx))
        extras = [cb.step(self._all_rows(tokens, cb)) for cb, _ in self.extra_ctx]
        return self._choose(main, extras)


@dataclasses.dataclass(frozen=True)
class PADParams(MethodParams):
    k: int = param(10, "candidates per step (top-k of the base model)", minimum=1)
    reward_weight: Optional[Union[float, tuple]] = param(
        None, "reward weight w_p (PAD: one per preference dimension; default 1)")
    reward: Optional[object] = param(None, "None/'prompt' (prompt-induced reward) or a trained PersRM directory")
    ref_model: Optional[str] = param(None, "reference model directory (default: the base model)")


@register_method
class PAD(SessionMethod):
    name, Params, Session = "pad", PADParams, PADSession
    accepts_preference_list = True       # several preference dimensions, weighted by reward_weight (w_p)
    default_placement = "user"           # the paper's form: [Guidelines] … [Principles] … [Instruction] as the user turn
    summary = "PAD: top-k of the base model rescored by a token-level personalized reward (log-ratio)"
