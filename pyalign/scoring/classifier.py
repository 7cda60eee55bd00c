"""A Hugging Face sequence-classification reward model, scored one way for every caller (the reward of
ARGS/PANDA and the reward metric of the evaluation).

    ids(prompt, response) = render_chat(tok, [user: prompt, assistant: response], add_generation_prompt=False)
                            (its last ``max_length`` tokens)
    score(prompt, response) = head(model(ids))   read at the last real token (right padding in a batch)

``head`` selects the value:
    None    the model's overall score: ``output.score`` when the model returns one (ArmoRM's remote code),
            else ``logits[:, 0]``
    int h   objective h: ``output.rewards[:, h]`` for a multi-objective model (ArmoRM), else ``logits[:, h]``
    "name"  the output attribute of that name (one value per row); a string of digits is an int
"""
from __future__ import annotations

import json
import pathlib
from typing import Optional, Sequence, Union

import torch

from ..chat import render_chat

Head = Union[int, str, None]


def parse_head(head) -> Head:
    """None, an int (a string of digits too) or an output attribute name."""
    if head is None or (isinstance(head, int) and not isinstance(head, bool)):
        return head
    if isinstance(head, str) and head.strip():
        h = head.strip()
        return int(h) if h.lstrip("-").isdigit() else h
    raise TypeError(f"reward head must be None, an integer or an output attribute name, got {head!r}")


class SequenceClassifier:
    """A local ``AutoModelForSequenceClassification`` directory (or an in-memory model and its tokenizer)."""

    def __init__(self, path_or_model, tokenizer=None, head: Head = None, device=None,
                 trust_remote_code: Optional[bool] = None, max_length: int = 2048, batch_size: int = 8):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        if isinstance(path_or_model, (str, pathlib.Path)):
            p = pathlib.Path(path_or_model).expanduser()
            if not (p / "config.json").exists():
                raise FileNotFoundError(f"reward model {str(p)!r} is not a local Hugging Face model directory "
                                        "(no config.json): pass a directory saved by save_pretrained")
            if trust_remote_code is None:       # a local directory whose config maps its own modelling code
                trust_remote_code = bool(json.loads((p / "config.json").read_text()).get("auto_map"))
            self.model = AutoModelForSequenceClassification.from_pretrained(str(p),
                                                                            trust_remote_code=trust_remote_code)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(p), trust_remote_code=trust_remote_code)
        else:
            self.model = path_or_model
            if tokenizer is None:
                raise ValueError("an in-memory reward model needs its tokenizer: pass tokenizer=")
        for name, v in (("max_length", max_length), ("batch_size", batch_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        self.model.eval()
        if device is not None:
            self.model.to(device)
        self.tokenizer = tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = self.pad_id       # the head reads the last non-pad token
        self.head = parse_head(head)
        self.max_length, self.batch_size = max_length, batch_size
        n = int(getattr(self.model.config, "num_labels", 1) or 1)
        if isinstance(self.head, int) and not self.multi_objective and not 0 <= self.head < n:
            raise ValueError(f"reward head {self.head} but the reward model has {n} output(s): pass 0..{n - 1}")

    @property
    def multi_objective(self) -> bool:
        """Remote-code reward models (ArmoRM) return ``rewards`` [N, objectives] beside ``score``."""
        return bool(getattr(self.model.config, "auto_map", None))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ formatting
    def pair_ids(self, prompt: str, response: str) -> list[int]:
        """Token ids of the finished (prompt, response) conversation, its last ``max_length`` tokens."""
        ids = render_chat(self.tokenizer, [{"role": "user", "content": prompt},
                                           {"role": "assistant", "content": response}], add_generation_prompt=False)
        return ids[-self.max_length:]

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of the prompt up to the assistant header (the prefix a response is appended to)."""
        return render_chat(self.tokenizer, [{"role": "user", "content": prompt}], add_generation_prompt=True)

    # ------------------------------------------------------------------ reading the head
    def select(self, out) -> torch.Tensor:
        """The head's value per row, fp32: from a model output, or from a raw logits tensor [..., num_labels]."""
        h = self.head
        if isinstance(out, torch.Tensor):
            if isinstance(h, str):
                raise ValueError(f"reward head {h!r} names an output attribute, but only raw logits are available "
                                 "here: pass an integer head")
            return self._column(out, h or 0)
        if isinstance(h, str):
            val = getattr(out, h, None)
            if val is None:
                raise ValueError(f"the reward model's output has no attribute {h!r}: pass an integer head or one "
                                 "of its output fields")
            val = val.float()
            if val.dim() == 2 and val.shape[-1] == 1:
                val = val[:, 0]
            if val.dim() != 1:
                raise ValueError(f"output attribute {h!r} has shape {tuple(val.shape)}, not one value per row")
            return val
        if h is None and getattr(out, "score", None) is not None:
            return out.score.float().reshape(-1)
        if h is not None and getattr(out, "rewards", None) is not None:
            return self._column(out.rewards, h)
        return self._column(out.logits, h or 0)

    @staticmethod
    def _column(t: torch.Tensor, h: int) -> torch.Tensor:
        if not 0 <= h < t.shape[-1]:
            raise ValueError(f"reward head {h} but the reward model has {t.shape[-1]} output(s)")
        return t[..., h].float()

    # ------------------------------------------------------------------ scoring
    @torch.inference_mode()
    def score_ids(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """[N] fp32 (CPU) scores of token sequences, ``batch_size`` at a time, right-padded."""
        out = []
        for i in range(0, len(sequences), self.batch_size):
            chunk = [list(s) for s in sequences[i:i + self.batch_size]]
            n = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), n), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), n), dtype=torch.long)
            for r, s in enumerate(chunk):
                ids[r, :len(s)] = torch.as_tensor(s, dtype=torch.long)
                mask[r, :len(s)] = 1
            res = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
            out.append(self.select(res).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """[N] fp32 (CPU): the reward of each (prompt, response) pair."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        for name, xs in (("prompts", prompts), ("responses", responses)):
            for i, x in enumerate(xs):
                if not isinstance(x, str):
                    raise TypeError(f"{name}[{i}] must be a string, got {type(x).__name__}")
        return self.score_ids([self.pair_ids(p, r) for p, r in zip(prompts, responses)])
