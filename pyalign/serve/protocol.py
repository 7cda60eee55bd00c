"""The OpenAI wire format of ``pyalign serve``: request parsing and validation, responses and stream chunks.

Requests are plain JSON dicts checked field by field; every problem is an ``APIError`` (HTTP 400 unless said
otherwise) whose ``param`` names the offending field, in OpenAI's error shape::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "temperature", "code": null}}

Besides OpenAI's fields a request may carry pyalign's: ``preference`` (named or free text), ``method``, the
chosen method's hyper-parameters (``T``, ``alpha``, ``lam``, ``eta``, ``weight``, ``ratio``, ``k``, ``reward`` …,
read from the method registry), ``top_k``, ``placement`` and ``system_prompt``. Missing ones come from the
server-wide ``ServerDefaults``. A request without any preference (and none configured on the server) is answered
by the plain model (method ``base``) unless it names a method that needs one.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import time
import uuid
from typing import Any, Optional

from ..errors import InvalidArgument
from ..methods import SamplingParams, all_param_names, get_method
from ..preferences import PLACEMENTS, get_preference

MAX_STOP = 4            # OpenAI's limit on stop sequences
# Method parameters that may name files on the server: a request may only pick the named values; directories
# (a reward model, a PersRM, a reference model) are the server's choice (its flags), never a client's.
REQUEST_NAMED_ONLY = {"reward": ("prompt", "embedding", "sentiment"), "ref_model": ()}
ROLES = ("system", "user", "assistant")


class APIError(Exception):
    """An error answered in OpenAI's JSON shape; ``param`` names the offending request field."""

    def __init__(self, message: str, param: Optional[str] = None, status: int = 400,
                 type: str = "invalid_request_error", code: Optional[str] = None):
        super().__init__(message)
        self.message, self.param, self.status, self.type, self.code = message, param, status, type, code

    def to_json(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(exc: InvalidArgument, default_param: Optional[str] = None) -> APIError:
    """An ``InvalidArgument`` from the engine or the method layer as a 400 naming its field."""
    return APIError(str(exc), getattr(exc, "param", None) or default_param)


@dataclasses.dataclass
class ServerDefaults:
    """Server-wide defaults (the ``pyalign serve`` flags); a request's own fields override them."""
    method: str = "amulet"
    preference: Optional[str] = None
    method_params: dict = dataclasses.field(default_factory=dict)   # e.g. {"T": 30}; only where the method has it
    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    placement: str = "system"
    system_prompt: Optional[str] = None
    max_n: int = 8

    def __post_init__(self) -> None:
        get_method(self.method)
        if self.preference is not None:
            try:
                get_preference(self.preference)
            except (TypeError, ValueError) as exc:
                raise InvalidArgument("preference", str(exc)) from exc
        unknown = set(self.method_params) - all_param_names()
        if unknown:
            raise InvalidArgument(sorted(unknown)[0], f"unknown method parameter(s) {sorted(unknown)}")
        SamplingParams(max_new_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                       top_k=self.top_k)
        if self.placement not in PLACEMENTS:
            raise InvalidArgument("placement", f"placement must be 'system' or 'user', got {self.placement!r}")
        if isinstance(self.max_n, bool) or not isinstance(self.max_n, int) or self.max_n < 1:
            raise InvalidArgument("max_n", f"max_n must be an integer >= 1, got {self.max_n!r}")


@dataclasses.dataclass
class Submission:
    """One engine request: choice ``index`` of the response, its prompt and its ``engine.submit`` arguments."""
    index: int
    prompt: Any
    kwargs: dict


@dataclasses.dataclass
class ParsedRequest:
    """A validated request: what to submit to the engine and how to answer."""
    kind: str                      # "chat" | "completion"
    model: Optional[str]
    stream: bool
    include_usage: bool
    logprobs: bool
    n: int
    num_prompts: int
    preference: Optional[str]
    method: str
    method_params: dict
    sampling: SamplingParams
    placement: str
    system_prompt: Optional[str]
    submissions: list


# ------------------------------------------------------------------------------------------------ fields
# Standard OpenAI fields that are accepted and have no effect on decoding.
_IGNORED = {"user", "metadata", "store", "service_tier", "parallel_tool_calls", "prompt_cache_key",
            "safety_identifier", "prompt_cache_retention", "verbosity", "reasoning_effort"}
# Standard fields pyalign cannot honour: accepted only at their neutral value.
_NEUTRAL = {"frequency_penalty": (0, 0.0), "presence_penalty": (0, 0.0), "logit_bias": ({},), "tools": ([],),
            "tool_choice": ("none", "auto"), "functions": ([],), "function_call": ("none", "auto"),
            "response_format": ({"type": "text"},), "modalities": (["text"],), "audio": (), "prediction": (),
            "web_search_options": (), "moderation": (),
            "echo": (False,), "best_of": (1,), "suffix": ()}
_COMMON = {"model", "stream", "stream_options", "n", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop",
           "logprobs", "preference", "method", "placement", "system_prompt"}
_CHAT = _COMMON | {"messages", "max_completion_tokens", "top_logprobs"}
_COMPLETION = _COMMON | {"prompt"}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _get_bool(body: dict, name: str, default: bool = False) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise APIError(f"{name} must be true or false, got {v!r}", name)
    return v


def _get_int(body: dict, name: str, default, lo: int, hi: Optional[int] = None, hint: str = ""):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not _is_int(v) or v < lo or (hi is not None and v > hi):
        rng = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
        raise APIError(f"{name} must be {rng}{hint}, got {v!r}", name)
    return v


def _get_number(body: dict, name: str, default: float) -> float:
    v = body.get(name)
    if v is None:
        return default
    if not _is_number(v):
        raise APIError(f"{name} must be a finite number, got {v!r}", name)
    return float(v)


def _check_fields(body: dict, allowed: set, endpoint: str, method_names: set) -> None:
    known = allowed | _IGNORED | set(_NEUTRAL) | method_names
    for name in body:
        if name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise APIError(f"unknown field {name!r} for {endpoint}{hint}", name)
    for name, neutral in _NEUTRAL.items():
        v = body.get(name)
        if v is not None and v not in neutral:
            ok = f" (only {', '.join(map(repr, neutral))} is accepted)" if neutral else ""
            raise APIError(f"{name} is not supported by pyalign serve{ok}, got {v!r}", name)


def _content(content, where: str) -> str:
    """A message content: a string, or a list of text parts ({"type": "text", "text": ...})."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise APIError(f"{where}.content[{j}] must be a text part {{'type': 'text', 'text': ...}}; "
                               "pyalign serves text-only models", "messages")
            parts.append(part["text"])
        return "".join(parts)
    raise APIError(f"{where}.content must be a string or a list of text parts, got {type(content).__name__}",
                   "messages")


def parse_messages(messages) -> list[dict]:
    """OpenAI chat messages as pyalign's [{"role", "content"}] (``developer`` is a system message)."""
    if not isinstance(messages, list):
        raise APIError("messages must be a list of {'role', 'content'} objects"
                       + (", and it is missing" if messages is None else f", got {type(messages).__name__}"),
                       "messages")
    if not messages:
        raise APIError("messages is an empty list: send at least one user message", "messages")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise APIError(f"{where} must be an object with 'role' and 'content', got {type(m).__name__}",
                           "messages")
        role = "system" if m.get("role") == "developer" else m.get("role")
        if role not in ROLES:
            raise APIError(f"{where}.role must be one of system, developer, user, assistant, got {m.get('role')!r}",
                           "messages")
        out.append({"role": role, "content": _content(m.get("content"), where)})
    if not any(m["role"] == "user" for m in out):
        raise APIError("messages has no user message: the last user message is the question to answer", "messages")
    if sum(m["role"] == "system" for m in out) > 1:
        raise APIError("messages has more than one system message: merge them into one", "messages")
    return out


def parse_prompts(prompt) -> list[str]:
    """The ``prompt`` of /v1/completions: a string or a non-empty list of strings (one answer set each)."""
    items = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(items, list) or not items:
        raise APIError("prompt must be a string or a non-empty list of strings"
                       + (", and it is missing" if prompt is None else f", got {prompt!r}"[:200]), "prompt")
    for i, p in enumerate(items):
        if not isinstance(p, str):
            raise APIError(f"prompt[{i}] must be a string (token-id prompts are not supported), got "
                           f"{type(p).__name__}", "prompt")
        if not p.strip():
            raise APIError("prompt is empty: send some text to answer", "prompt")
    return list(items)


def _method_and_preference(body: dict, defaults: ServerDefaults):
    method = body.get("method")
    preference = body.get("preference", defaults.preference)
    if method is None:
        method = defaults.method if preference is not None else "base"
    try:
        cls = get_method(method)
    except InvalidArgument as exc:
        raise invalid(exc, "method") from exc
    if preference is None:
        if cls.requires_preference:
            raise APIError(f"method {method!r} needs a preference: add \"preference\": \"concise\" (or another "
                           "named preference, or free text) to the request body", "preference")
        return cls, None
    many = isinstance(preference, list) and getattr(cls, "accepts_preference_list", False)
    items = preference if many else [preference]
    if not items:
        raise APIError("preference is an empty list: give at least one preference", "preference")
    names = []
    for p in items:
        if not isinstance(p, str):
            raise APIError("preference must be a string (a named preference or free text)"
                           + (" or a list of them" if getattr(cls, "accepts_preference_list", False) else "")
                           + f", got {type(p).__name__}", "preference")
        try:
            names.append(get_preference(p).name)
        except (TypeError, ValueError) as exc:
            raise APIError(str(exc), "preference") from exc
    if not cls.requires_preference:
        return cls, None            # base ignores the preference (and so does its answer)
    return cls, (names if many else names[0])


def _method_params(body: dict, cls, defaults: ServerDefaults) -> dict:
    own = set(cls.Params.names())
    for name in sorted(all_param_names() - own):
        if body.get(name) is not None:
            others = ", ".join(cls.Params.names()) or "none"
            raise APIError(f"{name} does not apply to method {cls.name!r} (its parameters: {others})", name)
    values = {k: v for k, v in defaults.method_params.items() if k in own and v is not None}
    for k in own:
        v = body.get(k)
        if v is None:
            continue
        if k in REQUEST_NAMED_ONLY and v not in REQUEST_NAMED_ONLY[k]:
            named = REQUEST_NAMED_ONLY[k]
            raise APIError(f"{k} {v!r} is not allowed in a request: "
                           + (f"name one of {', '.join(map(repr, named))}; " if named else "")
                           + f"model directories are set when the server starts (pyalign serve --{k.replace('_', '-')}"
                             " PATH)", k)
        values[k] = tuple(v) if isinstance(v, list) else v
    try:
        params = cls.Params.build(values)
    except InvalidArgument as exc:
        raise invalid(exc) from exc
    except (TypeError, ValueError) as exc:
        raise APIError(str(exc), None) from exc
    return {k: v for k, v in dataclasses.asdict(params).items() if k in values}


def _sampling(body: dict, defaults: ServerDefaults, kind: str) -> SamplingParams:
    max_tokens = _get_int(body, "max_tokens", None, 1)
    if kind == "chat":
        mct = _get_int(body, "max_completion_tokens", None, 1)
        if mct is not None and max_tokens is not None and mct != max_tokens:
            raise APIError("max_tokens and max_completion_tokens differ: send only one of them",
                           "max_completion_tokens")
        max_tokens = mct if mct is not None else max_tokens
    stop = body.get("stop")
    if stop is not None:
        items = [stop] if isinstance(stop, str) else stop
        if not isinstance(items, list) or not all(isinstance(s, str) and s for s in items):
            raise APIError(f"stop must be a non-empty string or a list of non-empty strings, got {stop!r}", "stop")
        if len(items) > MAX_STOP:
            raise APIError(f"stop takes at most {MAX_STOP} sequences, got {len(items)}", "stop")
        stop = tuple(items)
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise APIError(f"seed must be an integer, got {seed!r}", "seed")
    temperature = _get_number(body, "temperature", defaults.temperature)
    if temperature < 0:
        raise APIError(f"temperature must be >= 0 (0 = greedy), got {temperature}", "temperature")
    top_p = _get_number(body, "top_p", defaults.top_p)
    if not 0 < top_p <= 1:
        raise APIError(f"top_p must lie in (0, 1] (1 disables it), got {top_p}", "top_p")
    try:
        return SamplingParams(max_new_tokens=max_tokens if max_tokens is not None else defaults.max_tokens,
                              temperature=temperature, top_p=top_p,
                              top_k=_get_int(body, "top_k", defaults.top_k, 0, hint=" (0 disables it)"),
                              seed=seed, stop=stop or ())
    except InvalidArgument as exc:
        raise invalid(exc) from exc


def _logprobs(body: dict, kind: str) -> bool:
    if kind == "chat":
        want = _get_bool(body, "logprobs")
        top = _get_int(body, "top_logprobs", 0, 0)
        if top:
            raise APIError("top_logprobs > 0 is not supported: pyalign reports the log-prob of each chosen token "
                           "under the guided policy (send logprobs: true, top_logprobs: 0)", "top_logprobs")
        return want
    v = body.get("logprobs")
    if v is None or v is False:
        return False
    if v is True or v == 0:
        return True
    raise APIError(f"logprobs must be 0 (the chosen tokens' log-probs; top alternatives are not supported), "
                   f"got {v!r}", "logprobs")


def parse_request(body, kind: str, defaults: ServerDefaults) -> ParsedRequest:
    """Validate a /v1/chat/completions (``kind="chat"``) or /v1/completions (``"completion"``) body."""
    endpoint = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
    if not isinstance(body, dict):
        raise APIError(f"the request body must be a JSON object, got {type(body).__name__}", "body")
    _check_fields(body, _CHAT if kind == "chat" else _COMPLETION, endpoint, all_param_names())
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise APIError(f"model must be a string, got {type(model).__name__}", "model")
    if kind == "chat":
        prompts = [parse_messages(body.get("messages"))]
    else:
        prompts = parse_prompts(body.get("prompt"))
    stream = _get_bool(body, "stream")
    opts = body.get("stream_options")
    include_usage = False
    if opts is not None:
        if not stream:
            raise APIError("stream_options is only allowed with stream: true", "stream_options")
        if not isinstance(opts, dict) or set(opts) - {"include_usage", "include_obfuscation"}:
            raise APIError(f"stream_options must be {{'include_usage': true|false}}, got {opts!r}", "stream_options")
        include_usage = _get_bool(opts, "include_usage")
    n = _get_int(body, "n", 1, 1, defaults.max_n, hint=" (answers per prompt; the server's --max-n)")
    cls, preference = _method_and_preference(body, defaults)
    params = _method_params(body, cls, defaults)
    sampling = _sampling(body, defaults, kind)
    placement = body.get("placement", defaults.placement)
    if placement not in PLACEMENTS:
        raise APIError(f"placement must be 'system' or 'user', got {placement!r}", "placement")
    system_prompt = body.get("system_prompt", defaults.system_prompt)
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise APIError(f"system_prompt must be a string, got {type(system_prompt).__name__}", "system_prompt")
    if kind == "chat" and "system_prompt" in body and any(m["role"] == "system" for m in prompts[0]):
        raise APIError("the system prompt is given twice (a system message and system_prompt): send only one",
                       "system_prompt")
    if kind == "chat" and any(m["role"] == "system" for m in prompts[0]):
        system_prompt = None        # the request's own system message replaces the server's system prompt
    subs = []
    for p, prompt in enumerate(prompts):
        for j in range(n):
            sp = sampling if sampling.seed is None or j == 0 else dataclasses.replace(sampling, seed=sampling.seed + j)
            subs.append(Submission(index=p * n + j, prompt=prompt, kwargs=dict(
                preference=preference, method=cls.name, sampling=sp, placement=placement,
                system_prompt=system_prompt, **params)))
    return ParsedRequest(kind=kind, model=model, stream=stream, include_usage=include_usage,
                         logprobs=_logprobs(body, kind), n=n, num_prompts=len(prompts), preference=preference,
                         method=cls.name, method_params=params, sampling=sampling, placement=placement,
                         system_prompt=system_prompt, submissions=subs)


# --------------------------------------------------------------------------------------------- responses
FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


def openai_finish(reason: Optional[str]) -> Optional[str]:
    """The engine's finish reason as OpenAI's ("stop" | "length"); None while running."""
    if reason is None:
        return None
    if reason not in FINISH:
        raise ValueError(f"finish reason {reason!r} has no OpenAI equivalent")
    return FINISH[reason]


def new_id(kind: str) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]


@dataclasses.dataclass
class Choice:
    """One finished answer, accumulated from the engine's events."""
    index: int
    text: str = ""
    tokens: list = dataclasses.field(default_factory=list)          # (token string, logprob)
    finish_reason: Optional[str] = None
    num_prompt_tokens: int = 0
    num_generated: int = 0


def usage(choices: list, num_prompts: int, n: int) -> dict:
    """OpenAI usage: each prompt counted once, every answer's tokens."""
    prompt = sum(c.num_prompt_tokens for c in choices if c.index % n == 0) if choices else 0
    completion = sum(c.num_generated for c in choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_logprobs(tokens: list) -> dict:
    return {"content": [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8")), "top_logprobs": []}
                        for t, lp in tokens], "refusal": None}


def completion_logprobs(tokens: list, offset: int = 0) -> dict:
    offsets, pos = [], offset
    for t, _ in tokens:
        offsets.append(pos)
        pos += len(t)
    return {"tokens": [t for t, _ in tokens], "token_logprobs": [lp for _, lp in tokens], "top_logprobs": None,
            "text_offset": offsets}


def response(req: ParsedRequest, rid: str, model: str, choices: list, created: Optional[int] = None) -> dict:
    """The non-streaming body of a finished request."""
    created = int(time.time()) if created is None else created
    out = []
    for c in sorted(choices, key=lambda c: c.index):
        if req.kind == "chat":
            out.append({"index": c.index, "message": {"role": "assistant", "content": c.text, "refusal": None},
                        "logprobs": chat_logprobs(c.tokens) if req.logprobs else None,
                        "finish_reason": openai_finish(c.finish_reason)})
        else:
            out.append({"index": c.index, "text": c.text,
                        "logprobs": completion_logprobs(c.tokens) if req.logprobs else None,
                        "finish_reason": openai_finish(c.finish_reason)})
    return {"id": rid, "object": "chat.completion" if req.kind == "chat" else "text_completion",
            "created": created, "model": model, "choices": out, "usage": usage(choices, req.num_prompts, req.n),
            "system_fingerprint": None}


def chunk(req: ParsedRequest, rid: str, model: str, created: int, index: int, text: Optional[str] = None,
          role: bool = False, tokens: Optional[list] = None, finish_reason: Optional[str] = None,
          text_offset: int = 0) -> dict:
    """One streamed chunk for choice ``index``: a role header, a text delta (with its tokens' log-probs when
    asked) or the finish."""
    if req.kind == "chat":
        delta = {}
        if role:
            delta["role"] = "assistant"
            delta["content"] = ""
        if text is not None:
            delta["content"] = text
        choice = {"index": index, "delta": delta,
                  "logprobs": chat_logprobs(tokens) if req.logprobs and tokens else None,
                  "finish_reason": openai_finish(finish_reason)}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": index, "text": text or "",
                  "logprobs": completion_logprobs(tokens, text_offset) if req.logprobs and tokens else None,
                  "finish_reason": openai_finish(finish_reason)}
        obj = "text_completion"
    out = {"id": rid, "object": obj, "created": created, "model": model, "choices": [choice],
           "system_fingerprint": None}
    if req.include_usage:
        out["usage"] = None
    return out


def usage_chunk(req: ParsedRequest, rid: str, model: str, created: int, choices: list) -> dict:
    """The last chunk when ``stream_options.include_usage``: no choices, the usage."""
    return {"id": rid, "object": "chat.completion.chunk" if req.kind == "chat" else "text_completion",
            "created": created, "model": model, "choices": [], "usage": usage(choices, req.num_prompts, req.n),
            "system_fingerprint": None}
