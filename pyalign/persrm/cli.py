"""``pyalign train-persrm``: train PAD's personalised reward model on JSONL preference pairs.

The lead wires it in with ``add_parser(subparsers)``; ``run(args)`` returns an exit code."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train-persrm", help="train a PersRM (PAD's personalised reward model) on preference pairs",
        description="Train a PersRM with PAD's loss -log σ(w_pᵀ(Σ β log π_θ/π_ref (chosen) − same (rejected))) on "
                    "JSONL pairs {prompt, chosen, rejected, preference}. The output directory is loaded by "
                    "`pyalign generate --method pad --reward DIR`. Interrupted runs continue with --resume.")
    p.add_argument("--pairs", required=True, help="JSONL file of {prompt, chosen, rejected, preference} pairs")
    p.add_argument("--out", required=True, help="output directory (model + persrm.json + checkpoint/)")
    p.add_argument("--model", default=None, help="starting model (local HF dir or .gguf; default: the embedded model)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-6)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    p.add_argument("--save-every", type=int, default=50, help="checkpoint every N steps")
    p.add_argument("--max-response-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--placement", choices=("system", "user"), default="user",
                   help="where PAD's principle goes in the training contexts (decode PAD with the same --placement)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from .train import train_persrm
    try:
        res = train_persrm(args.pairs, args.out, model_path=args.model, epochs=args.epochs, lr=args.lr,
                           beta=args.beta, batch_size=args.batch_size, max_steps=args.max_steps, resume=args.resume,
                           save_every=args.save_every, seed=args.seed, max_response_tokens=args.max_response_tokens,
                           placement=args.placement)
    except KeyboardInterrupt:
        return 130
    h = res["history"]
    if h:
        print(f"trained {res['steps']} steps: loss {h[0]['loss']:.4f} -> {h[-1]['loss']:.4f}; saved {res['out']}")
    return 0


def main(argv=None) -> int:       # standalone use until the main CLI wires it in
    ap = argparse.ArgumentParser(prog="pyalign")
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_parser(sub)
    a = ap.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    raise SystemExit(main())
