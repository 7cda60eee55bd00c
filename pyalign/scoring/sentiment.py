"""VADER sentiment (``vaderSentiment``): the one analyzer of the package, for the sentiment reward of
ARGS/PANDA and the sentiment metric of the evaluation.

    compound(text) ∈ [−1, 1]     (VADER's normalised sum of valence scores: x / sqrt(x² + 15))
"""
from __future__ import annotations

from typing import Sequence

_ANALYZER = None


def vader():
    """The shared ``SentimentIntensityAnalyzer`` (created on first use)."""
    global _ANALYZER
    if _ANALYZER is None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise ImportError("sentiment scores need vaderSentiment: pip install vaderSentiment") from e
        _ANALYZER = SentimentIntensityAnalyzer()
    return _ANALYZER


def vader_compound(texts: Sequence[str]) -> list[float]:
    """VADER compound score of each text, in [−1, 1]."""
    an = vader()
    out = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a string, got {type(t).__name__}")
        out.append(float(an.polarity_scores(t)["compound"]))
    return out
