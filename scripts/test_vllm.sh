#!/usr/bin/env bash
# Run the vLLM tests (tests/vllm) in .venv-vllm, creating it first if needed (scripts/vllm_env.sh, idempotent).
# In-process engines (VLLM_ENABLE_V1_MULTIPROCESSING=0) except the one multiprocess/AsyncLLM test.
# About 6-9 minutes on a 2-core machine. Extra arguments go to pytest (e.g. -k golden).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/vllm_env.sh
export VLLM_LOGGING_LEVEL="${VLLM_LOGGING_LEVEL:-WARNING}"
exec .venv-vllm/bin/python -m pytest -q -p no:cacheprovider tests/vllm "$@"
