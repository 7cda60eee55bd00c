#!/usr/bin/env bash
# One command for a machine with a CUDA GPU (`make gpu-check`): build the extension, run every CUDA and
# compiled-Triton test, then the GPU benchmarks, inside a wall-clock budget (default 470 s, under 8 minutes).
#
#   scripts/gpu_check.sh                    # system python3 (no .venv needed), budget 470 s
#   GPU_CHECK_BUDGET=900 scripts/gpu_check.sh
#   GPU_CHECK_OUT=/some/dir scripts/gpu_check.sh   # also copy the results and the log there
#
# Stages (each time-boxed with `timeout`; CPU-only stages run beside the build):
#   0. prerequisites: python3 with torch (CUDA build, a visible GPU) and triton; prints what is missing
#   1. install (pip install --no-build-isolation --no-deps -e .: no network) and JIT-build the C++/CUDA
#      extension (ninja, MAX_JOBS = cores)                       || in parallel: nvcc build checks of csrc/cuda
#      and the AOT Triton compile test (tests/test_cuda_build.py -m "not gpu", tests/test_triton_compile.py)
#   2. GPU tests, each file in its own process (no TRITON_INTERPRET: Triton runs compiled):
#      tests/test_gpu_cuda.py, tests/test_cuda_build.py -m gpu, tests/test_triton_backend.py
#   3. benchmarks: bench/bench_gpu.py with the time left -> bench/results/gpu_<device>.{md,json,png}
# Log: bench/results/gpu_check.log. Exit status: 0 all passed; 1 a build or test failed; 2 prerequisites
# missing; 3 tests passed but the benchmark failed.
set -u
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_BUDGET:-470}"
RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"
LOG="$RESULTS/gpu_check.log"
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
T0=$(date +%s)
unset TRITON_INTERPRET
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
CORES="$(nproc 2>/dev/null || echo 4)"
export MAX_JOBS="${MAX_JOBS:-$CORES}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$HOME/.cache/torch_extensions}"
STATUS=0
declare -a SUMMARY=()

left() { echo $((BUDGET - ($(date +%s) - T0))); }
say() { echo "[gpu_check +$(($(date +%s) - T0))s] $*"; }
cap() { local want=$1 l; l=$(($(left) - ${2:-0})); ((l < want)) && want=$l; ((want < 5)) && want=5; echo "$want"; }
record() { SUMMARY+=("$1"); say "$1"; }

# pytest stage: name, time cap (s), then pytest arguments. rc 5 (nothing collected) is not a failure.
run_pytest() {
  local name=$1 t=$2; shift 2
  say "stage $name: pytest $* (timeout ${t}s)"
  timeout --signal=INT --kill-after=10 "$t" "$PY" -m pytest -q -p no:cacheprovider "$@"
  local rc=$?
  case $rc in
    0) record "PASS  $name" ;;
    5) record "EMPTY $name (no tests collected)" ;;
    124|137) record "FAIL  $name (timed out after ${t}s)"; STATUS=1 ;;
    *) record "FAIL  $name (pytest exit $rc)"; STATUS=1 ;;
  esac
  return 0
}

# ---------------------------------------------------------------------------------------- 0. prerequisites
say "repo $ROOT, python $(command -v "$PY"), budget ${BUDGET}s, MAX_JOBS=$MAX_JOBS"
if ! "$PY" -c "import torch, triton" 2>/dev/null; then
  "$PY" - <<'EOF'
import importlib.util as u
missing = [m for m in ("torch", "triton") if u.find_spec(m) is None]
print("[gpu_check] missing Python packages:", ", ".join(missing) or "(none; import failed, see below)")
EOF
  "$PY" -c "import torch, triton"
  echo "[gpu_check] need python3 with torch (a CUDA build) and triton; set PYTHON=/path/to/python3"
  exit 2
fi
"$PY" - <<'EOF' || exit 2
import importlib.util as u, os, shutil, sys
import torch, triton
print(f"[gpu_check] python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"triton {triton.__version__}")
if not torch.cuda.is_available():
    print("[gpu_check] torch.cuda.is_available() is False: no GPU visible to this torch"
          f" (CUDA build: {torch.version.cuda is not None})")
    sys.exit(1)
print(f"[gpu_check] GPU: {torch.cuda.get_device_name()} (sm_{''.join(map(str, torch.cuda.get_device_capability()))}),"
      f" {torch.cuda.device_count()} device(s)")
home = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
nvcc = os.path.join(home, "bin", "nvcc") if os.path.exists(os.path.join(home, "bin", "nvcc")) else shutil.which("nvcc")
print(f"[gpu_check] nvcc: {nvcc or 'NOT FOUND (the CUDA C++ backend cannot build; Triton tests still run)'}")
need = {"pytest": "tests", "pytest_benchmark": "pytest.ini's --benchmark-disable", "ninja": "the JIT build",
        "transformers": "import pyalign", "numpy": "pyalign", "matplotlib": "the benchmark plot (optional)",
        "xdist": "parallel nvcc checks (optional)"}
missing = [f"{m} ({why})" for m, why in need.items() if u.find_spec(m) is None]
print("[gpu_check] missing optional/needed packages:", "; ".join(missing) if missing else "none")
if u.find_spec("pytest") is None or u.find_spec("pytest_benchmark") is None:
    sys.exit(1)
EOF
XDIST=()
"$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 4)

# ------------------------------------------------------------------ 1. install + build || CPU-only checks
say "stage install: pip install --no-build-isolation --no-deps -e ."
if ! timeout 120 "$PY" -m pip install --quiet --no-build-isolation --no-deps --no-index -e . 2>&1; then
  # e.g. an externally managed system Python: run from the tree instead, through an overlay package that maps
  # triton_kernels/ to pyalign.triton_kernels as setup.py does (symlinks; _build.py resolves the real paths)
  OVERLAY="${TMPDIR:-/tmp}/pyalign_gpu_check_overlay"
  rm -rf "$OVERLAY" && mkdir -p "$OVERLAY/pyalign"
  for f in "$ROOT"/pyalign/*; do ln -s "$f" "$OVERLAY/pyalign/$(basename "$f")"; done
  ln -s "$ROOT/triton_kernels" "$OVERLAY/pyalign/triton_kernels"
  export PYTHONPATH="$OVERLAY${PYTHONPATH:+:$PYTHONPATH}"
  say "pip install -e . failed: using the source tree through $OVERLAY (PYTHONPATH)"
fi
"$PY" -c "import pyalign, pyalign.triton_kernels; print('[gpu_check] pyalign from', pyalign.__file__)" \
  || { record "FAIL  import pyalign (see above)"; STATUS=1; }

CPU_LOG="$RESULTS/gpu_check_cpu_stage.log"
(
  run_pytest "nvcc build checks (tests/test_cuda_build.py -m 'not gpu')" "$(cap 200 120)" \
    tests/test_cuda_build.py -m "not gpu" "${XDIST[@]}"
  if [[ -f tests/test_triton_compile.py ]]; then
    run_pytest "Triton AOT compile (tests/test_triton_compile.py)" "$(cap 200 120)" tests/test_triton_compile.py -s
  else
    record "SKIP  tests/test_triton_compile.py (not in this tree)"
  fi
  printf '%s\n' "${SUMMARY[@]}" >"$CPU_LOG.summary"
  exit $STATUS
) >"$CPU_LOG" 2>&1 &
CPU_PID=$!

say "stage build: JIT-compiling the C++/CUDA extension (timeout $(cap 300 150)s)"
timeout --kill-after=10 "$(cap 300 150)" "$PY" - <<'EOF'
import time
t = time.time()
from pyalign.backends import _build
print("[gpu_check] building", len(_build.cuda_sources()), "CUDA sources; want_cuda =", _build.want_cuda())
info = _build.load()
print(f"[gpu_check] extension: {info} ({time.time() - t:.0f}s); CUDA kernels: {_build.has_cuda_kernels()}")
import pyalign.backends as b
for name in ("cpp", "cuda", "triton"):
    try:
        b._load(name)
        print(f"[gpu_check] backend {name}: ok")
    except Exception as exc:
        print(f"[gpu_check] backend {name}: UNAVAILABLE: {exc}")
raise SystemExit(0 if _build.has_cuda_kernels() else 1)
EOF
BUILD_RC=$?
if [[ $BUILD_RC -eq 0 ]]; then record "PASS  build (CUDA kernels loaded)"; else record "FAIL  build (exit $BUILD_RC)"; STATUS=1; fi

# ------------------------------------------------------------------------------------------ 2. GPU tests
run_pytest "CUDA C++ GPU tests (tests/test_gpu_cuda.py)" "$(cap 200 150)" tests/test_gpu_cuda.py
run_pytest "CUDA GPU tests (tests/test_cuda_build.py -m gpu)" "$(cap 60 130)" tests/test_cuda_build.py -m gpu
run_pytest "Triton compiled (tests/test_triton_backend.py)" "$(cap 120 110)" tests/test_triton_backend.py

say "waiting for the CPU-only checks"
wait "$CPU_PID"
CPU_RC=$?
cat "$CPU_LOG"
[[ -f "$CPU_LOG.summary" ]] && while IFS= read -r line; do SUMMARY+=("$line"); done <"$CPU_LOG.summary"
rm -f "$CPU_LOG.summary"
[[ $CPU_RC -ne 0 ]] && STATUS=1

# ------------------------------------------------------------------------------------------ 3. benchmarks
BENCH_T=$(( $(left) - 10 ))
if ((BENCH_T < 30)); then
  record "SKIP  benchmarks (only ${BENCH_T}s left)"
else
  say "stage bench: bench/bench_gpu.py --budget-s $((BENCH_T - 60)) (timeout ${BENCH_T}s)"
  timeout --signal=INT --kill-after=10 "$BENCH_T" "$PY" bench/bench_gpu.py --budget-s "$((BENCH_T - 60 > 20 ? BENCH_T - 60 : 20))" \
    --iters 30 --new-tokens 32 --e2e-reserve-s 40
  rc=$?
  if [[ $rc -eq 0 ]]; then record "PASS  benchmarks ($(ls "$RESULTS"/gpu_*.md 2>/dev/null | grep -v gpu_check | tr '\n' ' '))"
  else record "FAIL  benchmarks (exit $rc)"; ((STATUS == 0)) && STATUS=3; fi
fi

say "summary (${BUDGET}s budget, $(( $(date +%s) - T0 ))s used):"
printf '  %s\n' "${SUMMARY[@]}"
if [[ -n "${GPU_CHECK_OUT:-}" ]]; then
  mkdir -p "$GPU_CHECK_OUT" && cp -f "$RESULTS"/gpu_*.* "$GPU_CHECK_OUT"/ 2>/dev/null
  say "copied results to $GPU_CHECK_OUT"
fi
say "exit $STATUS"
exit $STATUS
