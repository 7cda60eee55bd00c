"""The CUDA backend: thin adapters over ``torch.ops.pyalign_C.*`` CUDA kernels (csrc/cuda, built by
``_build.py`` when a GPU and nvcc are present). Importing fails with a clear error without CUDA, or if the
extension was built without its CUDA kernels; the registry then falls back to triton / torch.
fp64 logits in guided_sample / guided_logprobs (computed in fp64 by the reference) go to the torch backend."""
from __future__ import annotations

import torch

from . import _build
from . import torch_backend as _torch

if not torch.cuda.is_available():
    raise _build.BuildError("the cuda backend needs a CUDA device (torch.cuda.is_available() is False)")
if _build.nvcc_path() is None and _build._installed_library() is None:
    raise _build.BuildError("the cuda backend needs nvcc (set CUDA_HOME) or an installed build "
                            "(PYALIGN_BUILD_EXT=1 pip install --no-build-isolation -e .)")
BUILD_INFO = _build.load()
if not _build.has_cuda_kernels():
    raise _build.BuildError(f"the pyalign extension ({BUILD_INFO}) has no CUDA kernels; rebuild it with nvcc "
                            "available (set PYALIGN_FORCE_JIT=1 and unset PYALIGN_NO_CUDA_EXT)")
MAX_KERNEL_TOPK = 2048  # csrc/cuda/launchers.h kMaxKernelTopK

from ._c_ops import guided_logprobs, guided_sample, rescore_candidates, topk_candidates  # noqa: E402,F401
from ._c_ops import topk_rescore as _c_topk_rescore  # noqa: E402


def topk_rescore(base_logits, rm_logits, ref_logits, k, weight, temperature, rng):
    if k > MAX_KERNEL_TOPK:
        return _torch.topk_rescore(base_logits, rm_logits, ref_logits, k, weight, temperature, rng)
    return _c_topk_rescore(base_logits, rm_logits, ref_logits, k, weight, temperature, rng)
