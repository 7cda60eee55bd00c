"""The C++ CPU backend: thin adapters over ``torch.ops.pyalign_C.*`` (csrc/cpu, built by ``_build.py``).

Importing this module compiles the extension on first use from the checkout's csrc/ or the installed
package's ``pyalign/_csrc`` (ninja, ~1-2 min on 2 cores, cached outside site-packages afterwards; see
``_build.py``) and raises ``_build.BuildError`` with the reason (the compiler's message) if that fails: the
backend registry then falls back to the torch backend with one ``BackendFallbackWarning`` per process, and
``pyalign.backends.status()`` reports the reason. Same signatures and semantics as ``torch_backend`` (bad rows →
token −1); argument checks are those of csrc/include/pyalign/op_args.h. The adapters are in ``_c_ops.py``.
"""
from __future__ import annotations

from . import _build

BUILD_INFO = _build.load()

from ._c_ops import (guided_logprobs, guided_sample, rescore_candidates, topk_candidates,  # noqa: E402,F401
                     topk_rescore)
