"""Build / load the pyalign C++ (and CUDA) extension that registers ``torch.ops.pyalign_C.*``.

Where the sources come from (``source_dir()``, first match wins):
    1. ``$PYALIGN_CSRC`` (a folder laid out like ``csrc/``: bindings.cpp, cpu/, cuda/, include/);
    2. ``pyalign/_csrc/`` inside the installed package (a wheel or sdist install ships ``csrc/`` there);
    3. ``csrc/`` of the repository checkout (editable install).

JIT path (default): ``load()`` compiles them with ``torch.utils.cpp_extension.load`` (ninja) at first use and
loads the library. The build cache is content-addressed, outside site-packages:
    $TORCH_EXTENSIONS_DIR (else torch's default, e.g. ~/.cache/torch_extensions/py311_cpu)
        / pyalign_C_<cpu|cuda>-<key>/   key = sha256(relative path + bytes of every source and header used,
                                                     compiler flags, torch and Python versions)[:16]
            src/                        a copy of those sources (ninja's command lines only see this path)
            pyalign_C_<cpu|cuda>.so     the library, plus ninja's objects
so a checkout and an installed wheel with the same sources share one build, any edit (headers included)
builds a new entry, and entries unused for ``PRUNE_DAYS`` days are deleted after a new build. CPU sources are
always compiled; CUDA sources only when ``torch.cuda.is_available()`` and nvcc is found. An installed build
(``PYALIGN_BUILD_EXT=1 pip install --no-build-isolation -e .``, which uses ``extension_for_setup``) is preferred
when present. ``PYALIGN_NO_JIT=1`` forbids compiling; ``PYALIGN_BUILD_VERBOSE=1`` prints the compiler output.

Portable flags: -O3 without -march=native; the hot tile loops get an AVX2 clone chosen at load time
(GCC ``target_clones``); -ffp-contract=off keeps the fp32 guided combination bit-identical to PyTorch.
"""
from __future__ import annotations

import glob
import hashlib
import os
import pathlib
import shutil
import sys
import threading
import time
import uuid

PKG = pathlib.Path(__file__).resolve().parents[1]        # the pyalign package folder
ROOT = PKG.parent                                        # the repository root in a checkout
CSRC = ROOT / "csrc"                                     # the checkout's sources (setup.py builds from here)
PACKAGED_CSRC = PKG / "_csrc"                            # where a wheel installs csrc/ (setup.py package_dir)
NAME = "pyalign_C"
SOURCE_SUFFIXES = (".cpp", ".h", ".hpp", ".cu", ".cuh")
PRUNE_DAYS = 14
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


def _is_source_tree(path: pathlib.Path) -> bool:
    return (path / "bindings.cpp").is_file() and (path / "cpu").is_dir()


def source_dir() -> pathlib.Path:
    """The folder holding the C++/CUDA sources (see the module docstring for the search order)."""
    override = os.environ.get("PYALIGN_CSRC")
    if override:
        path = pathlib.Path(override).expanduser().resolve()
        if not _is_source_tree(path):
            raise BuildError(f"PYALIGN_CSRC={override} holds no pyalign C++ sources (bindings.cpp and cpu/ are "
                             "missing); point it at the csrc/ folder of a pyalign checkout, or unset it")
        return path
    for path in (PACKAGED_CSRC, CSRC):
        if _is_source_tree(path):
            return path
    raise BuildError(f"the pyalign C++ sources are missing: neither {PACKAGED_CSRC} (installed package) nor {CSRC} "
                     "(repository checkout) holds bindings.cpp; reinstall pyalign-tpa from a wheel or sdist that "
                     "ships them, or set PYALIGN_CSRC to a csrc/ folder")


def cpu_sources(src: pathlib.Path | None = None) -> list[str]:
    src = CSRC if src is None else src
    return [str(src / "bindings.cpp")] + sorted(str(p) for p in (src / "cpu").glob("*.cpp"))


def cuda_sources(src: pathlib.Path | None = None) -> list[str]:
    src = CSRC if src is None else src
    return sorted(str(p) for p in (src / "cuda").glob("*.cu")) + sorted(
        str(p) for p in (src / "cuda").glob("*.cpp"))


def source_files(src: pathlib.Path, cuda: bool) -> list[pathlib.Path]:
    """Every source and header a build reads, relative to ``src`` (cuda/ only for a CUDA build)."""
    files = []
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if not p.is_file() or p.suffix not in SOURCE_SUFFIXES or any(part.startswith(".") for part in rel.parts):
            continue
        if rel.parts[0] == "cuda" and not cuda:
            continue
        files.append(rel)
    return files


def _build_key(src: pathlib.Path, files: list[pathlib.Path], cuda: bool) -> tuple[str, dict[pathlib.Path, bytes]]:
    """(key, {relative path: bytes}): the cache key over the bytes read once (the copy gets the same bytes)."""
    import torch
    contents = {rel: (src / rel).read_bytes() for rel in files}
    h = hashlib.sha256()
    for rel, data in contents.items():
        h.update(rel.as_posix().encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    h.update(repr((CXX_FLAGS, NVCC_FLAGS if cuda else None, cuda, torch.__version__, torch.version.cuda,
                   sys.version_info[:2], getattr(sys, "abiflags", ""))).encode())
    return h.hexdigest()[:16], contents


def source_digest(src: pathlib.Path | None = None, cuda: bool = False) -> str:
    """The cache key of the sources in ``src`` (default: ``source_dir()``) for a CPU (or CUDA) build."""
    src = source_dir() if src is None else src
    return _build_key(src, source_files(src, cuda), cuda)[0]


def cache_root() -> pathlib.Path:
    """$TORCH_EXTENSIONS_DIR, else torch's default extensions folder for this Python and accelerator."""
    env = os.environ.get("TORCH_EXTENSIONS_DIR")
    if env:
        return pathlib.Path(env).expanduser()
    import torch
    from torch.utils.cpp_extension import get_default_build_root
    acc = f"cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else "cpu"
    return pathlib.Path(get_default_build_root()) / (
        f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}_{acc}")


def nvcc_path() -> str | None:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    cand = os.path.join(home, "bin", "nvcc")
    return cand if os.path.exists(cand) else shutil.which("nvcc")


def want_cuda(src: pathlib.Path | None = None) -> bool:
    import torch
    if os.environ.get("PYALIGN_NO_CUDA_EXT") == "1":
        return False
    src = CSRC if src is None else src
    return bool(torch.cuda.is_available() and torch.version.cuda and nvcc_path() and cuda_sources(src))


def _installed_library() -> str | None:
    hits = sorted(glob.glob(str(PKG / "_C*.so")) + glob.glob(str(PKG / "_C*.pyd")))
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


def build_info() -> dict[str, object]:
    """How the loaded extension was obtained: ``how`` and, for a JIT build, ``source_dir`` (where the sources
    were read), ``build_dir`` (the cache entry), ``key`` and ``cached`` (True if no compiler ran)."""
    load()
    return dict(_loaded.get("info", {}), how=_loaded["how"])


def _load_locked(torch, verbose, with_cuda) -> str:
    if hasattr(torch.ops, NAME) and _registered(torch):
        return "already registered"
    lib = _installed_library()
    if lib is not None and os.environ.get("PYALIGN_FORCE_JIT") != "1":
        torch.ops.load_library(lib)
        _loaded["info"] = {"library": lib}
        return f"installed {lib}"
    if os.environ.get("PYALIGN_NO_JIT") == "1":
        raise BuildError("the pyalign C++ extension is not installed and PYALIGN_NO_JIT=1 forbids compiling it")
    src = source_dir()
    from torch.utils import cpp_extension
    cuda = want_cuda(src) if with_cuda is None else with_cuda
    name = NAME + ("_cuda" if cuda else "_cpu")
    key, contents = _build_key(src, source_files(src, cuda), cuda)
    build_dir = cache_root() / f"{name}-{key}"
    copy = _materialise(build_dir, contents)
    library = build_dir / f"{name}.so"
    cached = library.exists()
    if verbose is None:
        verbose = os.environ.get("PYALIGN_BUILD_VERBOSE") == "1"
    t0 = time.time()
    if not cached:  # say why the first call is slow (a cached build loads in well under 2 s)
        print(f"[pyalign] compiling the C++ kernels ({name}, sources {src}) once into {build_dir}; later runs load "
              "the cached build", file=sys.stderr, flush=True)
    try:
        sources = cpu_sources(copy) + (cuda_sources(copy) if cuda else [])
        _jit_load(cpp_extension, name, sources, copy, build_dir, cuda, verbose)
    except Exception as exc:  # noqa: BLE001
        raise BuildError(f"building the pyalign C++ extension from {src} (copied to {copy}) failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    if not _registered(torch):
        raise BuildError("the pyalign C++ extension loaded but registered no torch.ops.pyalign_C ops")
    (build_dir / ".last_used").touch()
    if not cached:
        _prune(build_dir)
    _loaded["info"] = {"source_dir": str(src), "build_dir": str(build_dir), "key": key, "cached": cached}
    return f"jit {name}-{key} ({'cached' if cached else 'built'}, {time.time() - t0:.1f} s)"


def _materialise(build_dir: pathlib.Path, contents: dict[pathlib.Path, bytes]) -> pathlib.Path:
    """``build_dir/src`` holding ``contents`` (written once, atomically: concurrent loaders agree)."""
    copy = build_dir / "src"
    if (copy / ".complete").exists():
        return copy
    build_dir.mkdir(parents=True, exist_ok=True)
    tmp = build_dir / f".src-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    for rel, data in contents.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
    (tmp / ".complete").touch()
    try:
        os.rename(tmp, copy)
    except OSError:  # another process won the race (same key: same bytes); use its copy
        shutil.rmtree(tmp, ignore_errors=True)
        if not (copy / ".complete").exists():
            raise
    return copy


def _prune(keep: pathlib.Path) -> None:
    """Delete sibling cache entries not used for PRUNE_DAYS days (old source versions)."""
    horizon = time.time() - PRUNE_DAYS * 86400
    for entry in keep.parent.glob(f"{NAME}_*-*"):
        if entry == keep or not entry.is_dir():
            continue
        marker = entry / ".last_used"
        try:
            used = (marker if marker.exists() else entry).stat().st_mtime
        except OSError:
            continue
        if used < horizon:
            shutil.rmtree(entry, ignore_errors=True)


def _jit_load(cpp_extension, name, sources, src, build_dir, cuda, verbose) -> None:
    cpp_extension.load(
        name=name, sources=sources, extra_include_paths=[str(src / "include"), str(src)],
        extra_cflags=CXX_FLAGS + (["-DPYALIGN_WITH_CUDA"] if cuda else []),
        extra_cuda_cflags=NVCC_FLAGS if cuda else None, with_cuda=cuda, is_python_module=False,
        build_directory=str(build_dir), verbose=verbose)


def _registered(torch) -> bool:
    try:
        torch.ops.pyalign_C.guided_sample  # noqa: B018
        return True
    except (AttributeError, RuntimeError):
        return False


def extension_for_setup():
    """(Extension, build_ext class) for setup.py with PYALIGN_BUILD_EXT=1: the module ``pyalign._C``, built from
    the checkout's csrc/ (paths relative to the repository root, as setuptools requires)."""
    import torch
    from torch.utils import cpp_extension
    cuda = bool(torch.version.cuda) and nvcc_path() is not None and os.environ.get("PYALIGN_NO_CUDA_EXT") != "1"
    rel = lambda p: os.path.relpath(p, ROOT)  # noqa: E731
    sources = [rel(p) for p in cpu_sources(CSRC) + (cuda_sources(CSRC) if cuda else [])]
    include_dirs = [str(CSRC / "include"), str(CSRC)]
    if cuda:
        ext = cpp_extension.CUDAExtension(
            "pyalign._C", sources, include_dirs=include_dirs,
            extra_compile_args={"cxx": CXX_FLAGS + ["-DPYALIGN_WITH_CUDA"], "nvcc": NVCC_FLAGS})
    else:
        ext = cpp_extension.CppExtension("pyalign._C", sources, include_dirs=include_dirs,
                                         extra_compile_args={"cxx": CXX_FLAGS})
    return ext, cpp_extension.BuildExtension.with_options(no_python_abi_suffix=True)
