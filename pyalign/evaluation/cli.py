"""The ``eval`` and ``report`` subcommands (wired into ``pyalign`` by ``pyalign/cli.py``).

    pyalign eval --data helpsteer --preferences concise,verbose --methods base,amulet --limit 20 \\
                 --max-new-tokens 96 --out runs/helpsteer.jsonl
    pyalign eval --data helpsteer --preferences concise,verbose,uplifting,creative --methods base,pref \\
                 --grid "amulet:weight=1.5,2,3,5.65" --placement system,user --limit 8 --out runs/strength.jsonl
    pyalign report runs/helpsteer.jsonl --out runs/report

Also runnable alone: ``python -m pyalign.evaluation.cli eval ...``.
"""
from __future__ import annotations

import argparse
import json
import sys

EVAL_EPILOG = """examples:
  pyalign eval --data helpsteer --preferences concise,verbose --methods base,amulet --limit 20 \\
               --max-new-tokens 96 --out runs/helpsteer.jsonl
  pyalign eval --data koala --preferences helpful,harmless,humor --methods base,pref,la,amulet \\
               --grid "amulet:T=1,5,60" --placement system,user --out runs/koala.jsonl
  pyalign eval --data my_questions.jsonl --preferences "like a pirate" --methods base,amulet \\
               --grid "amulet:weight=1.5,2,3" --judge local --out runs/pirate.jsonl

--data takes a JSON list of objects with a 'question' or 'prompt' field, JSONL, or a shipped set
(helpsteer, ultrachat, personal, koala). A run that is killed and started again with the same --out skips
the rows already written."""


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def add_parsers(subparsers) -> None:
    e = subparsers.add_parser("eval", help="evaluate methods × preferences on question sets (resumable JSONL)",
                              description="Generate answers for every (question, preference, method, hyper-"
                                          "parameters, placement) and score them; rows stream to --out.",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EVAL_EPILOG)
    e.add_argument("--data", action="append", required=True,
                   help="question set: a JSON/JSONL file or helpsteer|ultrachat|personal|koala (repeatable, "
                        "or comma-separated)")
    e.add_argument("--preferences", default="concise,verbose",
                   help="comma-separated: Amulet's creative, sycophantic, verbose, complex, formal, pleasant, "
                        "concise, uplifting; PAD's helpful, harmless, humor; or free text (use ';' to separate "
                        "free-text preferences containing commas)")
    e.add_argument("--methods", default="base,amulet", help="comma-separated methods (base, pref, la, amulet, "
                                                            "beam, pad, args, panda)")
    e.add_argument("--grid", action="append", default=None,
                   help="hyper-parameter grid METHOD:PARAM=V1,V2[;PARAM=...] (repeatable), e.g. "
                        "'amulet:T=1,5,60' or 'amulet:weight=1.5,2,3' or 'la:ratio=1,2'")
    e.add_argument("--placement", default="system", help="comma-separated: system, user (where the preference "
                                                         "sentence goes)")
    e.add_argument("--limit", type=int, default=None, help="first N questions of each set")
    e.add_argument("--offset", type=int, default=0, help="skip the first N questions of each set")
    e.add_argument("--max-new-tokens", type=int, default=128)
    e.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default, as the papers)")
    e.add_argument("--seed", type=int, default=None)
    e.add_argument("--batch-size", type=int, default=8, help="questions per generate() call")
    e.add_argument("--model", default=None, help="local HF model directory or .gguf (default: embedded SmolLM2)")
    e.add_argument("--engine", choices=("hf", "vllm"), default="hf",
                   help="hf: pyalign's own loop (every method); vllm: paired requests in vLLM (base, pref, la, "
                        "amulet; run from .venv-vllm, see `make vllm-env`)")
    e.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a vLLM engine argument, repeatable (tensor_parallel_size=2, max_num_seqs=64, ...)")
    e.add_argument("--method-kwargs", default=None,
                   help="JSON object of extra keyword arguments for every generate() call, e.g. "
                        "'{\"reward\": \"sentiment\", \"k\": 10}'")
    e.add_argument("--out", required=True, help="results JSONL (appended to; existing rows are skipped)")
    m = e.add_argument_group("metrics")
    m.add_argument("--no-coherence", action="store_true", help="skip the MiniLM coherence metric")
    m.add_argument("--embedding-model", default=None, help="sentence encoder directory (default: MiniLM package)")
    m.add_argument("--reward-model", default=None, help="local HF sequence-classification reward model directory")
    m.add_argument("--reward-head", default=None,
                   help="objective / logit index, or output attribute name (default: the model's score, "
                        "ArmoRM's `score`, else logit 0)")
    m.add_argument("--judge", default=None, choices=("local",),
                   help="pairwise judge vs base: 'local' = an LM judge (the evaluated model, or --judge-model)")
    m.add_argument("--judge-url", default=None,
                   help="OpenAI-compatible endpoint as the judge (base URL, e.g. http://localhost:8000/v1; "
                        "key from $OPENAI_API_KEY)")
    m.add_argument("--judge-model", default=None, help="local judge model directory, or the endpoint's model name")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.add_argument("--report", default=None, metavar="DIR", help="write the report into DIR when done")
    e.set_defaults(func=run_eval)

    r = subparsers.add_parser("report", help="Markdown tables and plots from eval results",
                              description="Tables shaped like the Amulet paper's (rows: dataset × method × setting; "
                                          "columns: preference × metric) and PNG plots with 95%% CIs.")
    r.add_argument("results", nargs="+", help="results JSONL file(s)")
    r.add_argument("--out", required=True, help="output directory (report.md and PNGs)")
    r.add_argument("--no-plots", action="store_true")
    r.add_argument("--title", default=None)
    r.set_defaults(func=run_report)


def config_from_args(a):
    from .data import parse_preferences
    from .runner import EvalConfig, parse_grid
    data = [d for spec in a.data for d in _csv(spec)]
    placements = _csv(a.placement)
    for p in placements:
        if p not in ("system", "user"):
            raise ValueError(f"--placement: {p!r} is not 'system' or 'user'")
    kwargs = json.loads(a.method_kwargs) if a.method_kwargs else {}
    if not isinstance(kwargs, dict):
        raise ValueError("--method-kwargs must be a JSON object")
    judge = a.judge_url or a.judge
    engine_args = {}
    if a.engine_arg:
        if a.engine != "vllm":
            raise ValueError("--engine-arg applies to --engine vllm only")
        from ..integrations.vllm import parse_engine_args
        engine_args = parse_engine_args(a.engine_arg)
    return EvalConfig(data=data, preferences=parse_preferences(a.preferences), methods=_csv(a.methods),
                      out=a.out, limit=a.limit, offset=a.offset, max_new_tokens=a.max_new_tokens,
                      temperature=a.temperature, seed=a.seed, batch_size=a.batch_size, grid=parse_grid(a.grid),
                      placements=placements, model=a.model, engine=a.engine, engine_args=engine_args,
                      method_kwargs=kwargs, coherence=not a.no_coherence,
                      embedding_model=a.embedding_model, reward_model=a.reward_model, reward_head=a.reward_head,
                      judge=judge, judge_model=a.judge_model, progress=not a.no_progress)


def run_eval(a) -> int:
    from .runner import run_evaluation
    cfg = config_from_args(a)
    stats = run_evaluation(cfg)
    print(f"[pyalign eval] {stats['rows_written']} rows written, {stats['rows_skipped']} already done, "
          f"{stats['rows_total']} in all -> {cfg.out}", file=sys.stderr)
    if a.report:
        from .report import write_report
        res = write_report(cfg.out, a.report)
        print(f"[pyalign eval] report: {res['markdown']}", file=sys.stderr)
    return 0


def run_report(a) -> int:
    from .report import write_report
    res = write_report(a.results, a.out, with_plots=not a.no_plots, title=a.title)
    print(f"[pyalign report] {res['rows']} rows -> {res['markdown']}"
          + (f" and {len(res['plots'])} plots" if res["plots"] else ""), file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pyalign")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_parsers(sub)
    a = parser.parse_args(argv)
    return int(a.func(a) or 0)


if __name__ == "__main__":
    sys.exit(main())
