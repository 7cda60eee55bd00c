"""pyalign-tpa: test-time personalized alignment with fused kernels (import name: ``pyalign``).

The distribution name differs from the unrelated PyPI projects ``pyalign`` and ``triton-kernels``; the
top-level ``triton_kernels/`` folder installs as ``pyalign.triton_kernels`` (never as a top-level module,
which would clash with Triton's own) and the top-level ``csrc/`` (C++/CUDA sources) as the package data of
``pyalign._csrc``; MANIFEST.in ships both in the sdist. The extension is compiled from those sources at first use
with ninja into a cache outside site-packages (``pyalign/backends/_build.py``, which finds them in a checkout and
in an installed wheel); set PYALIGN_BUILD_EXT=1 to compile it here instead.
Install after torch with ``pip install --no-build-isolation -e .`` so that pip does not fetch another torch.
"""
import os

from setuptools import find_packages, setup

packages = find_packages(include=["pyalign", "pyalign.*"]) + ["pyalign.triton_kernels", "pyalign._csrc"]
CSRC_FILES = [f"{d}*.{ext}" for d in ("", "**/") for ext in ("cpp", "h", "hpp", "cu", "cuh")]
ext_modules, cmdclass = [], {}
if os.environ.get("PYALIGN_BUILD_EXT") == "1":
    import importlib.util  # the build helper lives in the package; load it by path (pyalign is not importable yet)
    _spec = importlib.util.spec_from_file_location(
        "_pyalign_build", os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyalign", "backends", "_build.py"))
    _build = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_build)  # torch is needed only for this path
    ext, build_ext = _build.extension_for_setup()
    ext_modules, cmdclass = [ext], {"build_ext": build_ext}

setup(
    name="pyalign-tpa",
    version="0.1.0",
    description="Test-time personalized alignment of LLMs (Amulet, Linear Alignment, PAD, ARGS, PANDA) "
                "with fused Triton and C++/CUDA kernels",
    long_description=open(os.path.join(os.path.dirname(__file__), "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=packages,
    package_dir={"pyalign.triton_kernels": "triton_kernels", "pyalign._csrc": "csrc"},
    package_data={"pyalign": ["data/*"], "pyalign._csrc": CSRC_FILES},
    include_package_data=True,
    install_requires=["torch>=2.4", "transformers>=4.46", "safetensors", "numpy", "tqdm"],
    extras_require={
        "gguf": ["gguf", "accelerate"],
        "triton": ["triton"],
        "eval": ["matplotlib", "vaderSentiment"],
        "test": ["pytest", "pytest-benchmark"],
    },
    entry_points={"console_scripts": ["pyalign=pyalign.cli:main"],
                  # vLLM loads the guided-pair logits processor by name (`vllm serve`, LLM(...)): see
                  # pyalign/integrations/vllm.py
                  "vllm.logits_processors": ["pyalign_guided_pairs = pyalign.integrations.vllm:GuidedPairs"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
