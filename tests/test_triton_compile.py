"""Ahead-of-time compilation of every Triton kernel variant the launchers can produce, with the real compiler
(no GPU needed): ``triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", cap, 32))``
for sm_80 and sm_90. The interpreter (``TRITON_INTERPRET=1``) never runs codegen, so without this test a
kernel the compiler rejects (e.g. a plain module global read inside ``@jit``) stays green on CPU CI.

* ``test_launchers_stay_inside_the_variant_lists`` runs every launcher path under the interpreter with the
  kernels replaced by a recorder, and checks each launch's (argument types, constexprs, options) is one of
  its module's ``compile_variants()``: a new launcher path cannot escape the compile test.
* ``test_every_variant_compiles`` compiles them all (deduplicated; two worker processes; Triton's on-disk
  cache makes reruns fast) and prints registers / spill bytes per variant (``pytest -s``), read from
  ``ptxas -v`` on the generated PTX (``CompiledKernel.n_regs``/``n_spills`` need a GPU to load the binary).
  Each variant is compiled with the JIT's usual specialisation (16-byte-aligned logits rows; the kernels opt
  every other pointer and every int out of specialisation, see ``triton_kernels._common.Variant``).

Works with Triton 3.2+ (``ASTSource(fn, signature, constexprs)``: string-keyed signature with
"constexpr" entries); Triton <= 3.1 named the argument ``constants`` and is handled too.
"""
from __future__ import annotations

import concurrent.futures as cf
import importlib
import importlib.util
import inspect
import multiprocessing as mp
import os
import re
import subprocess
import tempfile

import pytest
import torch

# triton is imported inside the tests only: importing it at collection, before tests/test_triton_backend.py sets
# TRITON_INTERPRET on CPU-only machines, would turn that file's kernels into compiled ones.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")

MODULES = ("guided_logprobs", "guided_sample", "topk_candidates", "topk_rescore", "rescore_candidates")
CAPS = (80, 90)


def _variants():
    out = {}
    for name in MODULES:
        mod = importlib.import_module(f"pyalign.triton_kernels.{name}")
        for i, v in enumerate(mod.compile_variants()):
            key = (v.kernel.__name__, tuple(sorted(v.signature.items())), tuple(sorted(v.constexprs.items())),
                   tuple(sorted(v.options.items())))
            out.setdefault(key, (name, i, v))
    return list(out.values())


def _ptxas(cap: int):
    """(path, error): the ptxas Triton uses for ``cap`` (shipped in triton/backends/nvidia/bin)."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas
        path = get_ptxas(cap).path
    except Exception as exc:  # noqa: BLE001 - reported as the skip reason
        return None, f"{type(exc).__name__}: {exc}"
    if not path or not os.path.isfile(path):
        return None, f"no ptxas at {path!r}"
    return path, None


def _ast_source(fn, signature, constexprs, attrs=None):
    from triton.compiler import ASTSource
    params = inspect.signature(ASTSource.__init__).parameters
    if "constexprs" in params:                                   # Triton >= 3.2 (3.6 on the GPU machines, 3.9 here)
        return ASTSource(fn, signature, constexprs, attrs)
    return ASTSource(fn, signature, constants=constexprs)        # Triton <= 3.1 (other attrs format: none)


def _sm(cap: int) -> str:
    try:
        from triton.backends.nvidia.compiler import sm_arch_from_capability
        return sm_arch_from_capability(cap)
    except ImportError:
        return f"sm_{cap}{'a' if cap >= 90 else ''}"


def _resources(ptx: str, cap: int, fp_fusion: bool) -> tuple[int | None, int | None]:
    """(registers, spill bytes = spill stores + spill loads) from ``ptxas -v`` on the kernel's PTX."""
    path, _ = _ptxas(cap)
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        cmd = [path, "-v", f"--gpu-name={_sm(cap)}", src, "-o", os.path.join(d, "k.o")]
        if not fp_fusion:
            cmd.insert(1, "--fmad=false")
        log = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    return (int(regs.group(1)) if regs else None,
            int(spills.group(1)) + int(spills.group(2)) if spills else None)


def _worker_init():
    """Compile workers run the real compiler even when this pytest process interprets (TRITON_INTERPRET=1 is
    set by tests/test_triton_backend.py on CPU-only machines and inherited by spawned processes)."""
    os.environ.pop("TRITON_INTERPRET", None)


def _compile_one(job):
    """Worker: compile one (module, variant index, capability); returns a result row or the error text."""
    name, idx, cap = job
    import traceback

    import triton

    from triton.backends.compiler import GPUTarget

    from pyalign.triton_kernels._common import aligned_attrs
    v = importlib.import_module(f"pyalign.triton_kernels.{name}").compile_variants()[idx]
    try:
        src = _ast_source(v.kernel, v.signature, v.constexprs, aligned_attrs(v.kernel, v.signature))
        compiled = triton.compile(src,
                                  target=GPUTarget("cuda", cap, 32), options=dict(v.options))
        regs, spills = _resources(compiled.asm["ptx"], cap, v.options.get("enable_fp_fusion", True))
        return dict(name=v.name, cap=cap, regs=regs, spills=spills, shared=compiled.metadata.shared, error=None)
    except Exception:  # noqa: BLE001 - the test reports every failure at once
        return dict(name=v.name, cap=cap, error=traceback.format_exc(limit=6)[-3000:])


def test_every_variant_compiles():
    for cap in CAPS:
        path, err = _ptxas(cap)
        if path is None:
            pytest.skip(f"ptxas for sm_{cap} not found ({err}): Triton's nvidia backend ships one in "
                        "triton/backends/nvidia/bin; set TRITON_PTXAS_PATH to a CUDA ptxas")
    jobs = [(name, idx, cap) for name, idx, _v in _variants() for cap in CAPS]
    workers = max(1, min(2, os.cpu_count() or 1))
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init) as ex:
        rows = list(ex.map(_compile_one, jobs))
    errors = [r for r in rows if r["error"]]
    print(f"\n{'kernel variant':<118} {'sm':>3} {'regs':>4} {'spill B':>7} {'smem B':>6}")
    for r in rows:
        if not r["error"]:
            print(f"{r['name']:<118} {r['cap']:>3} {r['regs']:>4} {r['spills']:>7} {r['shared']:>6}")
    for r in errors:
        print(f"FAILED sm_{r['cap']} {r['name']}\n{r['error']}")
    assert not errors, f"{len(errors)} of {len(rows)} Triton variants failed to compile: " + \
        "; ".join(f"{r['name']} sm_{r['cap']}" for r in errors)
    missing = [r["name"] for r in rows if r["regs"] is None or r["spills"] is None]
    assert not missing, f"ptxas -v reported no registers/spills for {missing}"
    assert all(r["regs"] <= 255 for r in rows)
    by_cap = {cap: [r for r in rows if r["cap"] == cap] for cap in CAPS}
    for cap, rs in by_cap.items():
        print(f"sm_{cap}: {len(rs)} variants, registers {min(r['regs'] for r in rs)}-{max(r['regs'] for r in rs)}, "
              f"{sum(r['spills'] > 0 for r in rs)} with spills (max {max(r['spills'] for r in rs)} B)")


# ---------------------------------------------------------------- launchers vs variant lists

def _arg_type(x) -> str:
    from pyalign.triton_kernels._common import PTR_TYPE
    if isinstance(x, torch.Tensor):
        return PTR_TYPE.get(x.dtype) or {torch.int64: "*i64", torch.int32: "*i32"}[x.dtype]
    if isinstance(x, bool):
        return "i1"
    if isinstance(x, int):
        return "i32" if -2 ** 31 <= x < 2 ** 31 else "i64"
    if isinstance(x, float):
        return "fp32"
    raise TypeError(type(x))


class _Recorder:
    """Stands in for a JITFunction: records (types, constexprs, options) of each launch, runs nothing."""

    def __init__(self, fn, seen):
        self.fn, self.seen = fn, seen

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            names = self.fn.arg_names
            cx = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            types = {n: _arg_type(a) for n, a in zip(names, args)}
            self.seen.append((self.fn, types, cx, kwargs))
        return launch


def test_launchers_stay_inside_the_variant_lists(monkeypatch):
    from pyalign.triton_kernels import (guided_logprobs, guided_sample, rescore_candidates, topk_candidates,
                                        topk_rescore)
    from pyalign.triton_kernels._common import LOGIT_DTYPES
    seen: list = []
    mods = dict(guided_logprobs=(guided_logprobs, "_guided_logprobs_kernel"),
                guided_sample=(guided_sample, "_guided_sample_kernel"),
                topk_candidates=(topk_candidates, "_topk_candidates_kernel"),
                topk_rescore=(topk_rescore, "_topk_rescore_kernel"),
                rescore_candidates=(rescore_candidates, "_rescore_candidates_kernel"))
    allowed = {}
    for name, (mod, _attr) in mods.items():
        for v in mod.compile_variants():
            types = {k: t for k, t in v.signature.items() if t != "constexpr"}
            allowed.setdefault(v.kernel.__name__, []).append((types, v.constexprs, v.options))
    for mod, attr in mods.values():
        monkeypatch.setattr(mod, attr, _Recorder(getattr(mod, attr), seen))
    g = torch.Generator().manual_seed(0)
    for dt in LOGIT_DTYPES:
        for B, V in ((1, 5), (3, 4099), (64, 70000)):
            zp = torch.randn(B, 2, V, generator=g).to(dt)[:, 1]
            zb = torch.randn(B, V, generator=g).to(dt)
            w, tau, p = torch.ones(B), torch.ones(B), torch.full((B,), 0.9)
            k, rng = torch.full((B,), 5, dtype=torch.int64), torch.zeros(B, 2, dtype=torch.int64)
            for base in (None, zb):
                guided_sample.guided_sample(zp, base, w, tau, k, p, rng)
                guided_logprobs.guided_logprobs(zp, base, w)
            for kk in (1, 16, 17, 128, 129, min(V, 1024)):
                topk_candidates.topk_candidates(zb, kk)
                if dt != torch.float64:
                    topk_rescore.topk_rescore(zb, zp[:, None], zb, kk, torch.ones(B, 1), tau, rng)
            topk_rescore.topk_rescore(zb, zp[:, None].float(), zb, 3, torch.ones(B, 1), tau, rng)  # mixed -> fp32
    for K, M in ((1, 1), (16, 3), (100, 9), (1024, 20)):
        ids, rng = torch.zeros(2, K, dtype=torch.int64), torch.zeros(2, 2, dtype=torch.int64)
        rescore_candidates.rescore_candidates(torch.randn(2, K), torch.randn(2, K), ids, torch.rand(2, M), torch.ones(2),
                                              rng, 50000)
    assert {fn.__name__ for fn, *_ in seen} == set(allowed), "every kernel must be launched by this test"
    for fn, types, cx, opts in seen:
        assert (types, cx, opts) in allowed[fn.__name__], \
            f"{fn.__name__} launched with {types} {cx} {opts}: not in its module's compile_variants()"
