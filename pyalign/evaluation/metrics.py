"""Text metrics of the papers that run offline: length, distinct-n, rep-n / diversity (PANDA), sentiment
(VADER) and degeneration flags. Every function takes plain text (or a token list) and is pure.

Definitions (per response):

    words(text)     = text.split()                        (whitespace tokens; PANDA/SimCTG tokenise the same way)
    distinct-n      = |unique n-grams| / |n-grams|         (0 when the text has fewer than n words)
    rep-n           = 1 − |unique n-grams| / |n-grams|     (0 when the text has fewer than n words)
    diversity       = Π_{n=2..4} (1 − rep-n)

Sentiment is VADER's, from ``pyalign.scoring`` (shared with the sentiment reward). Coherence (prompt/response
cosine of MiniLM embeddings) is in ``embeddings.py``; reward-model scores and the pairwise judge are in
``judge.py``.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Optional, Sequence, Union

from ..scoring.sentiment import vader_compound

TextOrTokens = Union[str, Sequence]

# Default thresholds of the degeneration flags (see ``degeneration_flags``).
SHORT_FRACTION = 0.1       # shorter than 10 % of the base answer ...
SHORT_BASE_MIN_WORDS = 20  # ... where the base answer had at least 20 words
SHORT_ABS_WORDS = 3        # or at most 3 words whatever the base did
REP_THRESHOLD = 0.5        # rep-4 above this (half the 4-grams are repeats)
ECHO_OVERLAP = 0.6         # fraction of the instruction's word 4-grams (or a 6-word span) found in the answer


def words(text: str) -> list[str]:
    return text.split()


def _tokens(x: TextOrTokens) -> list:
    return words(x) if isinstance(x, str) else list(x)


def ngrams(tokens: Sequence, n: int) -> list[tuple]:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def word_count(text: str) -> int:
    return len(words(text))


def token_count(text: str = "", tokenizer=None, token_ids: Optional[Sequence[int]] = None) -> int:
    """Length in model tokens: ``len(token_ids)`` when given, else the tokenizer's count of ``text``."""
    if token_ids is not None:
        return len(token_ids)
    if tokenizer is None:
        raise ValueError("token_count needs token_ids or a tokenizer")
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def distinct_n(x: TextOrTokens, n: int) -> float:
    """|unique n-grams| / |n-grams| of one response (text is split on whitespace); 0.0 if it has no n-gram."""
    grams = ngrams(_tokens(x), n)
    return len(set(grams)) / len(grams) if grams else 0.0


def rep_n(x: TextOrTokens, n: int) -> float:
    """PANDA's rep-n = 1 − |unique n-grams| / |n-grams| (0.0 if the response has no n-gram)."""
    grams = ngrams(_tokens(x), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def diversity(x: TextOrTokens, ns: Sequence[int] = (2, 3, 4)) -> float:
    """PANDA's diversity = Π_n (1 − rep-n), n = 2..4."""
    toks = _tokens(x)
    out = 1.0
    for n in ns:
        out *= 1.0 - rep_n(toks, n)
    return out


def corpus_distinct_n(texts: Sequence[TextOrTokens], n: int) -> float:
    """distinct-n over a set of responses (unique n-grams of all of them / all their n-grams)."""
    counts: Counter = Counter()
    for t in texts:
        counts.update(ngrams(_tokens(t), n))
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def sentiment(text: str) -> float:
    """VADER compound score in [−1, 1] (``pyalign.scoring``: the analyzer the sentiment reward uses too)."""
    return vader_compound([text])[0]


_NORM = re.compile(r"[^a-z0-9 ]+")


def _norm_words(text: str) -> list[str]:
    return _NORM.sub(" ", text.lower()).split()


def echo_score(answer: str, instruction: str, n: int = 4) -> float:
    """Fraction of the instruction's word n-grams (lower-cased, punctuation removed) that appear in the answer.
    1.0 means the answer contains the whole instruction sentence."""
    inst = ngrams(_norm_words(instruction), n)
    if not inst:
        return 0.0
    ans = set(ngrams(_norm_words(answer), n))
    return sum(g in ans for g in inst) / len(inst)


def degeneration_flags(text: str, instructions: Sequence[str] = (), base_text: Optional[str] = None,
                       finish_reason: Optional[str] = None, base_finish_reason: Optional[str] = None,
                       short_fraction: float = SHORT_FRACTION, short_base_min_words: int = SHORT_BASE_MIN_WORDS,
                       short_abs_words: int = SHORT_ABS_WORDS, rep_threshold: float = REP_THRESHOLD,
                       echo_overlap: float = ECHO_OVERLAP) -> list[str]:
    """Names of the ways an answer degenerated (empty list: looks fine).

    - ``"empty"``: no words at all.
    - ``"short"``: at most ``short_abs_words`` words, or under ``short_fraction`` of the base answer's words
      where the base answer had at least ``short_base_min_words`` (answered fully) and this one stopped on its
      own (``finish_reason`` not ``"length"``).
    - ``"echo"``: the answer repeats an instruction — the preference sentence or the prompt/question —
      (``echo_score`` ≥ ``echo_overlap`` for any of ``instructions``).
    - ``"repetitive"``: rep-4 > ``rep_threshold`` (or rep-2 > 0.75: the same word pairs over and over).
    """
    flags = []
    w = word_count(text)
    if w == 0:
        return ["empty"]
    stopped = finish_reason != "length"
    if base_text is not None and stopped:
        bw = word_count(base_text)
        if bw >= short_base_min_words and w < short_fraction * bw:
            flags.append("short")
    if "short" not in flags and w <= short_abs_words and stopped:
        flags.append("short")
    if any(inst and echo_score(text, inst) >= echo_overlap for inst in instructions):
        flags.append("echo")
    if rep_n(text, 4) > rep_threshold or rep_n(text, 2) > 0.75:
        flags.append("repetitive")
    return flags


def text_metrics(text: str, token_ids: Optional[Sequence[int]] = None, tokenizer=None,
                 with_sentiment: bool = True) -> dict:
    """All the cheap per-response metrics in one dict (keys used by the runner and the report)."""
    toks = words(text)
    out = {
        "length_tokens": token_count(text, tokenizer, token_ids) if (token_ids is not None or tokenizer) else None,
        "length_words": len(toks),
        "distinct_1": distinct_n(toks, 1),
        "distinct_2": distinct_n(toks, 2),
        "rep_2": rep_n(toks, 2),
        "rep_3": rep_n(toks, 3),
        "rep_4": rep_n(toks, 4),
        "diversity": diversity(toks),
    }
    if with_sentiment:
        try:
            out["sentiment"] = sentiment(text)
        except ImportError:
            out["sentiment"] = None
    return out
