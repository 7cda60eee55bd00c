"""torch.ops.pyalign registration: schemas, fake kernels (opcheck), torch.compile, backend selection."""
from __future__ import annotations

import pytest
import torch

import pyalign
from pyalign import backends


def _sample_args(B=3, V=40, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, V, generator=g).to(dtype), torch.randn(B, V, generator=g).to(dtype),
            torch.full((B,), 2.0), torch.tensor([0.0, 1.0, 0.7])[:B], torch.tensor([0, 5, 0])[:B],
            torch.tensor([1.0, 1.0, 0.8])[:B], torch.tensor([[1, 0], [2, 0], [3, 4]])[:B])


@pytest.mark.parametrize("backend", [b for b in ("torch", "cpp") if backends.available(b)])
def test_opcheck_every_op(backend):
    with backends.use(backend):
        torch.library.opcheck(torch.ops.pyalign.guided_sample.default, _sample_args())
        zp, zb, w = _sample_args()[:3]
        torch.library.opcheck(torch.ops.pyalign.guided_logprobs.default, (zp, zb, w))
        torch.library.opcheck(torch.ops.pyalign.guided_logprobs.default, (zp, None, w))
        torch.library.opcheck(torch.ops.pyalign.topk_candidates.default, (zp, 4))
        rm = torch.randn(3, 2, 40)
        torch.library.opcheck(torch.ops.pyalign.topk_rescore.default,
                              (zp, rm, zb, 4, torch.ones(3, 2), torch.tensor([0.0, 1.0, 1.0]),
                               torch.tensor([[1, 0], [2, 0], [3, 0]])))
        vals, idx = torch.ops.pyalign.topk_candidates(zp, 4)
        torch.library.opcheck(torch.ops.pyalign.rescore_candidates.default,
                              (vals, torch.randn(3, 4), idx, torch.ones(3, 2), torch.zeros(3),
                               torch.tensor([[1, 0], [2, 0], [3, 0]]), 40))


def test_torch_compile_calls_the_op():
    args = _sample_args()

    def step(zp, zb, w, tau, k, p, rng):
        tokens, logp = torch.ops.pyalign.guided_sample(zp * 1.0, zb, w, tau, k, p, rng)
        return tokens, logp * 2

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    t1, l1 = compiled(*args)
    t2, l2 = step(*args)
    assert torch.equal(t1, t2) and torch.allclose(l1, l2)


def test_backend_override_env_and_context(monkeypatch):
    monkeypatch.setenv("PYALIGN_BACKEND", "torch")
    assert backends.default_name("cpu") == "torch"
    monkeypatch.setenv("PYALIGN_BACKEND", "cuda")
    with pytest.raises(backends.BackendUnavailable, match="cuda"):
        pyalign.guided_sample(torch.randn(2, 10))
    monkeypatch.setenv("PYALIGN_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="PYALIGN_BACKEND"):
        pyalign.guided_sample(torch.randn(2, 10))
    monkeypatch.delenv("PYALIGN_BACKEND")
    with backends.use("torch"):
        assert backends.default_name("cpu") == "torch"
    with pytest.raises(ValueError, match="unknown pyalign backend"):
        with backends.use("numpy"):
            pass


def test_op_reports_bad_rows_without_raising():
    zp, zb, w, tau, k, p, rng = _sample_args()
    zp = zp.clone()
    zp[1, 3] = float("nan")
    zb = zb.clone()
    zb[2] = float("-inf")
    with backends.use("torch"):
        tokens, logp = torch.ops.pyalign.guided_sample(zp, zb, w, tau, k, p, rng)
    assert tokens[1].item() == -1 and tokens[2].item() == -1 and tokens[0].item() >= 0
    assert torch.isnan(logp[1:]).all()
