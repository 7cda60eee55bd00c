"""Public tensor-level API: thin, validating wrappers over ``torch.ops.pyalign.*``.

Each function checks its arguments (shapes, dtypes, devices, ranges) with an error that names the
argument, draws per-row RNG keys from a ``torch.Generator`` when sampling, calls the op, and turns a
row the kernel could not sample (token −1) into a clear error. Inference stacks that need no checks
(CUDA-graph capture) call ``torch.ops.pyalign.<op>`` directly with the tensors described in ``_ops.py``.

Cost: Python scalars are checked on the host and become cached [B] tensors (no allocation, no kernel per
call); per-row tensors are checked by shape, dtype and device, and by value only on the CPU (on a GPU a value
check is a host synchronisation: tensors there are taken as validated by the caller, e.g. once per request as
``pyalign.engine`` does). The one remaining synchronisation on a GPU is the bad-row check of the result
(``check_rows=False`` skips it: token −1 then marks such rows).
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Union

import torch

from . import _ops  # noqa: F401  (registers torch.ops.pyalign)
from ._validation import check_logit_pair, check_logits, check_no_nan, check_range, per_row

Scalar = Union[float, int]
PerRow = Union[Scalar, torch.Tensor]
SEED_BOUND = 2 ** 62
ROW_SEED_STRIDE = 0x9E3779B97F4A7C15 % SEED_BOUND   # golden-ratio stride: distinct rows, distinct keys


def make_rng(batch: int, device: torch.device, generator: Optional[torch.Generator] = None,
             seed: Optional[PerRow] = None, offset: PerRow = 0) -> torch.Tensor:
    """Per-row RNG keys [B, 2] int64 = (seed, offset).

    With ``seed`` as a [B] tensor or list, row b's draw is fully determined by (seed[b], offset[b], token id),
    whatever the batch composition or backend: pass a request's seed and its step number as ``offset`` for
    per-request reproducibility. A single int seeds row b with (seed + b·0x9E3779B97F4A7C15) mod 2^62, so the
    rows of one call get independent noise. Without ``seed``, seeds are drawn from ``generator`` (or the
    default generator of ``device``), which advances it: seeded generators reproduce, and the draw is
    CUDA-graph safe."""
    device = torch.device(device)
    if seed is None:
        if generator is not None and generator.device.type != device.type:
            raise ValueError(f"generator is on {generator.device} but the logits are on {device}; "
                             f"create it with torch.Generator(device={device.type!r})")
        seeds = torch.randint(0, SEED_BOUND, (batch,), generator=generator, device=device, dtype=torch.int64)
    elif isinstance(seed, int) or (isinstance(seed, torch.Tensor) and seed.dim() == 0):
        rows = torch.arange(batch, dtype=torch.int64, device=device)
        seeds = (int(seed) + rows * ROW_SEED_STRIDE) % SEED_BOUND
    else:
        seeds = per_row(seed, batch, "seed", torch.int64, device)
    offsets = per_row(offset, batch, "offset", torch.int64, device)
    return torch.stack([seeds, offsets], dim=1)


def _last_dim_contiguous(x: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return x if x is None or x.stride(-1) == 1 else x.contiguous()


def _raise_bad_rows(bad: torch.Tensor, inputs: dict[str, Optional[torch.Tensor]], what: str) -> None:
    for name, t in inputs.items():
        if t is not None:
            check_no_nan(t.reshape(t.shape[0], -1), name)
    row = int(bad.nonzero()[0, 0])
    raise ValueError(f"row {row} has no finite {what}: every token is -inf (masked) in the combined logits, "
                     "so nothing can be sampled; check the masks applied to the inputs")


def guided_logprobs(logits_pref: torch.Tensor, logits_base: Optional[torch.Tensor] = None,
                    weight: PerRow = 1.0, check_rows: bool = True) -> torch.Tensor:
    """log_softmax(z_base + w·(z_pref − z_base)) over the vocabulary: [B, V] fp32.

    ``weight`` is a float or one per row: Amulet's A (``pyalign.amulet_weight``), 1 + r for Linear
    Alignment, 1 for plain preference decoding. A token that is −∞ in either context stays −∞.

    >>> zp, zb = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    >>> guided_logprobs(zp, zb, 2.0).exp()      # z = [4, 0]
    tensor([[0.9820, 0.0180]])
    """
    check_logit_pair(logits_pref, logits_base, "logits_pref", "logits_base")
    B = logits_pref.shape[0]
    w = _row_param(weight, B, "weight", torch.float32, logits_pref.device, hint="a finite guidance weight is required")
    out = torch.ops.pyalign.guided_logprobs(_last_dim_contiguous(logits_pref), _last_dim_contiguous(logits_base), w)
    if check_rows:                 # a bad row is NaN throughout: its first column tells, no [B, V] scan
        bad = torch.isnan(out[:, 0])
        if bool(bad.any()):
            _raise_bad_rows(bad, {"logits_pref": logits_pref, "logits_base": logits_base}, "log-probability")
    return out


@functools.lru_cache(maxsize=256)
def _full(value, batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A cached constant [B] tensor (ops never write their inputs, so sharing is safe)."""
    return torch.full((batch,), value, dtype=dtype, device=device)


def _row_param(value, batch: int, name: str, dtype: torch.dtype, device: torch.device, lo=None, hi=None,
               lo_open: bool = False, hint: str = "") -> torch.Tensor:
    """A per-row parameter as a contiguous [B] tensor: scalars checked on the host and cached; tensors checked by
    metadata, and by value on the CPU only (see the module docstring)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = float(value)
        bad = not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)) or \
            (hi is not None and v > hi)
        if bad:
            bound = [f"{'>' if lo_open else '>='} {lo}"] if lo is not None else []
            bound += [f"<= {hi}"] if hi is not None else []
            raise ValueError(f"{name} must be finite{' and ' + ' and '.join(bound) if bound else ''}, "
                             f"got {value!r}. {hint}".strip())
        return _full(int(value) if dtype == torch.int64 else v, batch, dtype, torch.device(device))
    t = per_row(value, batch, name, dtype, device)
    if t.device.type == "cpu":
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite, got {t.tolist()}")
        check_range(t, name, lo=lo, hi=hi, lo_open=lo_open, hint=hint)
    return t


def guided_sample(logits_pref: torch.Tensor, logits_base: Optional[torch.Tensor] = None, weight: PerRow = 1.0,
                  temperature: PerRow = 1.0, top_k: PerRow = 0, top_p: PerRow = 1.0,
                  generator: Optional[torch.Generator] = None, *, seed: Optional[PerRow] = None,
                  offset: PerRow = 0, check_rows: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row from softmax(z/τ), z = z_base + w·(z_pref − z_base), in one op.

    temperature 0 is greedy (argmax, ties to the smallest id); top_k 0 and top_p 1 disable the filters
    (per-row values allowed). Returns (tokens [B] int64, log_softmax(z)[token] [B] fp32). The draw is
    Gumbel-max with Philox noise keyed by (seed, offset, token id): the same on every backend
    (see ``pyalign/reference/sampling.py`` for the exact order of operations).
    """
    check_logit_pair(logits_pref, logits_base, "logits_pref", "logits_base")
    B, V = logits_pref.shape
    dev = logits_pref.device
    w = _row_param(weight, B, "weight", torch.float32, dev, hint="a finite guidance weight is required")
    tau = _row_param(temperature, B, "temperature", torch.float32, dev, lo=0.0, hint="use 0 for greedy decoding")
    k = _row_param(top_k, B, "top_k", torch.int64, dev, lo=0, hint="use 0 to disable top-k")
    p = _row_param(top_p, B, "top_p", torch.float32, dev, lo=0.0, hi=1.0, lo_open=True,
                   hint="top_p must lie in (0, 1]; use 1.0 to disable")
    if seed is None and generator is None and isinstance(temperature, (int, float)) and temperature == 0:
        rng = _full(0, 2 * B, torch.int64, torch.device(dev)).view(B, 2)     # greedy: the key is never read
    else:
        rng = make_rng(B, dev, generator, seed, offset)
    tokens, logp = torch.ops.pyalign.guided_sample(_last_dim_contiguous(logits_pref),
                                                   _last_dim_contiguous(logits_base), w, tau, k, p, rng)
    if check_rows and bool(tokens.min() < 0):
        _raise_bad_rows(tokens < 0, {"logits_pref": logits_pref, "logits_base": logits_base}, "logit")
    return tokens, logp


def _check_k(k: int, V: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if k < 1 or k > V:
        raise ValueError(f"k must be between 1 and the vocabulary size {V}, got {k}")
    return k


def topk_candidates(logits: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest logits per row, descending, ties to the smaller id: (values [B,k] fp32, ids [B,k] int64)."""
    check_logits(logits, "logits")
    _check_k(k, logits.shape[1])
    check_no_nan(logits, "logits")
    return torch.ops.pyalign.topk_candidates(_last_dim_contiguous(logits), k)


def topk_rescore(base_logits: torch.Tensor, rm_logits: torch.Tensor, ref_logits: torch.Tensor, k: int = 10,
                 weight: Union[PerRow, torch.Tensor] = 1.0, temperature: PerRow = 0.0,
                 generator: Optional[torch.Generator] = None, *, seed: Optional[PerRow] = None,
                 offset: PerRow = 0, return_details: bool = False):
    """PAD's token-level reward-guided choice among the base model's top-k, in one op.

    score_j = base[c_j] + Σ_d w_d·(log_softmax_k(rm_d[c])_j − log_softmax_k(ref[c])_j) over the k candidates
    c = top-k(base); token = argmax score (temperature 0) or a draw from softmax(score/τ).
    ``rm_logits`` is [B, V] or [B, D, V] (D preference dimensions, ``weight`` then a [D] or [B, D] vector).
    Returns tokens [B] (and, with ``return_details``, candidates [B, k] and scores [B, k])."""
    check_logits(base_logits, "base_logits")
    check_logits(ref_logits, "ref_logits")
    B, V = base_logits.shape
    if not isinstance(rm_logits, torch.Tensor) or rm_logits.dim() not in (2, 3):
        raise ValueError("rm_logits must have shape [batch, vocab] or [batch, dims, vocab]")
    rm3 = rm_logits[:, None, :] if rm_logits.dim() == 2 else rm_logits
    for name, t in (("rm_logits", rm3), ("ref_logits", ref_logits)):
        if t.shape[0] != B or t.shape[-1] != V:
            raise ValueError(f"{name} has shape {tuple(t.shape)} but base_logits is [{B}, {V}]: vocabularies and "
                             "batches must match (same tokenizer; re-tokenise or use a reward model of the base family)")
        if t.device != base_logits.device:
            raise ValueError(f"{name} is on {t.device} but base_logits on {base_logits.device}")
        if t.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise TypeError(f"{name} must be float32, bfloat16 or float16, got {t.dtype}")
    D = rm3.shape[1]
    _check_k(k, V)
    dev = base_logits.device
    w = torch.as_tensor(weight, dtype=torch.float32, device=dev) if not isinstance(weight, torch.Tensor) else weight
    w = w.to(device=dev, dtype=torch.float32)
    if w.dim() == 0:
        w = w.reshape(1, 1).expand(B, D)
    elif w.dim() == 1 and w.shape[0] == D:
        w = w.reshape(1, D).expand(B, D)
    elif w.dim() == 1 and w.shape[0] == B and D == 1:
        w = w.reshape(B, 1)
    elif not (w.dim() == 2 and tuple(w.shape) == (B, D)):
        raise ValueError(f"weight must be a scalar, [{D}] (one per preference dimension), or [{B}, {D}]; "
                         f"got {tuple(w.shape)}")
    w = w.contiguous()
    if not bool(torch.isfinite(w).all()):
        raise ValueError("weight must be finite")
    tau = per_row(temperature, B, "temperature", torch.float32, dev)
    check_range(tau, "temperature", lo=0.0, hint="use 0 for greedy decoding")
    rng = make_rng(B, dev, generator, seed, offset)
    tokens, cand, scores = torch.ops.pyalign.topk_rescore(
        _last_dim_contiguous(base_logits), rm3 if rm3.stride(-1) == 1 else rm3.contiguous(),
        _last_dim_contiguous(ref_logits), k, w, tau, rng)
    bad = tokens < 0
    if bool(bad.any()):
        _raise_bad_rows(bad, {"base_logits": base_logits, "rm_logits": rm3, "ref_logits": ref_logits},
                        "candidate (base, reward and reference logits all finite)")
    return (tokens, cand, scores) if return_details else tokens


def rescore_candidates(base_terms: torch.Tensor, rewards: torch.Tensor, candidates: torch.Tensor,
                       lambdas: Union[PerRow, torch.Tensor], vocab_size: int, temperature: PerRow = 0.0,
                       generator: Optional[torch.Generator] = None, *, seed: Optional[PerRow] = None,
                       offset: PerRow = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ARGS/PANDA choice: argmax over (λ_m, candidate j) of base_terms_j + λ_m·rewards_j (or a Gumbel draw).

    base_terms, rewards: [B, k]; candidates: [B, k] token ids; lambdas: a float, [M] or [B, M].
    Returns (tokens [B], candidate position [B], λ index [B])."""
    for name, t in (("base_terms", base_terms), ("rewards", rewards)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            raise ValueError(f"{name} must be a [batch, k] tensor")
    B, k = base_terms.shape
    if tuple(rewards.shape) != (B, k) or tuple(candidates.shape) != (B, k):
        raise ValueError(f"rewards {tuple(rewards.shape)} and candidates {tuple(candidates.shape)} must match "
                         f"base_terms [{B}, {k}]")
    if candidates.dtype != torch.int64:
        raise TypeError(f"candidates must be int64 token ids, got {candidates.dtype}")
    if bool(torch.isnan(rewards).any()) or bool(torch.isinf(rewards).any()):
        raise ValueError("rewards contain NaN or inf: a reward model must return finite scores")
    if bool(((candidates < 0) | (candidates >= vocab_size)).any()):
        raise ValueError(f"candidates must be token ids in [0, {vocab_size})")
    dev = base_terms.device
    lam = torch.as_tensor(lambdas, dtype=torch.float32, device=dev) if not isinstance(lambdas, torch.Tensor) else lambdas
    lam = lam.to(device=dev, dtype=torch.float32)
    if lam.dim() == 0:
        lam = lam.reshape(1, 1).expand(B, 1)
    elif lam.dim() == 1:
        lam = lam.reshape(1, -1).expand(B, -1)
    elif lam.dim() != 2 or lam.shape[0] != B:
        raise ValueError(f"lambdas must be a float, [M] or [{B}, M], got {tuple(lam.shape)}")
    if not bool(torch.isfinite(lam).all()):
        raise ValueError("lambdas must be finite")
    tau = per_row(temperature, B, "temperature", torch.float32, dev)
    check_range(tau, "temperature", lo=0.0, hint="use 0 for greedy decoding")
    rng = make_rng(B, dev, generator, seed, offset)
    out = torch.ops.pyalign.rescore_candidates(base_terms.float().contiguous(), rewards.float().contiguous(),
                                               candidates.contiguous(), lam.contiguous(), tau, rng, int(vocab_size))
    if bool((out[0] < 0).any()):
        raise ValueError("a row has no candidate with a finite base term: nothing can be chosen")
    return out
