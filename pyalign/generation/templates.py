"""Prompt templates: Amulet's official system prompt and preference sentence, PAD's principle prompt, and the
token ids of the preference and base contexts through the tokenizer's chat template.

Amulet (official code, reproduced token for token on the default model, see
``tests/test_golden_conformance.py``)::

    system    = AMULET_SYSTEM_PROMPT with "{preference}" replaced by
                  "Your answer should be {pref} as much as possible."   (preference context)
                  ""                                                     (base context; the space before
                                                                          the placeholder stays)
    messages  = [system, user: prompt]  ->  tokenizer.apply_chat_template(..., add_generation_prompt=True)

``placement="user"`` instead keeps the base system prompt in both contexts and appends the preference
sentence to the user turn (``prompt + "\\n\\n" + sentence``); the base context is then the same as with
``placement="system"``.

Preferences: the 8 named ones of the Amulet paper (``NAMED_PREFERENCES``) or any other non-empty string,
used verbatim as the preference word/phrase ("Your answer should be {phrase} as much as possible.").

PAD (Chen et al.) puts the principle in the prompt of its personalized reward model as
``[Guidelines] … [Principles] {pref} [Instruction] {question}``. The authors' exact wording is not in
``shared/papers``; ``pad_prompt`` is a faithful reconstruction of that three-section form (documented in
``PAD_TEMPLATE``) and is what ``pyalign.reward_guided`` uses.
"""
from __future__ import annotations

from typing import Optional, Sequence

#: Amulet's official system prompt ({preference} is replaced by the preference sentence or by "").
AMULET_SYSTEM_PROMPT = (
    "You are an AI designed to provide the most helpful, clear, and concise responses. Focus on giving actionable "
    "information, ensuring accuracy and detail without overwhelming the user. You should also be patient, polite, "
    "and calm. Avoid unnecessary complexity and always prioritize practical, user-friendly advice. {preference}")

#: Amulet's official preference sentence.
AMULET_PREFERENCE_SENTENCE = "Your answer should be {pref} as much as possible."

#: The 8 preferences of the Amulet paper (used verbatim as the word in the sentence).
NAMED_PREFERENCES = ("creative", "sycophantic", "verbose", "complex", "formal", "pleasant", "concise", "uplifting")

#: PAD's principle prompt: [Guidelines] … [Principles] {pref} [Instruction] {question}.
PAD_TEMPLATE = ("[Guidelines] Your task is to generate a response by considering the following principle.\n"
                "[Principles] {principle}\n"
                "[Instruction] {question}")

PLACEMENTS = ("system", "user")


def resolve_preference(preference) -> str:
    """The preference word/phrase: a named preference (case-insensitive) or any non-empty free text."""
    if not isinstance(preference, str):
        raise TypeError(f"preference must be a string (one of {', '.join(NAMED_PREFERENCES)} or free text), "
                        f"got {type(preference).__name__}")
    p = preference.strip()
    if not p:
        raise ValueError("preference is empty: pass one of "
                         f"{', '.join(NAMED_PREFERENCES)} or a non-empty free-text preference")
    if p.lower() in NAMED_PREFERENCES:
        return p.lower()
    if " " not in p:       # a one-word preference that is a near miss of a named one is almost surely a typo
        import difflib
        close = difflib.get_close_matches(p.lower(), NAMED_PREFERENCES, n=1, cutoff=0.8)
        if close:
            raise ValueError(f"unknown preference {p!r}: did you mean {close[0]!r}? Named preferences are "
                             f"{', '.join(NAMED_PREFERENCES)}; free text is welcome too, but a single word this "
                             "close to a named one is treated as a typo (write a phrase to use it as free text)")
    return p


def preference_sentence(preference: str) -> str:
    """"Your answer should be {pref} as much as possible." for a named or free-text preference."""
    return AMULET_PREFERENCE_SENTENCE.format(pref=resolve_preference(preference))


def pad_principle(preference: str) -> str:
    """The principle text of a preference for PAD's prompt (named preferences become Amulet's sentence)."""
    p = resolve_preference(preference)
    return preference_sentence(p) if p in NAMED_PREFERENCES else p


def pad_prompt(question: str, preference: str) -> str:
    """PAD's prompt: ``[Guidelines] … [Principles] {principle} [Instruction] {question}`` (see PAD_TEMPLATE)."""
    _check_prompt(question, 0)
    return PAD_TEMPLATE.format(principle=pad_principle(preference), question=question)


def _check_prompt(prompt, index: int) -> None:
    if not isinstance(prompt, str):
        raise TypeError(f"prompts[{index}] must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError(f"prompts[{index}] is empty: every prompt needs some text")


def _system(system_prompt: Optional[str], sentence: str) -> str:
    sp = AMULET_SYSTEM_PROMPT if system_prompt is None else system_prompt
    if "{preference}" in sp:
        return sp.replace("{preference}", sentence)
    if not sentence:
        return sp
    return f"{sp} {sentence}" if sp else sentence


def build_messages(prompt: str, preference: Optional[str] = None, placement: str = "system",
                   system_prompt: Optional[str] = None) -> list[dict]:
    """Chat messages of one context: the preference context when ``preference`` is given, else the base context.

    ``system_prompt`` (default Amulet's) may contain "{preference}"; without it the sentence is appended.
    An empty string ``system_prompt=""`` with no preference gives no system message."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be 'system' or 'user', got {placement!r}")
    sentence = preference_sentence(preference) if preference is not None else ""
    user = prompt
    if placement == "user":
        if sentence:
            user = f"{prompt}\n\n{sentence}"
        sentence = ""
    system = _system(system_prompt, sentence)
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}]


def chat_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of ``messages`` through the tokenizer's chat template, with the generation prompt.

    A tokenizer without a chat template falls back to "{system}\\n\\n{user}\\n" tokenized plainly."""
    if getattr(tokenizer, "chat_template", None):
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if hasattr(out, "keys") and "input_ids" in out:      # transformers 5 returns a BatchEncoding
            out = out["input_ids"]
        if hasattr(out, "tolist"):
            out = out.tolist()
        if out and isinstance(out[0], list):
            out = out[0]
        return [int(t) for t in out]
    text = "\n\n".join(m["content"] for m in messages) + "\n"
    return [int(t) for t in tokenizer(text)["input_ids"]]


def preference_context_ids(tokenizer, prompt: str, preference: str, placement: str = "system",
                           system_prompt: Optional[str] = None) -> list[int]:
    """Token ids of the preference context (Amulet's template by default)."""
    return chat_ids(tokenizer, build_messages(prompt, preference, placement, system_prompt))


def base_context_ids(tokenizer, prompt: str, placement: str = "system",
                     system_prompt: Optional[str] = None) -> list[int]:
    """Token ids of the base context: the same template with an empty preference."""
    return chat_ids(tokenizer, build_messages(prompt, None, placement, system_prompt))


def context_ids(tokenizer, prompts: Sequence[str], preference: Optional[str], placement: str = "system",
                system_prompt: Optional[str] = None) -> tuple[Optional[list[list[int]]], list[list[int]]]:
    """(preference-context ids or None when ``preference`` is None, base-context ids), one list per prompt."""
    for i, p in enumerate(prompts):
        _check_prompt(p, i)
    base = [base_context_ids(tokenizer, p, placement, system_prompt) for p in prompts]
    if preference is None:
        return None, base
    pref = [preference_context_ids(tokenizer, p, preference, placement, system_prompt) for p in prompts]
    return pref, base
