"""Model-based scores: a local Hugging Face reward model, and pairwise judges (a local LM, or an
OpenAI-compatible endpoint) giving win rates.

Pairwise protocol (both judges): the judge sees the question, the preference ("The answer should be
{preference}") and two answers labelled A and B, and says which fits the preference better. Every pair is
judged in both orders and the two verdicts averaged, which cancels the judge's position bias:

    p(x beats y) = ½ [ P(A | A=x, B=y) + P(B | A=y, B=x) ]

The local judge reads P(A) from the next-token log-probs of "A" and "B" after the chat template's
generation prompt (renormalised over the two), so one forward pass per order and no sampling. A win is
p > ½, a tie p = ½ (counted as half a win in ``win_rate``).
"""
from __future__ import annotations

import json
import math
import os
import re
import urllib.request
from typing import Optional, Sequence

import torch

from ..chat import render_chat
from ..scoring import SequenceClassifier

JUDGE_SYSTEM = ("You are a careful judge. You compare two answers to the same question and decide which one "
                "better follows the stated preference while still answering the question.")
JUDGE_TEMPLATE = ("Question: {question}\n\nPreference: the answer should be {preference}.\n\n"
                  "[Answer A]\n{a}\n[End of Answer A]\n\n[Answer B]\n{b}\n[End of Answer B]\n\n"
                  "Which answer better follows the preference? Reply with a single letter: A or B.")


def judge_messages(question: str, preference: str, a: str, b: str) -> list[dict]:
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": JUDGE_TEMPLATE.format(question=question, preference=preference, a=a, b=b)}]


def win_rate(probs: Sequence[float]) -> float:
    """Mean of win (p > ½) = 1, tie (p = ½) = ½, loss = 0."""
    if not probs:
        return float("nan")
    return sum(1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0 for p in probs) / len(probs)


class LocalJudge:
    """A causal LM (by default the embedded SmolLM2) judging pairs from its log-probs of "A" vs "B"."""

    def __init__(self, model=None, tokenizer=None, batch_size: int = 4, max_answer_chars: int = 2000):
        if model is None or tokenizer is None:
            from ..models import load_model
            model, tokenizer = load_model()
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size
        self.max_answer_chars = max_answer_chars
        self.id_a = self._letter_id("A")
        self.id_b = self._letter_id("B")

    def _letter_id(self, letter: str) -> int:
        ids = self.tokenizer(letter, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"the judge's tokenizer splits {letter!r} into {len(ids)} tokens")
        return ids[0]

    @torch.inference_mode()
    def prob_first(self, items: Sequence[tuple[str, str, str, str]]) -> list[float]:
        """P("A") / (P("A") + P("B")) for each (question, preference, answer_a, answer_b)."""
        out: list[float] = []
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        cut = self.max_answer_chars
        for i in range(0, len(items), self.batch_size):
            seqs = [render_chat(self.tokenizer, judge_messages(q, p, a[:cut], b[:cut]))
                    for q, p, a, b in items[i:i + self.batch_size]]
            n = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), n), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), n), dtype=torch.long)
            for r, s in enumerate(seqs):
                ids[r, n - len(s):] = torch.tensor(s)
                mask[r, n - len(s):] = 1
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                position_ids=pos.to(device), logits_to_keep=1).logits[:, -1, :].float()
            two = torch.stack([logits[:, self.id_a], logits[:, self.id_b]], dim=-1).log_softmax(-1)
            out.extend(two[:, 0].exp().tolist())
        return out

    def compare(self, questions: Sequence[str], preferences: Sequence[str], answers_x: Sequence[str],
                answers_y: Sequence[str]) -> list[float]:
        """p(x beats y) per pair, both orders averaged."""
        n = len(questions)
        items = [(questions[i], preferences[i], answers_x[i], answers_y[i]) for i in range(n)]
        items += [(questions[i], preferences[i], answers_y[i], answers_x[i]) for i in range(n)]
        p = self.prob_first(items)
        return [0.5 * (p[i] + (1.0 - p[n + i])) for i in range(n)]


class OpenAIJudge:
    """An OpenAI-compatible chat-completions endpoint as the judge (stdlib ``urllib`` only).

    ``url`` is the API base (``http://host:port/v1``) or the full ``.../chat/completions`` address; the key is
    read from ``api_key`` or ``$OPENAI_API_KEY`` (optional for local servers). Verdicts are the first A/B
    letter of the reply (temperature 0, a few tokens); an unparseable reply counts as a tie for that order."""

    def __init__(self, url: str, model: str = "gpt-4o-mini", api_key: Optional[str] = None, timeout: float = 60.0):
        self.url = url.rstrip("/")
        if not self.url.endswith("/chat/completions"):
            self.url += "/chat/completions"
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = timeout

    def _ask(self, messages: list[dict]) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0, "max_tokens": 4}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            data = json.loads(resp.read().decode())
        return data["choices"][0]["message"]["content"] or ""

    @staticmethod
    def _verdict(reply: str) -> float:
        m = re.search(r"(?<![A-Za-z])([AB])(?![A-Za-z])", reply)
        if m is None:
            return 0.5
        return 1.0 if m.group(1) == "A" else 0.0

    def compare(self, questions, preferences, answers_x, answers_y) -> list[float]:
        out = []
        for q, p, x, y in zip(questions, preferences, answers_x, answers_y):
            first = self._verdict(self._ask(judge_messages(q, p, x, y)))
            second = self._verdict(self._ask(judge_messages(q, p, y, x)))
            out.append(0.5 * (first + (1.0 - second)))
        return out


class RewardModel:
    """A local Hugging Face sequence-classification reward model as an evaluation metric: the one scorer of
    ``pyalign.scoring.SequenceClassifier`` (the same pair format and head as the ARGS/PANDA reward), returning
    plain floats (NaN where the model gives a non-finite score).

    ``head``: None = the model's score (ArmoRM's ``score``, else logit 0), an int = objective / logit index
    (a string of digits too), another string = an output attribute name."""

    def __init__(self, path: str, head=None, device: str = "cpu", trust_remote_code: Optional[bool] = None,
                 max_length: int = 2048, batch_size: int = 8):
        self.scorer = SequenceClassifier(path, head=head, device=device, trust_remote_code=trust_remote_code,
                                         max_length=max_length, batch_size=batch_size)
        self.model, self.tokenizer, self.head = self.scorer.model, self.scorer.tokenizer, self.scorer.head

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return [v if math.isfinite(v) else float("nan") for v in self.scorer.score(prompts, responses).tolist()]
