"""A batch of token sequences on one model and one KV cache, advanced one token per step; rows join and leave.

The HF engine's primitive. Rows are left-padded to a common length; the attention mask marks padding and the
position ids count only real tokens, so row r computes exactly what it would alone (up to floating-point
reduction order). Two-context methods (LA, Amulet) put the preference rows and the base rows in ONE
ContextBatch, so each step is one batched forward of all rows.

    ctx = ContextBatch(model, [ids_row0, ids_row1, ...], pad_id)
    logits = ctx.prefill()            # [R, V] next-token logits of every row
    logits = ctx.step(tokens)         # append tokens [R] (one per row) and return the next logits
    logits = ctx.add([ids, ...])      # new rows join (their own prefill, then the caches merge): [R_new, V]
    ctx.keep(rows)                    # only these rows stay (finished rows leave; left padding is trimmed)
    scores = ctx.peek(candidates)     # logits after each of k candidate tokens [R, k] -> [R, k, V],
                                      # without changing the cache (for reward models scoring candidates)

Only the attention mask grows per step (the KV cache needs it); the token ids are not kept.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Optional, Sequence

import torch

#: row counts for which the LM head runs as W @ x.T (see ``skinny_lm_head``)
SKINNY_ROWS = range(2, 65)


@contextlib.contextmanager
def skinny_lm_head(model):
    """Run a plain ``nn.Linear`` LM head as ``(W @ x.T).T`` while 2–64 rows are decoded.

    On CPU, ``F.linear`` with 2–16 rows and a [V, H] head (49 152 × 576 for the default model) takes a GEMM path
    that is ~3× slower than the transposed product (20 ms vs 6 ms per step at 2 rows, measured here), which
    alone cost two-context decoding a quarter of its speed. The model's own post-processing of the logits
    (soft-capping, scaling) is untouched: only the head's matmul is swapped, for the duration of the call."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if type(head) is not torch.nn.Linear or head.weight.device.type != "cpu":
        yield
        return

    def forward(x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if rows not in SKINNY_ROWS:
            return torch.nn.functional.linear(x, head.weight, head.bias)
        out = (head.weight @ x.reshape(rows, x.shape[-1]).T).T.contiguous()
        if head.bias is not None:
            out = out + head.bias
        return out.reshape(*x.shape[:-1], head.weight.shape[0])

    head.forward = forward
    try:
        yield
    finally:
        del head.forward


def _max_positions(model) -> Optional[int]:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "max_position_embeddings", None)


def _left_padded(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for r, s in enumerate(sequences):
        ids[r, longest - len(s):] = torch.as_tensor(list(s), dtype=torch.long)
        mask[r, longest - len(s):] = 1
    return ids, mask


def _cache_layers(cache) -> list:
    """The per-layer key/value holders of a transformers cache whose rows can be padded and concatenated."""
    layers = getattr(cache, "layers", None)
    if layers is None or not all(hasattr(l, "keys") and hasattr(l, "values") and not getattr(l, "is_sliding", False)
                                 for l in layers):
        raise TypeError(f"rows cannot join a running batch with a {type(cache).__name__}: only full-attention "
                        "dynamic caches can be merged (start a new batch instead)")
    return list(layers)


class ContextBatch:
    """R left-padded sequences sharing a KV cache on ``model`` (a causal LM returning ``.logits``)."""

    def __init__(self, model, sequences: Sequence[Sequence[int]], pad_id: int, max_new_tokens: int = 0):
        if len(sequences) == 0:
            raise ValueError("ContextBatch needs at least one sequence")
        self.model = model
        self.device = next(model.parameters()).device
        self.pad_id = int(pad_id)
        self.limit = _max_positions(model)
        self._check(sequences, max_new_tokens)
        ids, mask = _left_padded(sequences, self.pad_id)
        self.prompt_ids = ids.to(self.device)          # kept until prefill(): the cache holds them afterwards
        self.attention_mask = mask.to(self.device)
        self.lengths = torch.as_tensor([len(s) for s in sequences], device=self.device)
        self.cache = None

    def _check(self, sequences, max_new_tokens: int) -> None:
        for i, s in enumerate(sequences):
            if len(s) == 0:
                raise ValueError(f"sequence {i} is empty: every context needs at least one token")
        longest = max(len(s) for s in sequences)
        if self.limit is not None and longest + max_new_tokens > self.limit:
            raise ValueError(f"prompt of {longest} tokens + max_new_tokens={max_new_tokens} exceeds the model's "
                             f"context of {self.limit} tokens; shorten the prompt or lower max_new_tokens")

    @property
    def num_rows(self) -> int:
        return self.attention_mask.shape[0]

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache):
        with skinny_lm_head(self.model):
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                             use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :], out.past_key_values

    @torch.inference_mode()
    def prefill(self) -> torch.Tensor:
        """Run the prompts; returns the next-token logits [R, V] (the model's dtype)."""
        positions = (self.attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits, self.cache = self._forward(self.prompt_ids, self.attention_mask, positions, None)
        self.prompt_ids = None
        return logits

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per row; returns the next-token logits [R, V]."""
        if self.cache is None:
            raise RuntimeError("call prefill() before step()")
        tokens = tokens.to(self.device, torch.long).reshape(-1, 1)
        if tokens.shape[0] != self.num_rows:
            raise ValueError(f"step() needs one token per row ({self.num_rows}), got {tokens.shape[0]}")
        self.attention_mask = torch.cat([self.attention_mask, torch.ones_like(tokens)], dim=1)
        positions = self.lengths.reshape(-1, 1).clone()
        self.lengths = self.lengths + 1
        logits, self.cache = self._forward(tokens, self.attention_mask, positions, self.cache)
        return logits

    @torch.inference_mode()
    def keep(self, rows: Sequence[int]) -> None:
        """Only ``rows`` (in this order) stay in the batch: finished rows stop costing compute and memory.

        Columns that are padding in every remaining row are dropped from the mask and the cache."""
        if len(rows) == 0:
            raise ValueError("keep() needs at least one row (drop the batch instead)")
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.device)
        self.attention_mask = self.attention_mask.index_select(0, idx)
        self.lengths = self.lengths.index_select(0, idx)
        if self.cache is None:
            self.prompt_ids = self.prompt_ids.index_select(0, idx)
        else:
            self.cache.batch_select_indices(idx)
        self._trim()

    def _trim(self) -> None:
        used = self.attention_mask.any(dim=0)
        first = int(used.to(torch.int8).argmax()) if bool(used.any()) else 0
        if first == 0:
            return
        self.attention_mask = self.attention_mask[:, first:].contiguous()
        if self.cache is None:
            self.prompt_ids = self.prompt_ids[:, first:].contiguous()
            return
        for layer in _cache_layers(self.cache):
            layer.keys = layer.keys[:, :, first:].contiguous()
            layer.values = layer.values[:, :, first:].contiguous()

    @torch.inference_mode()
    def add(self, sequences: Sequence[Sequence[int]], max_new_tokens: int = 0) -> torch.Tensor:
        """New rows join a running batch: one prefill of the new rows, then both caches are left-padded to a common
        length and concatenated (padding is masked). Returns the new rows' next-token logits [len(sequences), V];
        the new rows come last."""
        if self.cache is None:
            raise RuntimeError("call prefill() before add()")
        new = ContextBatch(self.model, sequences, self.pad_id, max_new_tokens)
        logits = new.prefill()
        old_layers, new_layers = _cache_layers(self.cache), _cache_layers(new.cache)
        L_old, L_new = self.attention_mask.shape[1], new.attention_mask.shape[1]
        L = max(L_old, L_new)

        def pad(t: torch.Tensor, n: int) -> torch.Tensor:
            if n == 0:
                return t
            shape = list(t.shape)
            shape[2] = n
            return torch.cat([t.new_zeros(shape), t], dim=2)

        for a, b in zip(old_layers, new_layers):
            a.keys = torch.cat([pad(a.keys, L - L_old), pad(b.keys, L - L_new)], dim=0)
            a.values = torch.cat([pad(a.values, L - L_old), pad(b.values, L - L_new)], dim=0)

        def pad_mask(m: torch.Tensor, n: int) -> torch.Tensor:
            return m if n == 0 else torch.cat([m.new_zeros((m.shape[0], n)), m], dim=1)

        self.attention_mask = torch.cat([pad_mask(self.attention_mask, L - L_old),
                                         pad_mask(new.attention_mask, L - L_new)], dim=0)
        self.lengths = torch.cat([self.lengths, new.lengths])
        return logits

    @torch.inference_mode()
    def peek(self, candidates: torch.Tensor, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits after appending each candidate: candidates [R', k] -> [R', k, V]; the cache is unchanged.

        ``rows`` selects which rows of the batch the candidates extend (default: all). The k continuations of
        a row run as one batch on a copy of that row's cache (the prefix is never recomputed)."""
        if self.cache is None:
            raise RuntimeError("call prefill() before peek()")
        rows = torch.arange(self.num_rows, device=self.device) if rows is None else rows.to(self.device)
        R, k = candidates.shape
        cache = copy.deepcopy(self.cache)
        cache.reorder_cache(rows.repeat_interleave(k))
        mask = self.attention_mask[rows].repeat_interleave(k, dim=0)
        mask = torch.cat([mask, torch.ones((R * k, 1), dtype=mask.dtype, device=self.device)], dim=1)
        positions = self.lengths[rows].repeat_interleave(k).reshape(-1, 1)
        logits, _ = self._forward(candidates.reshape(-1, 1).to(self.device), mask, positions, cache)
        return logits.reshape(R, k, -1)
