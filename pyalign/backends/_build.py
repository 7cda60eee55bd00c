"""Build / load the pyalign C++ (and CUDA) extension that registers ``torch.ops.pyalign_C.*``.

JIT path (default): ``load()`` compiles ``csrc/`` with ``torch.utils.cpp_extension.load`` (ninja) at first use
into ``$TORCH_EXTENSIONS_DIR/pyalign_C*`` (torch's default cache dir when unset) and loads it; later imports
reuse the cached build. CPU sources are always compiled; CUDA sources only when ``torch.cuda.is_available()``
and nvcc is found. An installed build (``PYALIGN_BUILD_EXT=1 pip install --no-build-isolation -e .``, which
uses ``extension_for_setup``) is preferred when present. Set ``PYALIGN_NO_JIT=1`` to forbid compiling.

Portable flags: -O3 without -march=native; the hot tile loops get an AVX2 clone chosen at load time
(GCC ``target_clones``); -ffp-contract=off keeps the fp32 guided combination bit-identical to PyTorch.
"""
from __future__ import annotations

import glob
import os
import pathlib
import shutil
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
NAME = "pyalign_C"
# -fopenmp: at::parallel_for expands to `#pragma omp parallel` inline, so without it every parallel loop runs
# serially. Only compiled with it, not linked against a second libgomp: the GOMP symbols resolve to the OpenMP
# runtime torch already loaded. -fno-trapping-math lets GCC vectorise the NaN/inf checks (no FP exceptions are
# relied on; rounding is unchanged).
CXX_FLAGS = ["-O3", "-std=c++17", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math",
             "-Wno-unused-function"]
NVCC_FLAGS = ["-O3", "-std=c++17", "--fmad=false", "-gencode=arch=compute_80,code=sm_80",
              "-gencode=arch=compute_90,code=sm_90"]
_lock = threading.Lock()
_loaded: dict[str, object] = {}


class BuildError(RuntimeError):
    """The pyalign C++/CUDA extension could not be compiled or loaded."""


def cpu_sources() -> list[str]:
    return [str(CSRC / "bindings.cpp")] + sorted(str(p) for p in (CSRC / "cpu").glob("*.cpp"))


def cuda_sources() -> list[str]:
    return sorted(str(p) for p in (CSRC / "cuda").glob("*.cu")) + sorted(
        str(p) for p in (CSRC / "cuda").glob("*.cpp"))


def source_digest() -> str:
    """A digest of every file under csrc/ (headers included). torch's JIT cache keys on the .cpp/.cu sources and
    the flags only, so the digest goes into the flags: editing a header rebuilds instead of loading a stale .so."""
    import hashlib
    h = hashlib.sha256()
    for p in sorted(CSRC.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(CSRC)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def nvcc_path() -> str | None:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    cand = os.path.join(home, "bin", "nvcc")
    return cand if os.path.exists(cand) else shutil.which("nvcc")


def want_cuda() -> bool:
    import torch
    if os.environ.get("PYALIGN_NO_CUDA_EXT") == "1":
        return False
    return bool(torch.cuda.is_available() and torch.version.cuda and nvcc_path() and cuda_sources())


def _installed_library() -> str | None:
    pkg = ROOT / "pyalign"
    hits = sorted(glob.glob(str(pkg / "_C*.so")) + glob.glob(str(pkg / "_C*.pyd")))
    return hits[0] if hits else None


def has_cuda_kernels() -> bool:
    """True if the loaded extension registered CUDA kernels."""
    import torch
    load()
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("pyalign_C::guided_sample", "CUDA")
    except Exception:  # noqa: BLE001
        return False


def load(verbose: bool | None = None, with_cuda: bool | None = None) -> str:
    """Compile (first time) and load the extension; returns how it was loaded. Raises BuildError on failure."""
    import torch
    with _lock:
        if "how" in _loaded:
            return _loaded["how"]  # type: ignore[return-value]
        if "error" in _loaded:
            raise _loaded["error"]  # type: ignore[misc]
        try:
            how = _load_locked(torch, verbose, with_cuda)
        except Exception as exc:  # noqa: BLE001
            err = exc if isinstance(exc, BuildError) else BuildError(
                f"building the pyalign C++ extension failed: {type(exc).__name__}: {exc}")
            _loaded["error"] = err
            raise err from exc
        _loaded["how"] = how
        return how


def _load_locked(torch, verbose, with_cuda) -> str:
    if hasattr(torch.ops, NAME) and _registered(torch):
        return "already registered"
    lib = _installed_library()
    if lib is not None and os.environ.get("PYALIGN_FORCE_JIT") != "1":
        torch.ops.load_library(lib)
        return f"installed {lib}"
    if os.environ.get("PYALIGN_NO_JIT") == "1":
        raise BuildError("the pyalign C++ extension is not installed and PYALIGN_NO_JIT=1 forbids compiling it")
    from torch.utils import cpp_extension
    cuda = want_cuda() if with_cuda is None else with_cuda
    sources = cpu_sources() + (cuda_sources() if cuda else [])
    name = NAME + ("_cuda" if cuda else "_cpu")
    if verbose is None:
        verbose = os.environ.get("PYALIGN_BUILD_VERBOSE") == "1"
    t0 = time.time()
    # Say why the first call is slow when it is compiling (a cached build loads in well under 2 s).
    notice = threading.Timer(2.0, lambda: print(f"[pyalign] compiling the C++ kernels ({name}) once; later runs "
                                                "load the cached build", file=sys.stderr, flush=True))
    notice.daemon = True
    notice.start()
    try:
        _jit_load(cpp_extension, name, sources, cuda, verbose)
    finally:
        notice.cancel()
    if not _registered(torch):
        raise BuildError("the pyalign C++ extension loaded but registered no torch.ops.pyalign_C ops")
    return f"jit {name} ({time.time() - t0:.1f} s)"


def _jit_load(cpp_extension, name, sources, cuda, verbose) -> None:
    cpp_extension.load(
        name=name, sources=sources, extra_include_paths=[str(CSRC / "include"), str(CSRC)],
        extra_cflags=CXX_FLAGS + [f"-DPYALIGN_SOURCE_DIGEST={source_digest()}"]
        + (["-DPYALIGN_WITH_CUDA"] if cuda else []),
        extra_cuda_cflags=NVCC_FLAGS if cuda else None, with_cuda=cuda, is_python_module=False,
        verbose=verbose)


def _registered(torch) -> bool:
    try:
        torch.ops.pyalign_C.guided_sample  # noqa: B018
        return True
    except (AttributeError, RuntimeError):
        return False


def extension_for_setup():
    """(Extension, build_ext class) for setup.py with PYALIGN_BUILD_EXT=1: the module ``pyalign._C``."""
    import torch
    from torch.utils import cpp_extension
    cuda = bool(torch.version.cuda) and nvcc_path() is not None and os.environ.get("PYALIGN_NO_CUDA_EXT") != "1"
    rel = lambda p: os.path.relpath(p, ROOT)  # noqa: E731
    sources = [rel(p) for p in cpu_sources() + (cuda_sources() if cuda else [])]
    include_dirs = [str(CSRC / "include"), str(CSRC)]
    if cuda:
        ext = cpp_extension.CUDAExtension(
            "pyalign._C", sources, include_dirs=include_dirs,
            extra_compile_args={"cxx": CXX_FLAGS + ["-DPYALIGN_WITH_CUDA"], "nvcc": NVCC_FLAGS})
    else:
        ext = cpp_extension.CppExtension("pyalign._C", sources, include_dirs=include_dirs,
                                         extra_compile_args={"cxx": CXX_FLAGS})
    return ext, cpp_extension.BuildExtension.with_options(no_python_abi_suffix=True)
