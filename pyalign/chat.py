"""Chat rendering: chat messages -> token ids, the one way every layer does it.

Bottom layer (imports nothing from ``pyalign``). Used by the prompt templates (``pyalign.preferences``), the
scorers (pairwise judge, Hugging Face reward models) and PersRM training, so that a prompt is tokenized the
same way wherever it is built::

    ids = render_chat(tokenizer, [{"role": "system", "content": ...}, {"role": "user", "content": ...}])

With a chat template: ``tokenizer.apply_chat_template(messages, add_generation_prompt=..., tokenize=True)``
(special tokens come from the template itself). Without one (plain LMs, BERT-style classifiers): the contents
joined by a blank line, ``"\\n\\n".join(contents) + ("\\n" if add_generation_prompt else "")``, tokenized with
the tokenizer's own special tokens (BOS, or [CLS] … [SEP]).
"""
from __future__ import annotations

ROLES = ("system", "user", "assistant")


def check_messages(messages, name: str = "messages") -> list[dict]:
    """``messages`` as a list of ``{"role", "content"}`` dicts (roles system/user/assistant, string contents);
    a ``TypeError``/``ValueError`` naming ``name[i]`` otherwise."""
    if not isinstance(messages, (list, tuple)):
        raise TypeError(f"{name} must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}")
    if not messages:
        raise ValueError(f"{name} is an empty list: give at least one user message")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise TypeError(f"{name}[{i}] must be a dict with 'role' and 'content', got {type(m).__name__}")
        if m.get("role") not in ROLES:
            raise ValueError(f"{name}[{i}]['role'] must be one of {', '.join(ROLES)}, got {m.get('role')!r}")
        if not isinstance(m.get("content"), str):
            raise TypeError(f"{name}[{i}]['content'] must be a string, got {type(m.get('content')).__name__}")
    return list(messages)


def _as_id_list(out) -> list[int]:
    if hasattr(out, "keys") and "input_ids" in out:      # transformers 5 returns a BatchEncoding
        out = out["input_ids"]
    if hasattr(out, "tolist"):
        out = out.tolist()
    if out and isinstance(out[0], list):
        out = out[0]
    return [int(t) for t in out]


def render_chat(tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of ``messages`` through the tokenizer's chat template.

    ``add_generation_prompt=True`` ends with the assistant header (a prompt to continue); ``False`` renders the
    messages as a finished conversation (a (prompt, response) pair for a reward model). A tokenizer without a
    chat template falls back to ``"\\n\\n".join(contents) + "\\n"`` (no trailing newline without the generation
    prompt), tokenized with its special tokens."""
    msgs = check_messages(messages)
    if getattr(tokenizer, "chat_template", None):
        out = tokenizer.apply_chat_template(msgs, add_generation_prompt=add_generation_prompt, tokenize=True)
        return _as_id_list(out)
    text = "\n\n".join(m["content"] for m in msgs) + ("\n" if add_generation_prompt else "")
    return _as_id_list(tokenizer(text)["input_ids"])
