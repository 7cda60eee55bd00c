"""Faithful re-implementations of how existing code decodes with two contexts — for speed comparison only.

(i) ``authors_amulet``: the Amulet authors' decoding loop (``DecodingMethodsModels/*Methods.py``,
    ``amulet_generate``): per generated token, two *uncached* forwards over the full sequences (the LM head
    applied to every position, as their ``amulet_forward`` does), a log-softmax over the whole
    [batch, seq, V] logits, then T FTRL iterations — here the literal loop ``pyalign.reference.amulet_iterative``
    on the last position — and, with ``full_seq_softmax=True`` (their code, the default), the re-softmax of the
    whole [batch, seq, V] tensor at every iteration that their loop performs although only the last position
    is used. Greedy argmax; both sequences append the token. Their code takes one question at a time (no
    attention mask, so no padding), so a batch of B prompts runs as B sequential generations.

(ii) ``two_cache``: the pattern of Linear Alignment's code and of language-model-arithmetic: two separate
    KV caches (preference and base), two forwards per step (each batched over the B prompts), then the
    guided combination z_base + A (z_pref − z_base) and argmax.

Both take the exact context token ids (``pyalign.preferences.batch_context_ids``) and stop only after
``max_new_tokens`` unless ``eos_token_ids`` are given, so their lengths match the benchmark's other rows.
"""
from __future__ import annotations

from typing import Sequence

import torch

from pyalign.batching import ContextBatch
from pyalign.reference import amulet_iterative, guided_logits


@torch.inference_mode()
def authors_amulet(model, pref_ids: Sequence[Sequence[int]], base_ids: Sequence[Sequence[int]],
                   max_new_tokens: int, T: int = 60, alpha: float = 2.0, lam: float = 2.0, eta: float = 10.0,
                   eos_token_ids: Sequence[int] = (), full_seq_softmax: bool = True) -> list[list[int]]:
    device = next(model.parameters()).device
    out = []
    for p_ids, b_ids in zip(pref_ids, base_ids):           # one question at a time, as in their main loop
        player = torch.tensor([list(p_ids)], device=device)
        plain = torch.tensor([list(b_ids)], device=device)
        new: list[int] = []
        for _ in range(max_new_tokens):
            z_ref = model(input_ids=plain, use_cache=False).logits.float()      # [1, Lb, V], every position
            z_player = model(input_ids=player, use_cache=False).logits.float()  # [1, Lp, V]
            log_ref = torch.log(torch.softmax(z_ref, dim=-1))
            log_player = torch.log(torch.softmax(z_player, dim=-1))
            if full_seq_softmax:
                # their loop re-normalises the whole [1, L, V] player tensor after each of the T updates
                buf = log_player.clone()
                for _t in range(T - 1):
                    buf = torch.log(torch.softmax(buf, dim=-1))
            log_pi = amulet_iterative(log_player[:, -1, :], log_ref[:, -1, :], T, alpha, lam, eta)
            tok = int(torch.argmax(log_pi, dim=-1))
            new.append(tok)
            if tok in eos_token_ids:
                break
            t = torch.tensor([[tok]], device=device)
            player = torch.cat([player, t], dim=1)
            plain = torch.cat([plain, t], dim=1)
        out.append(new)
    return out


@torch.inference_mode()
def two_cache(model, pref_ids: Sequence[Sequence[int]], base_ids: Sequence[Sequence[int]], max_new_tokens: int,
              weight: float, pad_id: int, eos_token_ids: Sequence[int] = ()) -> list[list[int]]:
    pref = ContextBatch(model, pref_ids, pad_id, max_new_tokens)
    base = ContextBatch(model, base_ids, pad_id, max_new_tokens)
    zp, zb = pref.prefill(), base.prefill()                 # two separate caches, two forwards
    B = len(pref_ids)
    out: list[list[int]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool)
    for step in range(max_new_tokens):
        tok = torch.argmax(guided_logits(zp.float(), zb.float(), torch.full((B,), float(weight))), dim=-1)
        for r in range(B):
            if not done[r]:
                out[r].append(int(tok[r]))
                if int(tok[r]) in eos_token_ids:
                    done[r] = True
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        zp, zb = pref.step(tok), base.step(tok)
    return out


@torch.inference_mode()
def hf_cfg(model, pref_ids: Sequence[Sequence[int]], base_ids: Sequence[Sequence[int]], max_new_tokens: int,
           weight: float, pad_id: int) -> list[list[int]]:
    """transformers' own classifier-free guidance, what a transformers user already has:
    ``model.generate(pref, guidance_scale=A, negative_prompt_ids=base)`` = log_softmax(z_base) + A (log_softmax(z_pref)
    − log_softmax(z_base)): the collapsed Amulet formula (the same greedy tokens), with the negative prompt on a second,
    unbatched KV cache. One prompt at a time (the processor takes one negative prompt per call)."""
    out = []
    for p, b in zip(pref_ids, base_ids):
        ids = torch.tensor([list(p)], device=model.device)
        neg = torch.tensor([list(b)], device=model.device)
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), guidance_scale=float(weight),
                             negative_prompt_ids=neg, negative_prompt_attention_mask=torch.ones_like(neg),
                             do_sample=False, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                             pad_token_id=pad_id)
        out.append(gen[0, ids.shape[1]:].tolist())
    return out
