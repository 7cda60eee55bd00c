"""vLLM tests: collected only where vLLM is installed (``.venv-vllm``, see ``scripts/vllm_env.sh``); in the main
``.venv`` the whole folder is skipped at collection. One in-process ``LLM`` per test module (startup is slow);
only ``test_vllm_multiprocess_async.py`` starts vLLM's multiprocess engine."""
from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
# Both paths (the HF reference and the processor inside vLLM) use the same kernel backend: the default one (the
# C++ kernels, compiled once with ninja and cached; the pure-torch reference backend is far too slow here).

try:  # this folder is itself named vllm: a namespace-package import of it must not count as vLLM
    import vllm
    _HAVE_VLLM = hasattr(vllm, "LLM")
except ImportError:
    _HAVE_VLLM = False
if not _HAVE_VLLM:  # skipped at collection (a module-level skip in a conftest breaks `pytest tests/vllm`)
    import sys
    sys.modules.pop("vllm", None)      # forget the namespace package this folder would otherwise stand for
    collect_ignore_glob = ["test_*.py"]

    def pytest_report_header(config):
        return "tests/vllm: not collected, vLLM is not installed here (run `make vllm-env && make test-vllm`)"


GOLDEN = "data/golden_authors_amulet_la_smollm2.jsonl"


@pytest.fixture(scope="session")
def golden(shared_dir):
    return [json.loads(line) for line in open(shared_dir / GOLDEN)]


@pytest.fixture(scope="session")
def hf_model():
    from pyalign.models import load_model
    try:
        return load_model()
    except FileNotFoundError as e:
        pytest.skip(str(e))
