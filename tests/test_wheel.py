"""A non-editable install works: the sdist and the wheel ship csrc/ and triton_kernels/, and the installed
package JIT-builds the C++ backend from its own copy of the sources.

Steps (no download: ``--no-index``, ``--no-build-isolation``, the installed torch is reused):
  1. an sdist of a copy of the tree (setuptools' PEP 517 build_sdist);
  2. ``pip wheel --no-build-isolation --no-deps`` of that sdist;
  3. ``pip install --no-deps --target site/``;
  4. a fresh interpreter in a folder outside the repository with PYTHONPATH=site/ (the wheel's ``pyalign``
     shadows the editable one; checked via ``__file__``), which must pick the cpp backend, build it from
     ``site/pyalign/_csrc`` into the cache outside site-packages, and match the torch reference.
The JIT cache is content-addressed (``_build.py``), so unchanged sources load the build the checkout already
made: the whole file takes ~20-50 s when cached (plus one compile, ~2 min on 2 cores, otherwise).
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TREE = ["setup.py", "MANIFEST.in", "README.md", "requirements.txt", "Makefile", "pytest.ini",
        "pyalign", "csrc", "triton_kernels", "tests"]
SOURCE_SUFFIXES = (".cpp", ".h", ".hpp", ".cu", ".cuh")


def _run(cmd, cwd, env=None, timeout=900):
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return res


def _csrc_files() -> list[str]:
    return sorted(p.relative_to(ROOT / "csrc").as_posix() for p in (ROOT / "csrc").rglob("*")
                  if p.is_file() and p.suffix in SOURCE_SUFFIXES)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(sdist, wheel, site): the sdist and wheel of the current tree and the wheel installed into site/."""
    tmp = tmp_path_factory.mktemp("wheel")
    src, dist, site = tmp / "src", tmp / "dist", tmp / "site"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.o", "*.egg-info", "build", "dist")
    for name in TREE:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        elif path.exists():
            shutil.copy2(path, src / name)
    py = sys.executable
    # the PEP 517 sdist hook of setuptools (what `python -m build --sdist --no-isolation` calls)
    _run([py, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"], cwd=src)
    sdist = next(dist.glob("*.tar.gz"))
    _run([py, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "--no-index", "-w", str(dist),
          str(sdist)], cwd=tmp)
    wheel = next(dist.glob("*.whl"))
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)], cwd=tmp)
    return sdist, wheel, site


def test_sdist_and_wheel_ship_the_kernel_sources(built):
    sdist, wheel, site = built
    with tarfile.open(sdist) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    with zipfile.ZipFile(wheel) as whl:
        in_wheel = set(whl.namelist())
    files = _csrc_files()
    assert "bindings.cpp" in files and "include/pyalign/op_args.h" in files
    assert {f"csrc/{f}" for f in files} <= in_sdist, {f"csrc/{f}" for f in files} - in_sdist
    assert {f"pyalign/_csrc/{f}" for f in files} <= in_wheel, {f"pyalign/_csrc/{f}" for f in files} - in_wheel
    kernels = sorted(p.name for p in (ROOT / "triton_kernels").glob("*.py"))
    assert {f"triton_kernels/{k}" for k in kernels} <= in_sdist
    assert {f"pyalign/triton_kernels/{k}" for k in kernels} <= in_wheel
    for f in files:  # installed byte for byte
        assert (site / "pyalign" / "_csrc" / f).read_bytes() == (ROOT / "csrc" / f).read_bytes(), f


SCRIPT = r"""
import json, pathlib, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import torch
    import pyalign
    import pyalign.triton_kernels
    from pyalign import backends, reference
    from pyalign.backends import _build
    default = backends.default_name("cpu")
    g = torch.Generator().manual_seed(0)
    zp, zb = torch.randn(4, 5000, generator=g), torch.randn(4, 5000, generator=g)
    B = zp.shape[0]
    w, tau = torch.full((B,), 2.0), torch.full((B,), 0.7)
    k, p = torch.full((B,), 40), torch.full((B,), 0.9)
    rng = torch.stack([torch.randint(0, 2 ** 62, (B,), generator=g), torch.zeros(B, dtype=torch.long)], 1)
    tok, lp = torch.ops.pyalign.guided_sample(zp, zb, w, tau, k, p, rng)     # the public op: default backend
    ref_tok, ref_lp = reference.guided_sample(zp, zb, w, tau, k, p, rng)
    vals, idx = torch.ops.pyalign.topk_candidates(zp, 16)
    ref_vals, ref_idx = reference.topk_candidates(zp, 16)
    info = _build.build_info()
src = pathlib.Path(info["source_dir"])
copy = pathlib.Path(info["build_dir"]) / "src"
print(json.dumps({
    "pyalign": pyalign.__file__, "triton_kernels": pyalign.triton_kernels.__file__, "default": default,
    "info": info, "digest": _build.source_digest(src),
    "same_bytes": all((copy / f).read_bytes() == (src / f).read_bytes() for f in _build.source_files(src, False)),
    "n_sources": len(_build.source_files(src, False)),
    "tokens_equal": bool(torch.equal(tok, ref_tok)),
    "logp_err": float((lp - ref_lp).abs().max()),
    "topk_equal": bool(torch.equal(idx, ref_idx) and torch.equal(vals, ref_vals)),
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught
                 if issubclass(w.category, backends.BackendFallbackWarning)],
}))
"""


def test_installed_wheel_builds_and_uses_the_cpp_backend(built, tmp_path):
    _, _, site = built
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYALIGN_BACKEND", "PYALIGN_CSRC", "PYALIGN_FORCE_JIT", "PYALIGN_NO_JIT", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    res = _run([sys.executable, "-c", SCRIPT], cwd=run_dir, env=env)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    site_pkg = site.resolve() / "pyalign"
    assert pathlib.Path(out["pyalign"]).resolve().parent == site_pkg, out["pyalign"]     # not the checkout
    assert pathlib.Path(out["triton_kernels"]).resolve().parent == site_pkg / "triton_kernels"
    assert out["default"] == "cpp", out
    assert out["warnings"] == []
    info = out["info"]
    assert pathlib.Path(info["source_dir"]).resolve() == site_pkg / "_csrc", info         # the installed sources
    build_dir = pathlib.Path(info["build_dir"]).resolve()
    from pyalign.backends import _build
    assert build_dir.parent == _build.cache_root().resolve(), build_dir                 # the shared JIT cache,
    assert site.resolve() not in build_dir.parents                                     # outside site-packages
    assert info["key"] == out["digest"] and build_dir.name.endswith(out["digest"])
    assert out["same_bytes"] and out["n_sources"] >= 10                                   # built from copies of them
    assert out["tokens_equal"] and out["topk_equal"], out
    assert out["logp_err"] < 1e-4, out


def test_cache_key_follows_the_source_bytes_not_their_location(tmp_path):
    """The JIT cache entry is keyed by content: a copy elsewhere (an installed wheel) shares the checkout's
    build; editing any header builds a new entry; cuda/ files only key the CUDA build."""
    from pyalign.backends import _build
    copy = tmp_path / "csrc"
    shutil.copytree(ROOT / "csrc", copy)
    assert _build.source_digest(copy) == _build.source_digest(ROOT / "csrc")
    assert _build.source_digest(copy, cuda=True) != _build.source_digest(copy)
    cuda_key = _build.source_digest(copy, cuda=True)
    (copy / "cuda" / "launchers.h").write_text((copy / "cuda" / "launchers.h").read_text() + "\n// edit\n")
    assert _build.source_digest(copy) == _build.source_digest(ROOT / "csrc")     # CPU build unaffected
    assert _build.source_digest(copy, cuda=True) != cuda_key
    header = copy / "include" / "pyalign" / "op_args.h"
    header.write_text(header.read_text() + "\n// edit\n")
    assert _build.source_digest(copy) != _build.source_digest(ROOT / "csrc")
    assert "include/pyalign/op_args.h" in {p.as_posix() for p in _build.source_files(copy, cuda=False)}


def test_source_dir_search_order(tmp_path, monkeypatch):
    from pyalign.backends import _build
    monkeypatch.delenv("PYALIGN_CSRC", raising=False)
    assert _build.source_dir() == (ROOT / "csrc").resolve()                      # a checkout: csrc/
    monkeypatch.setenv("PYALIGN_CSRC", str(tmp_path))
    with pytest.raises(_build.BuildError, match=r"holds no pyalign C\+\+ sources"):
        _build.source_dir()
    shutil.copytree(ROOT / "csrc", tmp_path / "csrc")
    monkeypatch.setenv("PYALIGN_CSRC", str(tmp_path / "csrc"))
    assert _build.source_dir() == (tmp_path / "csrc").resolve()
    monkeypatch.delenv("PYALIGN_CSRC")
    monkeypatch.setattr(_build, "PACKAGED_CSRC", tmp_path / "csrc")             # an installed wheel's _csrc wins
    assert _build.source_dir() == tmp_path / "csrc"
    monkeypatch.setattr(_build, "PACKAGED_CSRC", tmp_path / "missing")
    monkeypatch.setattr(_build, "CSRC", tmp_path / "missing_too")
    with pytest.raises(_build.BuildError, match=r"the pyalign C\+\+ sources are missing"):
        _build.source_dir()
