"""The Hugging Face engine: continuous batching of requests on one model and one KV cache.

Each request brings its method's contexts (``Method.contexts``: the preference and/or the plain prompt, built by
``pyalign.preferences``); all rows of all running guided requests (base, pref, la, amulet: any mix of methods,
preferences and sampling parameters) share ONE ``ContextBatch``, so a step is one batched forward plus one
``torch.ops.pyalign.guided_sample`` call for every request:

    z_r   = z[second_r] + w_r (z[first_r] − z[second_r])        (one context: first_r = second_r, z_r = z[first_r])
    token = the op's draw with (temperature_r, top_k_r, top_p_r) and Philox key (seed_r, step_r)

Per step (``step()``): the running rows are fed their last tokens (one forward); waiting requests join (one
batched prefill, their cache rows merged into the running batch); the op chooses a token per request; ONE host
copy brings tokens and log-probs back (the step's only synchronisation); text, EOS, stop strings and lengths are
handled on the host; finished requests leave the batch (their KV rows are dropped, shared padding trimmed).

Per-request parameters become device tensors once, at admission, and are gathered again only when membership
changes; nothing is validated per token. A request's seed is fixed at admission (its own ``seed`` or a draw from
``generator``), so with a seed the answer is the same whatever else is in the batch.

Reward-guided methods (pad, args, panda) keep per-request reward state on other models; they run as *sessions*:
the requests admitted together form one group that decodes in lockstep and shrinks as its rows finish.

Thread-safety: ``submit`` and ``cancel`` may be called from any thread; ``step`` from one thread only.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
import time
from typing import Callable, Optional, Sequence, Union

import torch

from ..errors import InvalidArgument, Overloaded
from ..methods import SEED_BOUND, SamplingParams, get_method
from ..methods.registry import Method
from ..preferences import PLACEMENTS, context_ids, get_preference
from ..batching import ContextBatch
from .results import GenerationResult
from .text import RowText, eos_token_ids, pad_token_id

Prompt = Union[str, list]


@dataclasses.dataclass
class Event:
    """One step of one request: the token chosen, the text it adds (``text``: safe to stream) and, on the last
    event, why it ended (``finish_reason``: "eos" | "stop" | "length" | "cancelled" | "error")."""
    request_id: str
    token_id: int
    text: str
    logprob: float
    finish_reason: Optional[str]
    error: Optional[str]
    num_prompt_tokens: int
    num_generated: int


@dataclasses.dataclass
class Request:
    """A validated request (``HFEngine.submit`` builds it); ``contexts`` are token ids in ``method.contexts`` order."""
    id: str
    prompt: Prompt
    preference: object
    method: Method
    sampling: SamplingParams
    contexts: list
    placement: str = "system"
    system_prompt: Optional[str] = None
    seed: Optional[int] = None
    text: Optional[RowText] = None
    token_ids: list = dataclasses.field(default_factory=list)
    logprobs: list = dataclasses.field(default_factory=list)
    finish_reason: Optional[str] = None
    error: Optional[str] = None
    t_submit: float = 0.0
    t_first: float = 0.0
    t_end: float = 0.0

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.contexts[0])

    def result(self) -> GenerationResult:
        n = len(self.token_ids)
        prefill_s = max(0.0, self.t_first - self.t_submit)
        decode_s = max(0.0, self.t_end - self.t_first)
        total_s = prefill_s + decode_s
        timings = dict(prefill_s=prefill_s, decode_s=decode_s, total_s=total_s,
                       tokens_per_s=(n - 1) / decode_s if n > 1 and decode_s > 0 else 0.0,
                       ms_per_token=1000.0 * total_s / n if n else 0.0)
        return GenerationResult(prompt=self.prompt, preference=self.preference, method=self.method.name,
                                text=self.text.text, token_ids=list(self.token_ids), logprobs=list(self.logprobs),
                                finish_reason=self.finish_reason, num_prompt_tokens=self.num_prompt_tokens,
                                timings=timings)


class GuidedGroup:
    """Every running guided request: rows of request i are contiguous, in ``method.contexts`` order."""

    def __init__(self, engine: "HFEngine"):
        self.engine = engine
        self.requests: list[Request] = []
        self.batch: Optional[ContextBatch] = None
        self.last_tokens: Optional[torch.Tensor] = None     # [n] device: fed to the rows at the next step
        self._params: dict[str, torch.Tensor] = {}          # per-request device tensors
        self._index: Optional[tuple] = None                 # how to read (first, second) rows from the logits

    def __len__(self) -> int:
        return len(self.requests)

    @staticmethod
    def _request_tensors(reqs: Sequence[Request]) -> dict[str, torch.Tensor]:
        """Per-request parameters as [n] tensors (built on the host once per admission)."""
        s = [r.sampling for r in reqs]
        return dict(
            weight=torch.tensor([r.method.weight() for r in reqs], dtype=torch.float32),
            temperature=torch.tensor([x.temperature for x in s], dtype=torch.float32),
            top_k=torch.tensor([x.top_k for x in s], dtype=torch.int64),
            top_p=torch.tensor([x.top_p for x in s], dtype=torch.float32),
            seed=torch.tensor([r.seed for r in reqs], dtype=torch.int64),
            offset=torch.zeros(len(reqs), dtype=torch.int64),
            ncontexts=torch.tensor([len(r.contexts) for r in reqs], dtype=torch.int64),
        )

    def _refresh_index(self) -> None:
        counts = [len(r.contexts) for r in self.requests]
        dev = self.batch.device
        if len(set(counts)) == 1:                          # uniform layout: strided views, no gather
            n = counts[0]
            self._index = ("strided", n)
        else:
            starts = list(itertools.accumulate([0] + counts[:-1]))
            first = torch.tensor(starts, dtype=torch.long, device=dev)
            second = torch.tensor([s + c - 1 for s, c in zip(starts, counts)], dtype=torch.long, device=dev)
            self._index = ("gather", first, second)
        self._repeats = self._params["ncontexts"]

    def _pair(self, z: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if self._index[0] == "strided":
            n = self._index[1]
            return (z, None) if n == 1 else (z[0::n], z[n - 1::n])
        _, first, second = self._index
        return z.index_select(0, first), z.index_select(0, second)

    def admit(self, reqs: list[Request]) -> Optional[torch.Tensor]:
        """Rows of ``reqs`` join (prefill); returns their logits (appended after the running rows')."""
        seqs = [ids for r in reqs for ids in r.contexts]
        budget = max(r.sampling.max_new_tokens for r in reqs)
        if self.batch is None:
            self.batch = ContextBatch(self.engine.model, seqs, self.engine.pad_id, budget)
            z = self.batch.prefill()
        else:
            z = self.batch.add(seqs, budget)
        dev = self.batch.device
        new = {k: v.to(dev) for k, v in self._request_tensors(reqs).items()}
        self._params = new if not self.requests else {k: torch.cat([self._params[k], new[k]]) for k in new}
        self.requests.extend(reqs)
        self._refresh_index()
        return z

    def forward(self) -> Optional[torch.Tensor]:
        """Feed every running row its request's last token; logits [rows, V]."""
        if not self.requests:
            return None
        tokens = self.last_tokens
        if self._index[0] != "strided" or self._index[1] != 1:
            tokens = tokens.repeat_interleave(self._repeats)
        return self.batch.step(tokens)

    def choose(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self._params
        first, second = self._pair(z)
        rng = torch.stack([p["seed"], p["offset"]], dim=1)
        tokens, logp = torch.ops.pyalign.guided_sample(first, second, p["weight"], p["temperature"], p["top_k"],
                                                       p["top_p"], rng)
        p["offset"] += 1
        self.last_tokens = tokens
        return tokens, logp

    def keep(self, keep: list[int]) -> None:
        """Only the requests at positions ``keep`` stay."""
        if not keep:
            self.requests, self.batch, self.last_tokens, self._params = [], None, None, {}
            return
        counts = [len(r.contexts) for r in self.requests]
        starts = list(itertools.accumulate([0] + counts[:-1]))
        rows = [starts[i] + j for i in keep for j in range(counts[i])]
        self.batch.keep(rows)
        idx = torch.as_tensor(keep, dtype=torch.long, device=self.batch.device)
        self._params = {k: v.index_select(0, idx) for k, v in self._params.items()}
        self.last_tokens = self.last_tokens.index_select(0, idx)
        self.requests = [self.requests[i] for i in keep]
        self._refresh_index()


def bad_row_message(z_first: torch.Tensor, z_second: Optional[torch.Tensor]) -> str:
    """Why the op returned −1 for a row (its logits, on the host: only on this error path)."""
    for name, z in (("the preference context", z_first), ("the plain context", z_second)):
        if z is None:
            continue
        z = z.float()
        if bool(torch.isnan(z).any()):
            return f"the model produced NaN logits in {name}; check the model and its dtype (fp16 overflow?)"
        if bool(torch.isposinf(z).any()):
            return f"the model produced +inf logits in {name}; check the model and its dtype (fp16 overflow?)"
    return ("every token is -inf (masked) in the combined logits, so nothing can be sampled; check the masks "
            "applied to the inputs")


class HFEngine:
    """Continuous batching on a Hugging Face causal LM. See the module docstring."""

    def __init__(self, model, tokenizer, max_batch: int = 64, max_waiting: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, evict_finished: bool = True):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise InvalidArgument("max_batch", f"max_batch must be an integer >= 1, got {max_batch!r}")
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.generator = generator
        self.evict_finished = evict_finished      # False: finished rows keep decoding until their group ends
        self.device = next(model.parameters()).device
        self.eos = frozenset(eos_token_ids(tokenizer, model))
        self.pad_id = pad_token_id(tokenizer, model)
        self.limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        self.guided = GuidedGroup(self)
        self.sessions: list = []                     # reward-guided groups (see pyalign.methods.session)
        self._waiting: collections.deque[Request] = collections.deque()
        self._cancelled: set[str] = set()
        self._cond = threading.Condition()
        self._ids = itertools.count()

    # ------------------------------------------------------------------ requests
    def build_request(self, prompt: Prompt, preference=None, method: str = "amulet",
                      sampling: Optional[SamplingParams] = None, placement: Optional[str] = None,
                      system_prompt: Optional[str] = None, request_id: Optional[str] = None,
                      context_ids_override: Optional[list] = None, **method_params) -> Request:
        """Validate everything once and tokenise the contexts: InvalidArgument names the offending field."""
        cls = get_method(method)
        unknown = set(method_params) - set(cls.Params.names())
        if unknown:
            raise InvalidArgument(sorted(unknown)[0], f"method {method!r} has no parameter "
                                  f"{', '.join(sorted(unknown))}; its parameters are "
                                  f"{', '.join(cls.Params.names()) or '(none)'}")
        m = cls.from_kwargs(**method_params)
        sampling = SamplingParams() if sampling is None else sampling
        if not isinstance(sampling, SamplingParams):
            raise InvalidArgument("sampling", "sampling must be a pyalign.methods.SamplingParams")
        placement = cls.default_placement if placement is None else placement
        if placement not in PLACEMENTS:
            raise InvalidArgument("placement", f"placement must be 'system' or 'user', got {placement!r}")
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise InvalidArgument("system_prompt", "system_prompt must be a string or None")
        pref = None
        if isinstance(preference, (list, tuple)) and not isinstance(preference, str):
            if not cls.accepts_preference_list:
                raise InvalidArgument("preference", f"method {method!r} takes one preference (a string); only "
                                                     "methods combining several preference dimensions (pad) accept a list")
            if not preference:
                raise InvalidArgument("preference", "preference is an empty list: give at least one dimension")
            pref = [self._preference(p) for p in preference]
        elif preference is not None:
            pref = self._preference(preference)
        elif cls.requires_preference:
            raise InvalidArgument("preference", f"method {method!r} needs a preference: pass preference='concise' "
                                                "(or another named preference, or free text)")
        if context_ids_override is not None:
            contexts = [list(map(int, ids)) for ids in context_ids_override]
            if len(contexts) != len(cls.contexts):
                raise InvalidArgument("context_ids", f"method {method!r} reads {len(cls.contexts)} contexts "
                                                     f"{cls.contexts}, got {len(contexts)} id lists")
        else:
            contexts = self._contexts(cls, prompt, pref, placement, system_prompt)
        for ids in contexts:
            if self.limit is not None and len(ids) + sampling.max_new_tokens > self.limit:
                raise InvalidArgument("prompt", f"the prompt is {len(ids)} tokens long with its template; + "
                                      f"max_new_tokens={sampling.max_new_tokens} exceeds the model's context of "
                                      f"{self.limit} tokens: shorten the prompt or lower max_new_tokens")
        rid = request_id if request_id is not None else f"req-{next(self._ids)}"
        return Request(id=rid, prompt=prompt, preference=preference if pref is None else
                       (pref.name if not isinstance(pref, list) else [p.name for p in pref]),
                       method=m, sampling=sampling, contexts=contexts, placement=placement,
                       system_prompt=system_prompt)

    @staticmethod
    def _preference(p):
        try:
            return get_preference(p)
        except (ValueError, TypeError) as exc:
            raise InvalidArgument("preference", str(exc)) from exc

    def _contexts(self, cls, prompt, pref, placement, system_prompt) -> list:
        if isinstance(prompt, str):
            if not prompt.strip():
                raise InvalidArgument("prompt", "the prompt is empty: every prompt needs some text")
        elif isinstance(prompt, list):
            if not prompt:
                raise InvalidArgument("messages", "the message list is empty: send at least one user message")
        else:
            raise InvalidArgument("prompt", f"prompt must be a string or a list of chat messages, "
                                            f"got {type(prompt).__name__}")
        try:
            pref_ids, base_ids = context_ids(self.tokenizer, prompt, pref if "pref" in cls.contexts else None,
                                             placement, system_prompt)
        except (ValueError, TypeError) as exc:
            raise InvalidArgument("messages" if isinstance(prompt, list) else "prompt", str(exc)) from exc
        return [pref_ids if c == "pref" else base_ids for c in cls.contexts]

    def submit(self, prompt: Prompt, preference=None, method: str = "amulet",
               sampling: Optional[SamplingParams] = None, **kwargs) -> str:
        """Validate and queue a request (thread-safe); returns its id. Raises InvalidArgument / Overloaded."""
        req = self.build_request(prompt, preference, method, sampling, **kwargs)
        self.enqueue(req)
        return req.id

    def enqueue(self, req: Request) -> None:
        if req.method.kind not in ("guided", "reward"):
            raise InvalidArgument("method", f"method {req.method.name!r} does not decode step by step; use "
                                            "pyalign.generate")
        with self._cond:
            if self.max_waiting is not None and len(self._waiting) >= self.max_waiting:
                raise Overloaded(f"{len(self._waiting)} requests are already waiting (max_waiting="
                                 f"{self.max_waiting}); retry later")
            req.t_submit = time.perf_counter()
            req.text = RowText(self.tokenizer, req.sampling.stop)
            self._waiting.append(req)
            self._cond.notify_all()

    def cancel(self, request_id: str) -> None:
        """The request leaves at the next step (thread-safe; unknown or finished ids are ignored)."""
        with self._cond:
            self._cancelled.add(request_id)
            self._cond.notify_all()

    def has_work(self) -> bool:
        return bool(self._waiting or self.guided.requests or self.sessions)

    def wait_for_work(self, timeout: Optional[float] = None) -> bool:
        with self._cond:
            return self._cond.wait_for(self.has_work, timeout=timeout)

    @property
    def num_running(self) -> int:
        return len(self.guided) + sum(len(s) for s in self.sessions)

    # ------------------------------------------------------------------ the step
    def _take_waiting(self) -> list[Request]:
        with self._cond:
            free = self.max_batch - self.num_running
            taken = []
            while self._waiting and len(taken) < free:
                req = self._waiting.popleft()
                if req.id in self._cancelled:
                    self._cancelled.discard(req.id)
                    continue
                taken.append(req)
            return taken

    def _seed(self, req: Request) -> int:
        if req.sampling.seed is not None:
            return req.sampling.seed
        if req.sampling.greedy:
            return 0                     # greedy needs no noise: leave the generator untouched
        return int(torch.randint(0, SEED_BOUND, (1,), generator=self.generator, dtype=torch.int64))

    @torch.inference_mode()
    def step(self) -> list[Event]:
        """One decoding step of every running request (and admission of waiting ones). See the module docstring."""
        events: list[Event] = []
        self._drop_cancelled(events)
        g = self.guided
        z_old = g.forward()
        admitted = self._take_waiting()
        for req in admitted:
            req.seed = self._seed(req)
        guided_new = [r for r in admitted if r.method.kind == "guided"]
        z_new = g.admit(guided_new) if guided_new else None
        reward_new = [r for r in admitted if r.method.kind == "reward"]
        if reward_new:
            self._start_sessions(reward_new)
        if g.requests:
            z = z_old if z_new is None else (z_new if z_old is None else torch.cat([z_old, z_new]))
            tokens, logp = g.choose(z)
            self._finish_step(g, tokens, logp, z, events)
        for session in list(self.sessions):
            tokens, logp = session.step()
            self._finish_step(session, tokens, logp, None, events)
        return events

    def _finish_step(self, group, tokens: torch.Tensor, logp: torch.Tensor, z: Optional[torch.Tensor],
                     events: list) -> None:
        host = torch.stack([tokens.to(torch.float64), logp.to(torch.float64)]).tolist()   # the one sync
        now = time.perf_counter()
        keep = []
        for i, (req, tok, lp) in enumerate(zip(group.requests, host[0], host[1])):
            if req.finish_reason is not None:        # a finished row left in the batch (evict_finished=False)
                continue
            tok = int(tok)
            if not req.token_ids:
                req.t_first = now
            if tok < 0:
                first, second = group._pair(z) if z is not None else (None, None)
                req.error = bad_row_message(first[i] if first is not None else None,
                                            second[i] if second is not None else None) if z is not None else \
                    "the reward-guided step found no finite candidate (NaN or -inf logits)"
                req.finish_reason, req.t_end = "error", now
                events.append(Event(req.id, -1, "", float("nan"), "error", req.error, req.num_prompt_tokens,
                                    len(req.token_ids)))
                continue
            req.token_ids.append(tok)
            req.logprobs.append(lp)
            if tok in self.eos and not req.sampling.ignore_eos:
                req.finish_reason = "eos"
                delta = req.text.flush()
            else:
                delta = req.text.add(tok)
                if req.text.stopped:
                    req.finish_reason = "stop"
                elif len(req.token_ids) >= req.sampling.max_new_tokens:
                    req.finish_reason = "length"
                    delta += req.text.flush()
            if req.finish_reason is not None:
                req.t_end = now
            else:
                keep.append(i)
            events.append(Event(req.id, tok, delta, lp, req.finish_reason, None, req.num_prompt_tokens,
                                len(req.token_ids)))
        if len(keep) < len(group.requests) and (self.evict_finished or not keep):
            group.keep(keep)
            if group is not self.guided and not group.requests:
                self.sessions.remove(group)

    def _drop_cancelled(self, events: list) -> None:
        with self._cond:
            cancelled, self._cancelled = self._cancelled, set()
        if not cancelled:
            return
        now = time.perf_counter()
        for group in [self.guided, *self.sessions]:
            gone = [i for i, r in enumerate(group.requests) if r.id in cancelled]
            if not gone:
                continue
            for i in gone:
                req = group.requests[i]
                req.finish_reason, req.t_end = "cancelled", now
                events.append(Event(req.id, -1, req.text.flush(), float("nan"), "cancelled", None,
                                    req.num_prompt_tokens, len(req.token_ids)))
            group.keep([i for i in range(len(group.requests)) if i not in set(gone)])
            if group is not self.guided and not group.requests:
                self.sessions.remove(group)
        with self._cond:                   # ids not running may still be waiting: keep them for _take_waiting
            self._cancelled |= {c for c in cancelled if any(r.id == c for r in self._waiting)}

    def _start_sessions(self, reqs: list[Request]) -> None:
        groups: dict = {}
        for r in reqs:        # one session per method, parameters, preference(s) and prompt form
            key = (type(r.method), repr(r.method.params), repr(r.preference), r.placement, r.system_prompt)
            groups.setdefault(key, []).append(r)
        for (cls, *_), group in groups.items():
            self.sessions.append(cls.session(self, group))

    # ------------------------------------------------------------------ run to completion
    def run(self, requests: Sequence[Request],
            stream: Optional[Callable[[int, int, str], None]] = None) -> list[GenerationResult]:
        """Queue ``requests`` and step until all are done; results in order. ``stream(i, token, delta)`` per token."""
        position = {r.id: i for i, r in enumerate(requests)}
        if len(position) != len(requests):
            raise InvalidArgument("request_id", "request ids must be unique")
        for r in requests:
            self.enqueue(r)
        pending = set(position)
        while pending:
            for ev in self.step():
                if ev.request_id not in position:
                    continue
                if ev.finish_reason == "error":
                    raise ValueError(f"request {position[ev.request_id]}: {ev.error}")
                if stream is not None and ev.token_id >= 0:
                    stream(position[ev.request_id], ev.token_id, ev.text)
                if ev.finish_reason is not None:
                    pending.discard(ev.request_id)
        return [r.result() for r in requests]
