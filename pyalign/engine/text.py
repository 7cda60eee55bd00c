"""Incremental detokenisation of one answer: constant work per token, exact UTF-8, stop strings, stream deltas.

Decoding the whole answer at every token costs O(n²) over an answer; instead each token decodes a short window
``ids[prefix:]`` and keeps what it adds beyond ``ids[prefix:read]`` (the window's left context makes leading spaces
and merges come out as in a full decode). A window ending inside a multi-byte character decodes to U+FFFD: its
text is withheld until the character completes. Stop strings are searched only in the region new text can complete
(``len(longest stop) - 1`` characters back), and deltas hold back that much so a stream never shows a stop string
or its prefix. The concatenated deltas equal ``text``; ``text`` equals ``tokenizer.decode(ids,
skip_special_tokens=True)`` cut before the first stop string (tests/test_engine.py checks both).
"""
from __future__ import annotations

from typing import Optional, Sequence

#: tokens of left context kept when decoding a window (enough for any merge that changes a boundary)
_CONTEXT = 5


class RowText:
    def __init__(self, tokenizer, stop: Sequence[str] = ()):
        self.tok = tokenizer
        self.stop = tuple(stop)
        self.holdback = max((len(s) for s in self.stop), default=1) - 1
        self.ids: list[int] = []
        self.text = ""
        self.emitted = 0                 # characters of text already streamed
        self._prefix = 0                 # window start (token index)
        self._read = 0                   # tokens whose text is already in self.text
        self._search_from = 0
        self.stopped = False

    def _decode(self, ids) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def add(self, token: int) -> str:
        """Append a (non-EOS) token; returns the text delta safe to stream now. Sets ``stopped`` on a stop string."""
        self.ids.append(int(token))
        before = self._decode(self.ids[self._prefix:self._read])
        window = self._decode(self.ids[self._prefix:])
        if len(window) > len(before) and not window.endswith("\ufffd"):
            self.text += window[len(before):]
            self._prefix = max(self._prefix, self._read - _CONTEXT)
            self._read = len(self.ids)
            if self.stop:
                hit = first_hit(self.text, self.stop, self._search_from)
                if hit is not None:
                    self.text = self.text[:hit]
                    self.stopped = True
                    return self.flush()
                self._search_from = max(0, len(self.text) - self.holdback)
        safe = max(self.emitted, len(self.text) - self.holdback)
        delta = self.text[self.emitted:safe]
        self.emitted = safe
        return delta

    def flush(self) -> str:
        """The answer ended: whatever was held back (an unfinished character is decoded as U+FFFD, as a full decode
        would show it)."""
        if self._read < len(self.ids) and not self.stopped:
            before = self._decode(self.ids[self._prefix:self._read])
            self.text += self._decode(self.ids[self._prefix:])[len(before):]
            self._read = len(self.ids)
        delta = self.text[self.emitted:]
        self.emitted = len(self.text)
        return delta


def eos_token_ids(tokenizer, model=None) -> tuple:
    """The tokenizer's EOS id and the model's generation_config EOS id(s), deduplicated."""
    ids = []
    for v in (getattr(tokenizer, "eos_token_id", None),
              getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if v is None:
            continue
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if int(x) not in ids:
                ids.append(int(x))
    return tuple(ids)


def pad_token_id(tokenizer, model=None) -> int:
    for src in (tokenizer, getattr(model, "generation_config", None), getattr(model, "config", None)):
        v = getattr(src, "pad_token_id", None) if src is not None else None
        if isinstance(v, int):
            return v
    eos = getattr(tokenizer, "eos_token_id", None)
    return int(eos) if isinstance(eos, int) else 0


def first_hit(text: str, stop: Sequence[str], start: int = 0) -> Optional[int]:
    """Where the first of the stop strings starts in ``text[start:]`` (an index into ``text``), or None."""
    hits = [i for i in (text.find(s, start) for s in stop) if i >= 0]
    return min(hits) if hits else None
