"""GuidedPairs without an engine: both of vLLM's interfaces driven by hand with vLLM's own types.

V1 runner: ``BatchUpdate`` add/remove/move + ``apply(logits)``. Model Runner V2: ``add_request`` + ``apply`` with
vLLM's ``LogitsContext`` and ``LogitsProcRequestState`` built from small tensors (no MRV2 runner can start on a
CPU). Expected tokens come from ``pyalign.guided_sample`` (the public wrapper) with the marker masked."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from vllm import SamplingParams as VSP
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality
from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsContext, LogitsProcRequestState

import pyalign
from pyalign.integrations.vllm import GuidedPairs, parse_tag, request_tag
from pyalign.methods import SamplingParams, get_method

V, MARKER = 40, 7
NEG = float("-inf")


def _cfg(n=8):
    return types.SimpleNamespace(speculative_config=None, scheduler_config=types.SimpleNamespace(max_num_seqs=n))


def _params(role, pair, method="amulet", offset=0, temperature=0.0, top_k=0, top_p=1.0, seed=11, **kw):
    sp = SamplingParams(max_new_tokens=4, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    return VSP(max_tokens=4, temperature=0.0, stop_token_ids=[MARKER],
               extra_args=request_tag(method, role, pair, sp, MARKER, offset, kw))


def _expected(zp, zb, weight, k, seed=11, temperature=0.0, top_k=0, top_p=1.0):
    zp, zb = zp.clone()[None], (zp if zb is None else zb).clone()[None]
    zp[:, MARKER] = NEG
    zb[:, MARKER] = NEG
    tok, lp = pyalign.guided_sample(zp, zb, weight, temperature, top_k, top_p, seed=[seed], offset=[k])
    return int(tok[0]), float(lp[0])


def _assert_forced(row, token, value=None):
    assert int(row.argmax()) == token
    assert int(torch.isfinite(row).sum()) == 1
    if value is not None:
        assert float(row[token]) == pytest.approx(value, abs=1e-6)


def _v1():
    return GuidedPairs(_cfg(), torch.device("cpu"), False)


def test_v1_pair_single_and_untagged_rows():
    torch.manual_seed(0)
    proc = _v1()
    outs = [[], [], [5, 6], [9]]
    proc.update_state(BatchUpdate(batch_size=4, removed=[], moved=[], added=[
        (0, _params("pref", "a", offset=3), [1, 2], outs[0]),
        (1, VSP(max_tokens=4), [1, 2], outs[1]),                           # a plain vLLM request
        (2, _params("base", "a", offset=3), [1, 3], outs[2][:0]),
        (3, _params("single", "b", method="pref", temperature=0.7, top_k=5), [1, 4], outs[3]),
    ]))
    logits = torch.randn(4, V)
    before = logits.clone()
    proc.apply(logits)
    w = get_method("amulet").from_kwargs().weight()
    tok, lp = _expected(before[0], before[2], w, k=3)
    _assert_forced(logits[0], tok, lp)
    _assert_forced(logits[2], tok, lp)
    assert torch.equal(logits[1], before[1])                               # untouched
    t3, lp3 = _expected(before[3], None, 1.0, k=1, temperature=0.7, top_k=5)
    _assert_forced(logits[3], t3, lp3)
    assert proc.stats["pairs"] == 1 and proc.stats["singles"] == 1 and proc.stats["interrupted"] == 0


def test_v1_lost_step_and_absent_partner_force_the_marker():
    proc = _v1()
    op, ob = [], []
    proc.update_state(BatchUpdate(batch_size=2, removed=[], moved=[], added=[
        (0, _params("pref", "a"), [1], op), (1, _params("base", "a"), [1], ob)]))
    logits = torch.randn(2, V)
    proc.apply(logits)
    tok = int(logits[0].argmax())
    op.append(tok)                                   # only the preference member kept its sample
    logits = torch.randn(2, V)
    proc.apply(logits)
    _assert_forced(logits[0], MARKER, 0.0)
    _assert_forced(logits[1], MARKER, 0.0)
    proc.update_state(BatchUpdate(batch_size=1, removed=[0], moved=[(1, 0, MoveDirectionality.UNIDIRECTIONAL)],
                                  added=[]))
    logits = torch.randn(1, V)
    proc.apply(logits)                               # the base member alone: never unguided
    _assert_forced(logits[0], MARKER, 0.0)
    assert proc.stats["interrupted"] == 3


def test_v1_swap_keeps_pairs_and_seeds_per_pair():
    torch.manual_seed(1)
    proc = _v1()
    add = [(0, _params("pref", "a", seed=1, temperature=1.0), [1], []),
           (1, _params("pref", "b", seed=2, temperature=1.0), [1], []),
           (2, _params("base", "a", seed=1, temperature=1.0), [1], []),
           (3, _params("base", "b", seed=2, temperature=1.0), [1], [])]
    proc.update_state(BatchUpdate(batch_size=4, removed=[], moved=[(0, 3, MoveDirectionality.SWAP)], added=add))
    # after the swap: row 0 = base b, row 3 = pref a
    logits = torch.randn(4, V)
    before = logits.clone()
    proc.apply(logits)
    w = get_method("amulet").from_kwargs().weight()
    ta, _ = _expected(before[3], before[2], w, 0, seed=1, temperature=1.0)
    tb, _ = _expected(before[1], before[0], w, 0, seed=2, temperature=1.0)
    _assert_forced(logits[3], ta)
    _assert_forced(logits[2], ta)
    _assert_forced(logits[1], tb)
    _assert_forced(logits[0], tb)


def _v2_state(n, prompt_len, total_len):
    def buf(vals):
        t = torch.tensor(vals, dtype=torch.int32)
        return types.SimpleNamespace(gpu=t, cpu=t, np=t.numpy())
    return LogitsProcRequestState(device=torch.device("cpu"), max_num_reqs=n, vocab_size=V,
                                  all_token_ids=types.SimpleNamespace(gpu=torch.zeros(n, 64, dtype=torch.int32)),
                                  prompt_len=buf(prompt_len), prefill_len=buf(prompt_len), total_len=buf(total_len))


def _ctx(slots, pos):
    slots_t = torch.tensor(slots, dtype=torch.int32)
    return LogitsContext(expanded_idx_mapping=slots_t, idx_mapping=slots_t, idx_mapping_np=np.array(slots),
                         expanded_local_pos=torch.zeros(len(slots), dtype=torch.int32),
                         input_ids=torch.zeros(len(slots), dtype=torch.int32),
                         pos=torch.tensor(pos, dtype=torch.int64),
                         seq_lens_upper_bound_np=np.array(pos) + 1)


def test_mrv2_guides_final_rows_and_interrupts_a_prefill_chunk():
    torch.manual_seed(2)
    # slots: 0 = pref a (prompt 10, 2 generated), 1 = plain, 2 = base a (prompt 12, 2 generated), 3 = single b
    state = _v2_state(4, prompt_len=[10, 5, 12, 6], total_len=[12, 5, 14, 6])
    proc = GuidedPairs(_cfg(4), state)
    assert proc.add_request(0, _params("pref", "a", method="la", ratio=2.0))
    assert not proc.add_request(1, VSP(max_tokens=3))
    assert proc.add_request(2, _params("base", "a", method="la", ratio=2.0))
    assert proc.add_request(3, _params("single", "b", method="base"))
    logits = torch.randn(4, V)
    before = logits.clone()
    # batch order differs from slot order; every row is final (pos + 1 == total_len)
    proc.apply(logits, _ctx([2, 0, 3, 1], [13, 11, 5, 4]))
    tok, lp = _expected(before[1], before[0], 3.0, k=2)
    _assert_forced(logits[0], tok, lp)
    _assert_forced(logits[1], tok, lp)
    t3, lp3 = _expected(before[2], None, 1.0, k=0)
    _assert_forced(logits[2], t3, lp3)
    assert torch.equal(logits[3], before[3])
    # the base member is re-prefilling after preemption (a non-final chunk): nothing is guided
    logits = torch.randn(2, V)
    proc.apply(logits, _ctx([2, 0], [9, 11]))
    _assert_forced(logits[0], MARKER, 0.0)
    _assert_forced(logits[1], MARKER, 0.0)
    # a recycled slot is fully re-initialised by add_request
    assert not proc.add_request(2, VSP(max_tokens=3))
    logits = torch.randn(2, V)
    before = logits.clone()
    proc.apply(logits, _ctx([0, 2], [11, 13]))
    _assert_forced(logits[0], MARKER, 0.0)            # its partner's slot now holds a plain request
    assert torch.equal(logits[1], before[1])


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d.update(role="other"), "role"),
    (lambda d: d.update(method="args"), "reward-guided"),
    (lambda d: d.update(method="nope"), "unknown method"),
    (lambda d: d.update(params={"alpha": -1.0}), "alpha"),
    (lambda d: d.update(params={"ratio": 2.0}), "unknown parameter"),
    (lambda d: d.update(temperature=-1.0), "temperature"),
    (lambda d: d.update(top_p=0.0), "top_p"),
    (lambda d: d.update(marker=3), "stop_token_ids"),
    (lambda d: d.update(role="single"), "role must be pref or base"),
    (lambda d: d.update(pair=""), "pair"),
])
def test_validate_params_rejects_bad_extra_args(mutate, needle):
    sp = _params("pref", "a")
    mutate(sp.extra_args["pyalign"])
    with pytest.raises(ValueError, match=needle):
        GuidedPairs.validate_params(sp)


def test_validate_params_accepts_plain_and_tagged_requests():
    GuidedPairs.validate_params(VSP(max_tokens=3))
    tag = parse_tag(_params("base", "x", method="la", offset=5))
    assert tag.role == 1 and tag.weight == 3.0 and tag.offset == 5 and tag.marker == MARKER


def test_engine_args_parse_values_and_reject_bad_items():
    from pyalign.errors import InvalidArgument
    from pyalign.integrations.vllm import parse_engine_args
    assert parse_engine_args(["tensor_parallel_size=2", "enforce_eager=true", "distributed_executor_backend=ray",
                              "gpu-memory-utilization=0.5", "compilation_config={\"mode\": 0}"]) == {
        "tensor_parallel_size": 2, "enforce_eager": True, "distributed_executor_backend": "ray",
        "gpu_memory_utilization": 0.5, "compilation_config": {"mode": 0}}
    with pytest.raises(InvalidArgument, match="KEY=VALUE"):
        parse_engine_args(["max_num_seqs"])
    with pytest.raises(InvalidArgument, match="engine argument name"):
        parse_engine_args(["max num=3"])
