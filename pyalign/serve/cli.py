"""``pyalign serve``: the OpenAI-compatible server (``add_arguments`` / ``run`` for the main CLI, and
``python -m pyalign.serve``)."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
import time

DESCRIPTION = """Serve a model with OpenAI-compatible /v1/chat/completions and /v1/completions (streaming and not),
/v1/models and /health. Each request may choose its preference, method and hyper-parameters as extra body fields
("preference": "concise", "method": "amulet", "T": 60, ...); the flags below are the server-wide defaults.
Requests share one continuously batched decoding loop. A request without a preference (and no --preference here)
is answered by the plain model (method base)."""

EXAMPLE = """example (the server answers on 127.0.0.1 only; Ctrl-C stops it):
  pyalign serve --port 8000
  # then, from Python:
  from openai import OpenAI
  client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
  r = client.chat.completions.create(model="SmolLM2-135M-Instruct", max_tokens=64,
      messages=[{"role": "user", "content": "How do I boil an egg?"}],
      extra_body={"preference": "concise", "method": "amulet"})
  print(r.choices[0].message.content)"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``pyalign serve`` flags."""
    from ..methods import available_methods, get_method
    p.add_argument("--model", default=None, help="local HF model directory or .gguf (default: embedded SmolLM2-135M)")
    p.add_argument("--served-model-name", default=None,
                   help="the model id /v1/models lists and answers carry (default: the model directory name); "
                        "requests may send any model name")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1, this machine only; there is no TLS, so protect any "
                        "other address with --api-key and a proxy)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--api-key", default=os.environ.get("PYALIGN_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default: $PYALIGN_API_KEY, else no key)")
    e = p.add_argument_group("batching")
    e.add_argument("--max-batch", type=int, default=16,
                   help="requests decoded together (default 16; 1 = one request at a time)")
    e.add_argument("--max-waiting", type=int, default=64,
                   help="requests waiting to join the batch (they join at the next step); more are refused "
                        "with HTTP 429 (default 64)")
    e.add_argument("--max-n", type=int, default=8, help="largest n (answers per request) accepted (default 8)")
    d = p.add_argument_group("defaults for requests that do not set them")
    stepwise = [m for m in available_methods() if get_method(m).kind in ("guided", "reward")]
    d.add_argument("--method", "-m", default="amulet", choices=stepwise,
                   help="method when a request gives a preference but no method (default amulet)")
    d.add_argument("--preference", "-p", default=None,
                   help="preference for requests without one (default none: such requests get the plain model)")
    d.add_argument("--placement", choices=("system", "user"), default="system",
                   help="where the preference sentence goes (default system)")
    d.add_argument("--system-prompt", default=None, help="replace Amulet's system prompt ({preference} marks the "
                                                         "place of the preference sentence)")
    d.add_argument("--max-tokens", type=int, default=128, help="answer length when a request gives none (128)")
    d.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default, as the papers)")
    d.add_argument("--top-p", type=float, default=1.0, help="nucleus mass in (0, 1] (default 1 = off)")
    d.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (default 0 = off)")
    owners: dict = {}
    for name in stepwise:
        for flag, field in get_method(name).Params.cli_flags():
            owners.setdefault(field.name, [flag, field, get_method(name).Params, []])[3].append(name)
    for pname, (flag, field, params_cls, methods) in owners.items():
        d.add_argument(flag, dest="mp_" + pname, metavar=pname.upper(), type=_flag_type(params_cls, pname, field.default),
                       default=None, help=f"{field.metadata.get('help', '')} (method {', '.join(methods)}; "
                                          f"default {field.default!r})")
    o = p.add_argument_group("other")
    o.add_argument("--backend", choices=("torch", "cpp", "cuda", "triton"), default=None,
                   help="force the kernel backend (same as PYALIGN_BACKEND)")
    o.add_argument("--device", default=None, help="torch device for the model (default cpu, or cuda when present)")
    o.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="server log level (default info: one line per request)")
    o.add_argument("--shutdown-timeout", type=float, default=3.0,
                   help="seconds Ctrl-C waits for running answers before closing them (default 3)")


def _flag_type(params_cls, name: str, default):
    """int / float / str for a parameter's flag, from its annotation (Optional unwrapped; a union holding float
    is float) or, if the annotation cannot be read, from its default."""
    import typing
    try:
        kind = typing.get_type_hints(params_cls)[name]
    except Exception:                       # an unresolvable annotation in a plugged-in method
        return type(default) if type(default) in (int, float) else str
    args = [a for a in typing.get_args(kind) if a is not type(None)] if typing.get_origin(kind) is typing.Union \
        else [kind]
    for t in (int, float):
        if args == [t]:
            return t
    return float if float in args else str


def build_defaults(args):
    """The ``ServerDefaults`` from parsed flags (``InvalidArgument`` naming the flag's field when wrong)."""
    from .protocol import ServerDefaults
    params = {k[3:]: v for k, v in vars(args).items() if k.startswith("mp_") and v is not None}
    return ServerDefaults(method=args.method, preference=args.preference, method_params=params,
                          max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p,
                          top_k=args.top_k, placement=args.placement, system_prompt=args.system_prompt,
                          max_n=args.max_n)


def _check_host(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        print(f"pyalign serve: WARNING: binding {host} exposes the server beyond this machine; it has no TLS"
              " and, without --api-key, no authentication", file=sys.stderr)


def run(args) -> int:
    """Load the model, start the engine and serve until Ctrl-C; returns the exit code."""
    try:
        return _run(args)
    except KeyboardInterrupt:       # Ctrl-C while loading, or a second one during shutdown
        print("pyalign serve: interrupted", file=sys.stderr, flush=True)
        return 130


def _run(args) -> int:
    from ..errors import InvalidArgument
    if args.backend:
        os.environ["PYALIGN_BACKEND"] = args.backend
    for name, lo in (("max_batch", 1), ("max_waiting", 1), ("max_n", 1)):
        v = getattr(args, name)
        if v < lo:
            print(f"pyalign serve: --{name.replace('_', '-')} must be >= {lo}, got {v}", file=sys.stderr)
            return 2
    if not 0 <= args.port <= 65535:
        print(f"pyalign serve: --port must lie in 0..65535, got {args.port}", file=sys.stderr)
        return 2
    try:
        defaults = build_defaults(args)
    except InvalidArgument as exc:
        flag = "--" + (exc.param or "?").replace("_", "-")
        print(f"pyalign serve: {flag}: {exc}", file=sys.stderr)
        return 2
    _check_host(args.host)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from ..engine.hf import HFEngine
    from ..models import load_model
    from .app import create_app
    from .background import make_server
    t0 = time.perf_counter()
    print(f"pyalign serve: loading {args.model or 'the embedded default model'} ...", file=sys.stderr, flush=True)
    model, tok = load_model(args.model, device=args.device)
    name = args.served_model_name or _model_name(args.model, model)
    engine = HFEngine(model, tok, max_batch=args.max_batch, max_waiting=args.max_waiting)
    app = create_app(engine, tok, name, defaults, api_key=args.api_key)
    print(f"pyalign serve: {name} loaded in {time.perf_counter() - t0:.1f} s; max batch {args.max_batch}, "
          f"queue {args.max_waiting}; default method {defaults.method}, preference {defaults.preference!r}",
          file=sys.stderr, flush=True)
    server = make_server(app, args.host, args.port, args.log_level, args.shutdown_timeout)
    try:
        server.run()
    except KeyboardInterrupt:       # uvicorn re-raises the Ctrl-C it handled, once the server has stopped
        pass
    print("pyalign serve: stopped", file=sys.stderr, flush=True)
    return 0 if server.started else 1


def _model_name(path, model) -> str:
    if path:
        return os.path.basename(os.path.normpath(str(path))).removesuffix(".gguf")
    name = getattr(getattr(model, "config", None), "_name_or_path", "") or "SmolLM2-135M-Instruct"
    base = os.path.basename(os.path.normpath(name))
    return base if base and not base.startswith("tmp") else "SmolLM2-135M-Instruct"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="pyalign serve", description=DESCRIPTION, epilog=EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))
