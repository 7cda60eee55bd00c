"""Preferences and the prompts built from them: one ``Preference`` record per preference, one prompt path.

Every reader of a preference reads its record: the prompt templates (here), the rewards of ARGS/PANDA
(opposite, default reward), the evaluation (proxy metric), the report and PersRM pair building (opposite).
Imports only ``pyalign.chat``.

Record of a preference (``get_preference``):

    name          the 8 named preferences of the Amulet paper (case-insensitive), or the free text as given
    sentence      "Your answer should be {name} as much as possible."           (Amulet's official sentence)
    principle     PAD's principle: the sentence for a named preference, the free text itself otherwise
    opposite      the phrase an answer against the preference fits ("long-winded and verbose");
                  "not {name}" for free text
    proxy, sign   the evaluation metric the preference should move and its direction (+1 up, −1 down)
    default_reward  the sequence reward ARGS/PANDA use when none is given ("sentiment" | "embedding")

Templates (``build_messages`` / ``context_ids``), for one prompt (a string, or OpenAI-style chat messages):

* ``"amulet"`` (official code, reproduced token for token on the default model, see
  ``tests/test_golden_conformance.py``)::

      system  = AMULET_SYSTEM_PROMPT with "{preference}" replaced by the sentence  (preference context)
                                                              or by ""             (base context; the space
                                                                                    before it stays)
      messages = [system, user: prompt] -> render_chat(..., add_generation_prompt=True)

  ``placement="user"`` keeps the base system prompt and appends the sentence to the (last) user turn
  (``prompt + "\\n\\n" + sentence``).
* ``"pad"``: PAD's principle prompt ``[Guidelines] … [Principles] {principle} [Instruction] {question}``
  (PAD_TEMPLATE; the authors' exact wording is not released, this is a faithful reconstruction of the paper's
  three-section form). ``placement="user"``: the whole form is the user turn under the base system prompt
  (the paper's form); ``placement="system"``: the guidelines and principle go where Amulet's sentence goes in
  the system prompt and the user turn is ``[Instruction] {question}``.

The base context (``preference=None``) is the same for every template and method: the system prompt with an
empty preference and the plain prompt.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Optional, Union

from .chat import check_messages, render_chat

#: Amulet's official system prompt ({preference} is replaced by the preference sentence or by "").
AMULET_SYSTEM_PROMPT = (
    "You are an AI designed to provide the most helpful, clear, and concise responses. Focus on giving actionable "
    "information, ensuring accuracy and detail without overwhelming the user. You should also be patient, polite, "
    "and calm. Avoid unnecessary complexity and always prioritize practical, user-friendly advice. {preference}")

#: Amulet's official preference sentence.
AMULET_PREFERENCE_SENTENCE = "Your answer should be {pref} as much as possible."

#: PAD's principle prompt: [Guidelines] … [Principles] {principle} [Instruction] {question}.
PAD_GUIDELINES = "[Guidelines] Your task is to generate a response by considering the following principle."
PAD_TEMPLATE = PAD_GUIDELINES + "\n[Principles] {principle}\n[Instruction] {question}"

PLACEMENTS = ("system", "user")
TEMPLATES = ("amulet", "pad")


@dataclasses.dataclass(frozen=True)
class Preference:
    """One preference: what the prompts, rewards, evaluation and PersRM pairs read (see the module docstring)."""
    name: str
    named: bool
    sentence: str
    principle: str
    opposite: Optional[str]
    proxy: Optional[str]
    proxy_sign: int
    default_reward: str


def _record(name: str, named: bool, opposite: Optional[str], proxy: Optional[str] = None, proxy_sign: int = +1,
            default_reward: str = "embedding") -> Preference:
    sentence = AMULET_PREFERENCE_SENTENCE.format(pref=name)
    return Preference(name=name, named=named, sentence=sentence, principle=sentence if named else name,
                      opposite=opposite, proxy=proxy, proxy_sign=proxy_sign, default_reward=default_reward)


#: The 8 preferences of the Amulet paper, in the paper's order. Opposites: the descriptive phrases the
#: embedding reward of ARGS/PANDA has always contrasted with (they also read as a preference: "Your answer
#: should be short and terse as much as possible."). Proxies: length in words, VADER sentiment, distinct-2.
NAMED_PREFERENCES: dict[str, Preference] = {p.name: p for p in (
    _record("creative", True, "conventional, predictable and unimaginative", "distinct_2", +1),
    _record("sycophantic", True, "blunt, critical and disagreeing", "sentiment", +1),
    _record("verbose", True, "short and terse", "length_words", +1),
    _record("complex", True, "simple and plain", "length_words", +1),
    _record("formal", True, "casual and informal"),
    _record("pleasant", True, "unpleasant and rude", "sentiment", +1),
    _record("concise", True, "long-winded and verbose", "length_words", -1),
    _record("uplifting", True, "depressing and discouraging", "sentiment", +1, default_reward="sentiment"),
)}

#: PAD's preference dimensions (evaluation labels -> the free-text preference the methods receive).
PAD_PREFERENCES: dict[str, Preference] = {
    "helpful": _record("helpful", False, "not helpful"),
    "harmless": _record("harmless", False, "not harmless"),
    "humor": _record("humorous", False, "not humorous", "sentiment", +1),
}

# proxies of known free-text preferences, by lower-cased label and name
_FREE_TEXT_PROXY = {k: (p.proxy, p.proxy_sign) for label, p in PAD_PREFERENCES.items() if p.proxy
                    for k in (label, p.name)}


def get_preference(p: Union[str, Preference]) -> Preference:
    """The record of a preference: a named one (case-insensitive), or any non-empty free text (kept verbatim,
    stripped). A single word that is a near miss of a named preference is a typo (``ValueError`` with the
    suggestion); write a phrase to use such a word as free text. A ``Preference`` is returned as is."""
    if isinstance(p, Preference):
        return p
    if not isinstance(p, str):
        raise TypeError(f"preference must be a string (one of {', '.join(NAMED_PREFERENCES)} or free text), "
                        f"got {type(p).__name__}")
    text = p.strip()
    if not text:
        raise ValueError("preference is empty: pass one of "
                         f"{', '.join(NAMED_PREFERENCES)} or a non-empty free-text preference")
    if text.lower() in NAMED_PREFERENCES:
        return NAMED_PREFERENCES[text.lower()]
    if " " not in text:       # a one-word preference that is a near miss of a named one is almost surely a typo
        close = difflib.get_close_matches(text.lower(), list(NAMED_PREFERENCES), n=1, cutoff=0.8)
        if close:
            raise ValueError(f"unknown preference {text!r}: did you mean {close[0]!r}? Named preferences are "
                             f"{', '.join(NAMED_PREFERENCES)}; free text is welcome too, but a single word this "
                             "close to a named one is treated as a typo (write a phrase to use it as free text)")
    proxy, sign = _FREE_TEXT_PROXY.get(text.lower(), (None, +1))
    return _record(text, False, f"not {text}", proxy, sign)


# --------------------------------------------------------------------------------------------- prompts
def _system(system_prompt: Optional[str], text: str) -> str:
    """The system prompt with ``text`` put at "{preference}" (appended after a space when there is none)."""
    sp = AMULET_SYSTEM_PROMPT if system_prompt is None else system_prompt
    if "{preference}" in sp:
        return sp.replace("{preference}", text)
    if not text:
        return sp
    return f"{sp} {text}" if sp else text


def _check_prompt(prompt, name: str = "prompt") -> list[dict]:
    """The prompt as chat messages; errors name the argument."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError(f"{name} is empty: every prompt needs some text")
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, (list, tuple)):
        msgs = check_messages(prompt, name)
        users = [i for i, m in enumerate(msgs) if m["role"] == "user"]
        if not users:
            raise ValueError(f"{name} has no user message: a chat prompt needs at least one user turn")
        if not msgs[users[-1]]["content"].strip():
            raise ValueError(f"{name} is empty: its last user message has no text")
        if sum(m["role"] == "system" for m in msgs) > 1:
            raise ValueError(f"{name} has more than one system message: give at most one")
        return [dict(m) for m in msgs]
    raise TypeError(f"{name} must be a string or a list of chat messages, got {type(prompt).__name__}")


def build_messages(prompt: Union[str, list], preference: Optional[Preference], placement: str = "system",
                   system_prompt: Optional[str] = None, template: str = "amulet") -> list[dict]:
    """Chat messages of one context: the preference context when ``preference`` is given, else the base context.

    ``prompt``: a string (one user turn) or chat messages (system/user/assistant); a system message in them
    replaces the default system prompt (Amulet's) and cannot be combined with ``system_prompt``. The system
    prompt may contain "{preference}"; without it the preference text is appended after a space. An empty
    system prompt with no preference text gives no system message. ``placement="user"`` appends the preference
    to the LAST user turn; ``template="pad"`` writes PAD's principle prompt instead of Amulet's sentence."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be 'system' or 'user', got {placement!r}")
    if template not in TEMPLATES:
        raise ValueError(f"template must be one of {', '.join(map(repr, TEMPLATES))}, got {template!r}")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise TypeError(f"system_prompt must be a string or None, got {type(system_prompt).__name__}")
    msgs = _check_prompt(prompt)
    sys_at = next((i for i, m in enumerate(msgs) if m["role"] == "system"), None)
    if sys_at is not None:
        if system_prompt is not None:
            raise ValueError("the system prompt is given twice (a system message in prompt and system_prompt=): "
                             "pass only one of them")
        system_prompt = msgs.pop(sys_at)["content"]
    last = max(i for i, m in enumerate(msgs) if m["role"] == "user")
    question = msgs[last]["content"]
    in_system = ""
    if preference is not None:
        pref = get_preference(preference)
        if template == "amulet":
            if placement == "system":
                in_system = pref.sentence
            else:
                msgs[last]["content"] = f"{question}\n\n{pref.sentence}"
        elif placement == "system":
            in_system = f"{PAD_GUIDELINES}\n[Principles] {pref.principle}"
            msgs[last]["content"] = f"[Instruction] {question}"
        else:
            msgs[last]["content"] = PAD_TEMPLATE.format(principle=pref.principle, question=question)
    system = _system(system_prompt, in_system)
    return ([{"role": "system", "content": system}] if system else []) + msgs


def context_ids(tokenizer, prompt: Union[str, list], preference: Optional[Preference], placement: str = "system",
                system_prompt: Optional[str] = None,
                template: str = "amulet") -> tuple[Optional[list[int]], list[int]]:
    """(preference-context ids, or None when ``preference`` is None; base-context ids) of ONE prompt."""
    base = render_chat(tokenizer, build_messages(prompt, None, placement, system_prompt, template))
    if preference is None:
        return None, base
    return render_chat(tokenizer, build_messages(prompt, preference, placement, system_prompt, template)), base


def batch_context_ids(tokenizer, prompts, preference: Optional[Preference], placement: str = "system",
                      system_prompt: Optional[str] = None,
                      template: str = "amulet") -> tuple[Optional[list[list[int]]], list[list[int]]]:
    """``context_ids`` of every prompt: (preference ids per prompt or None, base ids per prompt); errors name
    ``prompts[i]``."""
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
        raise TypeError(f"prompts must be a list of prompts, got {type(prompts).__name__}")
    pref_rows, base_rows = [], []
    for i, p in enumerate(prompts):
        _check_prompt(p, f"prompts[{i}]")
        pr, b = context_ids(tokenizer, p, preference, placement, system_prompt, template)
        pref_rows.append(pr)
        base_rows.append(b)
    return (None if preference is None else pref_rows), base_rows
