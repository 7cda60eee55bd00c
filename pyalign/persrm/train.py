"""PersRM training (PAD's personalised reward model; the authors never released theirs).

Loss of the paper, per pair (x, y_w, y_l) with preference dimensions d = 1..D and weights w_p:

    φ_d(y)  = Σ_t β (log π_θ(y_t | s_t) − log π_ref(y_t | s_t)),   s_t = PAD's principle context of dimension d
                                        (preferences.context_ids(..., template="pad"), as PAD decodes) + y_<t
    loss    = −log σ( Σ_d w_d (φ_d(y_w) − φ_d(y_l)) )

π_ref is the frozen starting model (its log-probs are computed once, before the first step, and kept in the
checkpoint). Full fine-tuning with AdamW on CPU by default. Progress is printed every ``log_every`` steps; a
checkpoint (model, optimizer, data position, history, reference log-probs) is written atomically every
``save_every`` steps and when the run is interrupted (KeyboardInterrupt / SIGTERM); ``resume=True``
continues from it with the same data order (the shuffle of epoch e is seeded by seed + e), so an interrupted
run reaches exactly the state of an uninterrupted one. The output directory is a causal-LM directory plus
``persrm.json`` (β, reference model, preferences, placement of the principle), which ``method="pad"``
(``reward=DIR``) loads.

Held-out "preference accuracy" = the fraction of pairs whose reward margin Σ_d w_d (φ_d(y_w) − φ_d(y_l)) is > 0,
ties counting ½ (before training π_θ = π_ref, every margin is 0, so the accuracy is 0.5).
"""
from __future__ import annotations

import copy
import json
import math
import os
import pathlib
import shutil
import signal
import sys
import tempfile
import time
from typing import Callable, Optional, Sequence, Union

import torch

from ..preferences import PLACEMENTS, context_ids, get_preference
from .data import Pair, load_pairs

CKPT = "checkpoint"


def _principle_ids(tok, prompt: str, preference: str, placement: str = "system") -> list[int]:
    """PAD's principle context of one prompt and dimension: the same ids PAD's reward rows use."""
    return context_ids(tok, prompt, get_preference(preference), placement, template="pad")[0]


def encode_pairs(pairs: Sequence[Pair], tok, max_response_tokens: int = 256,
                 placement: str = "system") -> list[dict]:
    """Per pair and dimension: context ids (principle prompt) and chosen/rejected response ids (+ EOS)."""
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    out = []
    for p in pairs:
        ch = list(tok(p.chosen, add_special_tokens=False)["input_ids"])[:max_response_tokens] + eos
        rj = list(tok(p.rejected, add_special_tokens=False)["input_ids"])[:max_response_tokens] + eos
        out.append({"ctx": [_principle_ids(tok, p.prompt, d, placement) for d in p.preferences],
                    "chosen": ch, "rejected": rj,
                    "weights": list(p.weights)})
    return out


def sequence_logps(model, items: list[tuple[list[int], list[int]]], pad_id: int) -> torch.Tensor:
    """Σ_t log π(resp_t | ctx, resp_<t) for each (ctx, resp): [N] (right padding; gradients flow)."""
    dev = next(model.parameters()).device
    L = max(len(c) + len(r) for c, r in items)
    ids = torch.full((len(items), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), L), dtype=torch.long)
    tgt = torch.zeros((len(items), L), dtype=torch.bool)
    for i, (c, r) in enumerate(items):
        n = len(c) + len(r)
        ids[i, :n] = torch.tensor(c + r)
        mask[i, :n] = 1
        tgt[i, len(c):n] = True
    ids, mask, tgt = ids.to(dev), mask.to(dev), tgt.to(dev)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (lp * tgt[:, 1:]).sum(-1)


def _items(batch: list[dict]) -> tuple[list, list]:
    """Flattened (ctx, resp) items: for each pair, dim: chosen then rejected; and the weight per item."""
    items, weights = [], []
    for e in batch:
        for c, w in zip(e["ctx"], e["weights"]):
            items += [(c, e["chosen"]), (c, e["rejected"])]
            weights += [w, -w]
    return items, weights


def pair_margins(model, enc: list[dict], ref_logps: torch.Tensor, beta: float, pad_id: int) -> torch.Tensor:
    """Σ_d w_d (φ_d(chosen) − φ_d(rejected)) per pair; ``ref_logps`` is the flat item order of ``_items``."""
    items, weights = _items(enc)
    pol = sequence_logps(model, items, pad_id)
    signed = beta * (pol - ref_logps.to(pol.device)) * torch.tensor(weights, device=pol.device)
    sizes = [2 * len(e["ctx"]) for e in enc]
    return torch.stack([s.sum() for s in torch.split(signed, sizes)])


@torch.no_grad()
def reference_logps(ref_model, enc: list[dict], pad_id: int, batch_size: int = 8) -> list[torch.Tensor]:
    """Per pair, the frozen reference's log-probs of its items ([2·D] each)."""
    out = []
    for i in range(0, len(enc), batch_size):
        chunk = enc[i:i + batch_size]
        items, _ = _items(chunk)
        lp = sequence_logps(ref_model, items, pad_id).cpu()
        sizes = [2 * len(e["ctx"]) for e in chunk]
        out += list(torch.split(lp, sizes))
    return out


@torch.no_grad()
def preference_accuracy(model, ref_model, tok, pairs: Sequence[Pair], beta: float = 0.1, batch_size: int = 8,
                        max_response_tokens: int = 256, placement: str = "system") -> tuple[float, float]:
    """(accuracy with ties ½, mean margin) of the PersRM reward on ``pairs``."""
    model.eval()
    enc = encode_pairs(pairs, tok, max_response_tokens, placement)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    refs = reference_logps(ref_model, enc, pad, batch_size)
    ms = []
    for i in range(0, len(enc), batch_size):
        ms.append(pair_margins(model, enc[i:i + batch_size], torch.cat(refs[i:i + batch_size]), beta, pad).cpu())
    m = torch.cat(ms)
    acc = float(((m > 0).float() + 0.5 * (m == 0).float()).mean())
    return acc, float(m.mean())


def _atomic_dir_write(target: pathlib.Path, write: Callable[[pathlib.Path], None]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=target.name + ".tmp.", dir=target.parent))
    try:
        write(tmp)
        old = target.with_name(target.name + ".old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Interrupted(Exception):
    pass


def train_persrm(pairs: Union[str, pathlib.Path, Sequence[Pair]], out: Union[str, pathlib.Path], *,
                 model=None, tokenizer=None, model_path=None, epochs: int = 1, lr: float = 5e-6,
                 beta: float = 0.1, batch_size: int = 4, max_steps: Optional[int] = None, resume: bool = False,
                 save_every: int = 50, log_every: int = 1, seed: int = 0, max_response_tokens: int = 256,
                 weight_decay: float = 0.0, placement: str = "system", log: Callable[[str], None] = None,
                 on_step: Optional[Callable[[int, float], None]] = None) -> dict:
    """Train a PersRM; returns a summary dict (steps, loss history, output dir).

    ``model``/``tokenizer``: an in-memory causal LM (tests); else ``model_path`` (None: the default model).
    ``on_step(step, loss)`` is called after each optimizer step (an exception there interrupts the run, which
    saves a checkpoint first)."""
    from ..models import load_model
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out = pathlib.Path(out)
    ck = out / CKPT
    pair_list = load_pairs(pairs) if isinstance(pairs, (str, pathlib.Path)) else list(pairs)
    if not pair_list:
        raise ValueError("no training pairs")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("save_every", save_every)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be 'system' or 'user', got {placement!r}")
    if not (lr > 0 and math.isfinite(lr)) or not (beta > 0 and math.isfinite(beta)):
        raise ValueError(f"lr and beta must be finite and > 0, got lr={lr}, beta={beta}")
    in_memory = model is not None
    if in_memory:
        if tokenizer is None:
            raise ValueError("an in-memory model needs its tokenizer")
        tok = tokenizer
    else:
        model, tok = load_model(model_path)
    ref_model = copy.deepcopy(model).eval()
    for p in ref_model.parameters():
        p.requires_grad_(False)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    enc = encode_pairs(pair_list, tok, max_response_tokens, placement)
    n_batches = math.ceil(len(enc) / batch_size)
    total = epochs * n_batches if max_steps is None else min(max_steps, epochs * n_batches)
    state = {"step": 0, "history": [], "config": {"lr": lr, "beta": beta, "batch_size": batch_size, "seed": seed,
                                                   "epochs": epochs, "num_pairs": len(enc),
                                                   "placement": placement}}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    if resume and (ck / "state.json").exists():
        st = json.loads((ck / "state.json").read_text())
        st["config"].setdefault("placement", "system")       # checkpoints from before placement was recorded
        for key in ("beta", "batch_size", "seed", "num_pairs", "placement"):
            if st["config"].get(key) != state["config"][key]:
                raise ValueError(f"cannot resume: {key} was {st['config'].get(key)} in the checkpoint, now "
                                 f"{state['config'][key]} (use the same pairs and settings, or start afresh)")
        from safetensors.torch import load_file
        model.load_state_dict(load_file(str(ck / "model.safetensors")), strict=False)
        opt.load_state_dict(torch.load(ck / "optimizer.pt", weights_only=True))
        ref_lp = torch.load(ck / "ref_logps.pt", weights_only=True)
        state["step"], state["history"] = st["step"], st["history"]
        log(f"[persrm] resumed from {ck} at step {state['step']}/{total}")
    else:
        if resume:
            log(f"[persrm] no checkpoint in {ck}: starting from step 0")
        t = time.perf_counter()
        ref_lp = reference_logps(ref_model, enc, pad, batch_size)
        log(f"[persrm] reference log-probs of {len(enc)} pairs in {time.perf_counter() - t:.1f}s")

    def save_checkpoint():
        from safetensors.torch import save_file

        def w(d: pathlib.Path):
            sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
            # tied weights share storage: keep one copy, load with strict=False
            seen, uniq = {}, {}
            for k, v in model.state_dict().items():
                key = v.data_ptr()
                if key in seen:
                    continue
                seen[key] = k
                uniq[k] = sd[k]
            save_file(uniq, str(d / "model.safetensors"))
            torch.save(opt.state_dict(), d / "optimizer.pt")
            torch.save(ref_lp, d / "ref_logps.pt")
            (d / "state.json").write_text(json.dumps(state))
        _atomic_dir_write(ck, w)

    def order(epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(seed + epoch)
        return torch.randperm(len(enc), generator=g).tolist()

    old_term = None

    def on_term(signum, frame):
        raise _Interrupted()
    try:
        old_term = signal.signal(signal.SIGTERM, on_term)
    except ValueError:               # not the main thread
        pass
    t0 = time.perf_counter()
    start = state["step"]
    model.train()
    try:
        while state["step"] < total:
            s = state["step"]
            epoch, b = divmod(s, n_batches)
            idx = order(epoch)[b * batch_size:(b + 1) * batch_size]
            batch = [enc[i] for i in idx]
            margins = pair_margins(model, batch, torch.cat([ref_lp[i] for i in idx]), beta, pad)
            loss = -torch.nn.functional.logsigmoid(margins).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state["step"] = s + 1
            acc = float((margins > 0).float().mean())
            state["history"].append({"step": s + 1, "epoch": epoch, "loss": float(loss.detach()), "acc": acc})
            if log_every and (s + 1) % log_every == 0:
                el = time.perf_counter() - t0
                eta = el / (s + 1 - start) * (total - s - 1)
                log(f"[persrm] step {s + 1}/{total} epoch {epoch + 1} loss {float(loss.detach()):.4f} "
                    f"batch-acc {acc:.2f} ({el:.0f}s, eta {eta:.0f}s)")
            if (s + 1) % save_every == 0 and s + 1 < total:
                save_checkpoint()
            if on_step is not None:
                on_step(s + 1, float(loss.detach()))
    except (KeyboardInterrupt, _Interrupted, Exception) as e:
        if state["step"] > start or resume:
            save_checkpoint()
            log(f"[persrm] interrupted at step {state['step']}: checkpoint saved in {ck}; rerun with --resume")
        raise (KeyboardInterrupt() if isinstance(e, _Interrupted) else e)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    model.eval()
    save_checkpoint()
    ref_name = None if in_memory else (str(model_path) if model_path is not None else "default")

    def write_final(d: pathlib.Path):
        model.save_pretrained(d)
        tok.save_pretrained(d)
        if in_memory:                  # make the directory self-contained: the frozen reference next to it
            ref_model.save_pretrained(d / "ref")
            tok.save_pretrained(d / "ref")
        meta = {"format": "pyalign-persrm/1", "beta": beta, "ref_model": "ref" if in_memory else ref_name,
                "preferences": sorted({p for x in pair_list for p in x.preferences}), "steps": state["step"],
                "template": "pad", "placement": placement,
                "final_loss": state["history"][-1]["loss"] if state["history"] else None}
        (d / "persrm.json").write_text(json.dumps(meta, indent=1))
    final_tmp_parent = out
    final_tmp_parent.mkdir(parents=True, exist_ok=True)
    # write the model files into out/ (keeping the checkpoint folder for a later resume or inspection)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="final.", dir=out))
    try:
        write_final(tmp)
        for f in tmp.iterdir():
            dst = out / f.name
            if dst.is_dir():
                shutil.rmtree(dst)
            os.replace(f, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"[persrm] saved {out} ({state['step']} steps)")
    return {"steps": state["step"], "history": state["history"], "out": str(out)}
