"""Device helpers shared by the pyalign Triton kernels (loads, the guidance combination, float keys), and
the host helpers every launcher uses (device guard, dtype names, AOT variant records).

Module-level constants used inside ``@triton.jit`` functions must be ``tl.constexpr(...)`` *instances*:
the real compiler rejects a plain global (``X: tl.constexpr = 5`` is only an annotation on an int), while
the interpreter accepts both, so only the AOT compile test (``tests/test_triton_compile.py``) catches it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import triton
import triton.language as tl

MIN_KEY = tl.constexpr(-(2 ** 40))      # below every float_key
MAX_KEY = tl.constexpr(2 ** 40)         # above every float_key
BIG_IDX = tl.constexpr(2 ** 31 - 1)     # "no index" in argmin-of-index reductions

# Triton pointer type names of the logits dtypes the launchers accept (AOT signatures, variant lists).
PTR_TYPE = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float64: "*fp64"}
LOGIT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


@dataclass(frozen=True)
class Variant:
    """One compiled configuration of a kernel: what a launcher can produce, for the AOT compile test.

    signature: {arg name: Triton type ("*fp32", "i32", "i64", "fp32", "constexpr")};
    constexprs: {name: value} for every "constexpr" argument; options: launch options (num_warps, ...).

    Alignment: the kernels list every small pointer (per-row parameters, outputs, workspace) in
    ``do_not_specialize_on_alignment`` and every int in ``do_not_specialize``, so the JIT builds one binary
    per variant whatever the batch size or offsets; only the logits rows (and fresh full-size outputs) keep
    the 16-byte alignment specialisation, which ``aligned_attrs`` reproduces for the AOT compile."""
    kernel: object
    signature: dict
    constexprs: dict
    options: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        cx = ",".join(f"{k}={v}" for k, v in self.constexprs.items())
        ptrs = ",".join(sorted({v for v in self.signature.values() if v.startswith("*")}))
        return f"{self.kernel.__name__}[{ptrs}|{cx}|w{self.options.get('num_warps', 4)}]"


def make_signature(kernel, types: dict, constexprs: dict) -> dict:
    """Full AOT signature of ``kernel``: ``types`` for the runtime arguments, "constexpr" for the others.
    Fails if an argument is missing or named twice (a launcher/variant list drifting from the kernel)."""
    names = list(kernel.arg_names)
    extra = (set(types) | set(constexprs)) - set(names)
    both = set(types) & set(constexprs)
    missing = set(names) - set(types) - set(constexprs)
    if extra or both or missing:
        raise ValueError(f"{kernel.__name__}: signature mismatch (unknown {sorted(extra)}, twice {sorted(both)}, "
                         f"missing {sorted(missing)})")
    return {n: ("constexpr" if n in constexprs else types[n]) for n in names}


def aligned_attrs(kernel, signature: dict) -> dict:
    """AOT ``attrs`` of the JIT's usual specialisation: 16-byte-divisible pointers, except those the kernel
    lists in ``do_not_specialize_on_alignment`` (format of Triton >= 3.2: {(index,): [["tt.divisibility", 16]]})."""
    skip = set(getattr(kernel, "do_not_specialize_on_alignment", None) or ())
    names = list(kernel.arg_names)
    return {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names)
            if signature[n].startswith("*") and n not in skip and i not in skip}


def device_guard(t: torch.Tensor):
    """Make ``t``'s device current for a launch: Triton launches on the *current* device and its current
    stream, so a tensor on cuda:1 while cuda:0 is current would otherwise run on the wrong GPU."""
    if t.device.type == "cuda":
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def row_view(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself if its last dimension is contiguous, else a contiguous copy (kernels take a row stride)."""
    return x if x.stride(-1) == 1 else x.contiguous()


@triton.jit
def load_guided(zp_ptr, zb_ptr, offs, mask, w, HAS_BASE: tl.constexpr, F64: tl.constexpr):
    """z = zb + w*(zp - zb) (-inf where either is -inf; -inf outside ``mask``) and a per-lane flag for
    NaN / +inf in the inputs. fp32 arithmetic, or fp64 when F64 (fp64 logits: the result is fp64 and the
    caller rounds it once, as ``pyalign.reference.guidance`` does)."""
    if F64:
        zp = tl.load(zp_ptr + offs, mask=mask, other=float("-inf")).to(tl.float64)
    else:
        zp = tl.load(zp_ptr + offs, mask=mask, other=float("-inf")).to(tl.float32)
    bad = (zp != zp) | (zp == float("inf"))
    if HAS_BASE:
        if F64:
            zb = tl.load(zb_ptr + offs, mask=mask, other=float("-inf")).to(tl.float64)
            wv = w.to(tl.float64)
        else:
            zb = tl.load(zb_ptr + offs, mask=mask, other=float("-inf")).to(tl.float32)
            wv = w
        bad = bad | (zb != zb) | (zb == float("inf"))
        z = zb + wv * (zp - zb)
        z = tl.where((zp == float("-inf")) | (zb == float("-inf")), float("-inf"), z)
    else:
        z = zp
    z = tl.where(mask, z, float("-inf"))
    return z, bad & mask


@triton.jit
def load_guided_f32(zp_ptr, zb_ptr, offs, mask, w, HAS_BASE: tl.constexpr, F64: tl.constexpr):
    """``load_guided`` rounded to fp32 (the sampling ops work on fp32 z for every input dtype)."""
    z, bad = load_guided(zp_ptr, zb_ptr, offs, mask, w, HAS_BASE, F64)
    return z.to(tl.float32), bad


@triton.jit
def float_key(x):
    """Order-preserving int64 image of an fp32 value (-0.0 and +0.0 map to the same key)."""
    x = tl.where(x == 0.0, 0.0, x)
    b = x.to(tl.int32, bitcast=True)
    return tl.where(b >= 0, b, b ^ 0x7FFFFFFF).to(tl.int64)


@triton.jit
def online_lse(m, s, z):
    """Fold a block z into the running (max m, sum s of exp(z - m)); -inf-safe."""
    m_new = tl.maximum(m, tl.max(z, axis=0))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(z - m_safe), axis=0)
    return m_new, s
