"""The evaluation runner: questions × preferences × methods × hyper-parameters × placements → JSONL rows.

One row per (dataset, question, preference, method, hyper-parameters, placement), written (and fsync'ed) as
soon as its batch finishes. Every row carries a ``key`` built from those fields and the generation settings
(model, max_new_tokens, temperature, seed); a run started again on the same file skips every key already
there, so a killed run loses at most the batch in flight. A half-written last line (the process died while
writing) is dropped when reading and cut off before appending.

``base`` ignores the preference and the placement: it is generated once per question and written as one row
per preference (placement ``"-"``), so the report can put it in every preference column. Base rows of a
batch are generated first, so that the other methods' degeneration flags can compare with the base answer.

Metrics per row (``row["metrics"]``): length_tokens, length_words, distinct_1/2, rep_2/3/4, diversity,
sentiment (VADER), coherence (MiniLM cosine prompt/response; ``coherence=False`` skips it), reward (with a
reward model), win_vs_base (with a judge: p(this answer fits the preference better than base's), both
orders); ``row["degenerate"]`` lists the degeneration flags (``metrics.degeneration_flags``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import pathlib
import time
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from . import data as data_mod
from .metrics import degeneration_flags, text_metrics

GenerateFn = Callable[..., list]
SINGLE_CONTEXT = ("base",)


# ----------------------------------------------------------------------------------------------- config
def _vllm_generate_fn(c) -> GenerateFn:
    """``generate``-shaped calls answered by vLLM (``pyalign.integrations.vllm``; one engine for the whole run)."""
    from ..integrations.vllm import generate, make_llm
    from ..methods import SamplingParams, get_method
    llm = make_llm(c.model, **c.engine_args)

    def gen(prompts, method, max_new_tokens, temperature=0.0, seed=None, preference=None, placement=None,
            system_prompt=None, **params):
        sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
        return generate(llm, prompts, preference=preference, method=method, sampling=sampling, method_kwargs=params,
                        placement=placement or get_method(method).default_placement, system_prompt=system_prompt)
    return gen



def _value(s: str) -> Any:
    s = s.strip()
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    if s.lower() in ("none", "null"):
        return None
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    return s


def parse_grid(specs: Union[None, str, Sequence[str]]) -> dict[str, list[dict]]:
    """``["amulet:T=1,5,60", "amulet:weight=1.5,2", "la:ratio=1,2;T=5"]`` → {method: [hyper dicts]}.

    Within one spec, ``;`` separates parameters and their values combine as a Cartesian product; several
    specs for the same method add their settings (a union)."""
    out: dict[str, list[dict]] = {}
    if specs is None:
        return out
    if isinstance(specs, str):
        specs = [specs]
    for spec in specs:
        if ":" not in spec:
            raise ValueError(f"--grid {spec!r}: expected METHOD:PARAM=V1,V2[;PARAM=...], e.g. amulet:weight=1.5,2,3")
        method, rest = spec.split(":", 1)
        method = method.strip()
        names, values = [], []
        for part in rest.split(";"):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(f"--grid {spec!r}: {part!r} is not PARAM=V1,V2,...")
            k, v = part.split("=", 1)
            vals = [_value(x) for x in v.split(",") if x.strip()]
            if not vals:
                raise ValueError(f"--grid {spec!r}: no values for {k.strip()!r}")
            names.append(k.strip())
            values.append(vals)
        settings = [dict(zip(names, combo)) for combo in itertools.product(*values)]
        lst = out.setdefault(method, [])
        for s in settings:
            if s not in lst:
                lst.append(s)
    return out


def hyper_label(hyper: dict) -> str:
    return ",".join(f"{k}={hyper[k]}" for k in sorted(hyper)) if hyper else "default"


@dataclasses.dataclass
class EvalConfig:
    data: list
    preferences: list
    methods: list
    out: str
    limit: Optional[int] = None
    offset: int = 0
    max_new_tokens: int = 128
    temperature: float = 0.0
    seed: Optional[int] = None
    batch_size: int = 8
    grid: dict = dataclasses.field(default_factory=dict)
    placements: list = dataclasses.field(default_factory=lambda: ["system"])
    model: Optional[str] = None
    engine: str = "hf"                     # "hf" (pyalign's loop) or "vllm" (paired requests in vLLM)
    engine_args: dict = dataclasses.field(default_factory=dict)
    method_kwargs: dict = dataclasses.field(default_factory=dict)
    coherence: bool = True
    sentiment: bool = True
    embedding_model: Optional[str] = None
    reward_model: Optional[str] = None
    reward_head: Union[int, str, None] = None     # None: the model's score (see pyalign.scoring.classifier)
    judge: Optional[str] = None            # None, "local", or an OpenAI-compatible base URL
    judge_model: Optional[str] = None      # a local judge model path, or the endpoint's model name
    progress: bool = True

    def settings(self) -> list[tuple[str, dict]]:
        """(method, hyper) pairs in run order: ``methods`` at their defaults unless a grid names them, then
        grids for methods not listed."""
        out = []
        methods = list(self.methods) + [m for m in self.grid if m not in self.methods]
        for m in methods:
            for h in (self.grid.get(m) or [{}]):
                out.append((m, dict(h)))
        return out


def row_key(dataset: str, qid: str, preference: str, method: str, hyper: dict, placement: str, gen: dict) -> str:
    blob = json.dumps([dataset, qid, preference, method, hyper, placement, gen], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------------------------- JSONL I/O

def read_jsonl(path: Union[str, pathlib.Path]) -> list[dict]:
    """Rows of a results file; a truncated or corrupt line (a killed writer) is skipped."""
    p = pathlib.Path(path)
    if not p.exists():
        return []
    rows = []
    with p.open("r", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                rows.append(obj)
    return rows


def repair_tail(path: Union[str, pathlib.Path]) -> int:
    """Cut a half-written last line (no trailing newline) so that appended rows start on a fresh line.
    Returns the number of bytes removed."""
    p = pathlib.Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return 0
    with p.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        pos, chunk = size, 4096
        cut = 0
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            buf = f.read(pos - start)
            i = buf.rfind(b"\n")
            if i >= 0:
                cut = start + i + 1
                break
            pos = start
        f.truncate(cut)
        return size - cut


class JsonlWriter:
    def __init__(self, path: Union[str, pathlib.Path]):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self.f = self.path.open("a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self.f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


# ----------------------------------------------------------------------------------------------- runner

def _field(res, name, default=None):
    if isinstance(res, dict):
        return res.get(name, default)
    return getattr(res, name, default)


@dataclasses.dataclass
class _Job:
    question: data_mod.Question
    preference: Optional[str]      # None for base (one generation for all preferences)
    method: str
    hyper: dict
    placement: str
    keys: dict                     # preference label -> row key (base: every preference)


class Evaluator:
    """Runs an ``EvalConfig``; ``generate_fn(prompts, **kwargs)`` defaults to ``pyalign.generate`` on the model."""

    def __init__(self, config: EvalConfig, generate_fn: Optional[GenerateFn] = None, model=None, tokenizer=None):
        self.config = config
        self._generate_fn = generate_fn
        self.model, self.tokenizer = model, tokenizer
        self._encoder = None
        self._reward = None
        self._judge = None

    # lazy resources ---------------------------------------------------------------------------------
    def _load_model(self):
        if self.model is None:
            from ..models import load_model
            self.model, self.tokenizer = load_model(self.config.model)
        return self.model, self.tokenizer

    def generate_fn(self) -> GenerateFn:
        if self._generate_fn is None and self.config.engine == "vllm":
            self._generate_fn = _vllm_generate_fn(self.config)
        if self._generate_fn is None:
            import pyalign
            gen = getattr(pyalign, "generate", None)
            if gen is None:
                from ..engine.generate import generate as gen
            model, tok = self._load_model()
            self._generate_fn = lambda prompts, **kw: gen(model, tok, prompts, **kw)
        return self._generate_fn

    def encoder(self):
        if self._encoder is None:
            from ..scoring import shared_encoder
            self._encoder = shared_encoder(self.config.embedding_model)
        return self._encoder

    def reward(self):
        if self._reward is None and self.config.reward_model:
            from .judge import RewardModel
            self._reward = RewardModel(self.config.reward_model, head=self.config.reward_head)
        return self._reward

    def judge(self):
        c = self.config
        if self._judge is None and c.judge:
            from .judge import LocalJudge, OpenAIJudge
            if c.judge.startswith(("http://", "https://")):
                self._judge = OpenAIJudge(c.judge, model=c.judge_model or "gpt-4o-mini")
            elif c.judge_model:
                from ..models import load_model
                self._judge = LocalJudge(*load_model(c.judge_model))
            else:
                model, tok = (self.model, self.tokenizer) if self.model is not None else self._load_model()
                if model is None or tok is None:
                    model, tok = self._load_model()
                self._judge = LocalJudge(model, tok)
        return self._judge

    # job list ----------------------------------------------------------------------------------------
    def gen_settings(self) -> dict:
        c = self.config
        return {"model": c.model or "default", "max_new_tokens": c.max_new_tokens, "temperature": c.temperature,
                "seed": c.seed}

    def questions(self) -> list[data_mod.Question]:
        qs = []
        for spec in self.config.data:
            qs.extend(data_mod.load_questions(spec, limit=self.config.limit, offset=self.config.offset))
        return qs

    def jobs(self, questions: Sequence[data_mod.Question]) -> list[_Job]:
        c = self.config
        gen = self.gen_settings()
        out = []
        for q in questions:
            for method, hyper in c.settings():
                if method in SINGLE_CONTEXT:
                    keys = {p: row_key(q.dataset, q.id, p, method, hyper, "-", gen) for p in c.preferences}
                    out.append(_Job(q, None, method, hyper, "-", keys))
                    continue
                for pref in c.preferences:
                    for pl in c.placements:
                        out.append(_Job(q, pref, method, hyper, pl,
                                        {pref: row_key(q.dataset, q.id, pref, method, hyper, pl, gen)}))
        return out

    # run -----------------------------------------------------------------------------------------------
    def run(self) -> dict:
        c = self.config
        existing = read_jsonl(c.out)
        done = {r.get("key") for r in existing}
        base_text = {(r["dataset"], r["question_id"]): (r.get("text", ""), r.get("finish_reason"))
                     for r in existing if r.get("method") == "base"}
        questions = self.questions()
        jobs = self.jobs(questions)
        pending = [j for j in jobs if any(k not in done for k in j.keys.values())]
        total_rows = sum(sum(k not in done for k in j.keys.values()) for j in pending)
        stats = {"rows_total": sum(len(j.keys) for j in jobs), "rows_skipped": sum(len(j.keys) for j in jobs) - total_rows,
                 "rows_written": 0}
        if not pending:
            return stats
        from tqdm.auto import tqdm
        bar = tqdm(total=total_rows, unit="row", desc="pyalign eval", disable=not c.progress, dynamic_ncols=True)
        writer = JsonlWriter(c.out)
        try:
            # batch: same (dataset, group of questions) → per setting, the pending questions together
            order = {(m, hyper_label(h)): i for i, (m, h) in enumerate(c.settings())}
            qpos = {(q.dataset, q.id): i for i, q in enumerate(questions)}
            groups: dict = {}
            for j in pending:
                chunk = qpos[(j.question.dataset, j.question.id)] // max(1, c.batch_size)
                base_first = 0 if j.method in SINGLE_CONTEXT else 1
                gk = (j.question.dataset, chunk, base_first, order[(j.method, hyper_label(j.hyper))],
                      j.preference or "", j.placement)
                groups.setdefault(gk, []).append(j)
            for gk in sorted(groups, key=lambda g: (g[0], g[1], g[2], g[3], str(g[4]), g[5])):
                batch = groups[gk]
                rows = self._run_batch(batch, done, base_text)
                for r in rows:
                    writer.write(r)
                    done.add(r["key"])
                    stats["rows_written"] += 1
                    bar.update(1)
        finally:
            writer.close()
            bar.close()
        return stats

    def _run_batch(self, batch: list[_Job], done: set, base_text: dict) -> list[dict]:
        c = self.config
        j0 = batch[0]
        prompts = [j.question.text for j in batch]
        kwargs: dict = dict(method=j0.method, max_new_tokens=c.max_new_tokens, temperature=c.temperature,
                            seed=c.seed)
        from ..methods import get_method
        own = set(get_method(j0.method).Params.names())      # --method-kwargs go to the methods that take them
        kwargs.update({k: v for k, v in c.method_kwargs.items() if k in own})
        kwargs.update(j0.hyper)
        if j0.method not in SINGLE_CONTEXT:
            kwargs["preference"] = data_mod.preference_text(j0.preference)
            kwargs["placement"] = j0.placement
        t0 = time.perf_counter()
        results = self.generate_fn()(prompts, **kwargs)
        wall = time.perf_counter() - t0
        if len(results) != len(prompts):
            raise RuntimeError(f"generate returned {len(results)} results for {len(prompts)} prompts")
        texts = [_field(r, "text", "") or "" for r in results]
        coh = self._coherence(prompts, texts)
        rew = self.reward().score(prompts, texts) if c.reward_model else [None] * len(texts)
        rows = []
        for i, (j, res) in enumerate(zip(batch, results)):
            ids = list(_field(res, "token_ids", []) or [])
            lps = list(_field(res, "logprobs", []) or [])
            finish = _field(res, "finish_reason")
            base_metrics = text_metrics(texts[i], token_ids=ids, with_sentiment=c.sentiment)
            base_metrics["coherence"] = coh[i]
            if rew[i] is not None:
                base_metrics["reward"] = rew[i]
            if j.method in SINGLE_CONTEXT:
                base_text[(j.question.dataset, j.question.id)] = (texts[i], finish)
            ref = base_text.get((j.question.dataset, j.question.id))
            for pref, key in j.keys.items():
                if key in done:
                    continue
                metrics = dict(base_metrics)
                instructions = [data_mod.preference_sentence(pref)] + _system_sentences()
                flags = degeneration_flags(texts[i], instructions,
                                           base_text=None if (j.method in SINGLE_CONTEXT or ref is None) else ref[0],
                                           finish_reason=finish)
                rows.append({
                    "key": key, "dataset": j.question.dataset, "question_id": j.question.id,
                    "question": j.question.text, "preference": pref, "method": j.method, "hyper": j.hyper,
                    "setting": hyper_label(j.hyper), "placement": j.placement, **self.gen_settings(),
                    "batch_size": len(prompts), "text": texts[i], "token_ids": ids,
                    "mean_logprob": (sum(lps) / len(lps)) if lps else None,
                    "finish_reason": finish, "num_prompt_tokens": _field(res, "num_prompt_tokens"),
                    "metrics": metrics, "degenerate": flags,
                    "timings": dict(_field(res, "timings", {}) or {}, batch_wall_s=wall),
                })
        self._judge_rows(rows, base_text)
        return rows

    def _coherence(self, prompts, texts) -> list:
        if not self.config.coherence:
            return [None] * len(texts)
        from .embeddings import coherence_scores
        return coherence_scores(prompts, texts, self.encoder())

    def _judge_rows(self, rows: list[dict], base_text: dict) -> None:
        judge = self.judge()
        if judge is None:
            return
        todo = [r for r in rows if r["method"] not in SINGLE_CONTEXT
                and (r["dataset"], r["question_id"]) in base_text]
        if not todo:
            return
        probs = judge.compare([r["question"] for r in todo],
                              [data_mod.preference_text(r["preference"]) for r in todo],
                              [r["text"] for r in todo],
                              [base_text[(r["dataset"], r["question_id"])][0] for r in todo])
        for r, p in zip(todo, probs):
            r["metrics"]["win_vs_base"] = p


_SYS: Optional[list] = None


def _system_sentences() -> list[str]:
    """The sentences of Amulet's system prompt (an answer reciting them is degenerate)."""
    global _SYS
    if _SYS is None:
        from ..preferences import AMULET_SYSTEM_PROMPT
        sp = AMULET_SYSTEM_PROMPT.replace("{preference}", "")
        _SYS = [s.strip() + "." for s in sp.split(".") if len(s.split()) >= 6]
    return _SYS


def run_evaluation(config: EvalConfig, generate_fn: Optional[GenerateFn] = None, model=None,
                   tokenizer=None) -> dict:
    """Run (or resume) an evaluation; returns counts {rows_total, rows_skipped, rows_written}."""
    return Evaluator(config, generate_fn, model, tokenizer).run()
