"""Question sets and preferences for evaluation.

A question set is a file:
- a JSON list of objects with a ``question`` or ``prompt`` field (``instruction``, ``text`` and ``input`` are
  accepted too) and optionally an ``index`` / ``id`` (Amulet's ``{index, question}``, PAD's ``{id, prompt}``);
- a JSON list of strings;
- JSONL: one such object (or string) per line.
Short names resolve to the shipped sets: ``helpsteer``, ``ultrachat``, ``personal``, ``koala`` (looked up
in ``$PYALIGN_DATA``, ``pyalign/data/`` and ``../shared/data/`` of the repository).

Preferences (records in ``pyalign.preferences``): Amulet's 8 named ones (creative, sycophantic, verbose,
complex, formal, pleasant, concise, uplifting), PAD's three dimensions (labels helpful, harmless, humor; passed
to the methods as the free text of their record: "humorous" for humor), or any free text.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Optional, Sequence, Union

from ..preferences import NAMED_PREFERENCES, PAD_PREFERENCES, Preference, get_preference  # noqa: F401

QUESTION_FIELDS = ("question", "prompt", "instruction", "text", "input")
ID_FIELDS = ("index", "id", "idx", "question_id")

ALIASES = {
    "helpsteer": "amulet_HelpSteer_train.json",
    "ultrachat": "amulet_UltraFeedback_ultrachat.json",
    "personal": "amulet_personal_preference_eval_preference_data.json",
    "koala": "pad_koala_eval_50.json",
}

#: Amulet's 8 preference labels, in the paper's order.
AMULET_PREFERENCES = tuple(NAMED_PREFERENCES)
# PAD_PREFERENCES (from pyalign.preferences): PAD's dimensions, label -> record (``name``: the methods' free text)


@dataclasses.dataclass(frozen=True)
class Question:
    dataset: str
    id: str
    text: str


def data_dirs() -> list[pathlib.Path]:
    here = pathlib.Path(__file__).resolve()
    dirs = []
    if os.environ.get("PYALIGN_DATA"):
        dirs.append(pathlib.Path(os.environ["PYALIGN_DATA"]))
    dirs += [here.parents[1] / "data", here.parents[2].parent / "shared" / "data", pathlib.Path.cwd() / "data"]
    return dirs


def resolve_dataset(spec: Union[str, pathlib.Path]) -> pathlib.Path:
    p = pathlib.Path(spec).expanduser()
    if p.exists():
        return p
    name = ALIASES.get(str(spec).lower())
    if name:
        for d in data_dirs():
            if (d / name).exists():
                return d / name
    raise FileNotFoundError(f"question set {str(spec)!r} not found: pass a JSON/JSONL file or one of "
                            f"{', '.join(ALIASES)} (searched {', '.join(str(d) for d in data_dirs())})")


def dataset_name(path: Union[str, pathlib.Path]) -> str:
    stem = pathlib.Path(path).name
    for alias, fname in ALIASES.items():
        if stem == fname:
            return alias
    for suffix in (".jsonl", ".json"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _question_of(obj, where: str) -> tuple[Optional[str], str]:
    if isinstance(obj, str):
        return None, obj
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object with a 'question' or 'prompt' field, got {type(obj).__name__}")
    for f in QUESTION_FIELDS:
        if isinstance(obj.get(f), str):
            qid = next((str(obj[k]) for k in ID_FIELDS if k in obj and obj[k] is not None), None)
            return qid, obj[f]
    raise ValueError(f"{where}: no question field (one of {', '.join(QUESTION_FIELDS)}) in {sorted(obj)}")


def load_questions(spec: Union[str, pathlib.Path], limit: Optional[int] = None, offset: int = 0,
                   name: Optional[str] = None) -> list[Question]:
    """The questions of a set, in file order (``offset``/``limit`` select a slice). Ids come from the file's
    ``index``/``id`` field, else the position."""
    path = resolve_dataset(spec)
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    items: list = []
    if stripped.startswith("["):
        items = json.loads(text)
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None
    ds = name or dataset_name(path)
    out, seen = [], set()
    for i, obj in enumerate(items):
        qid, q = _question_of(obj, f"{path} item {i}")
        qid = qid if qid is not None else str(i)
        if qid in seen:
            qid = f"{qid}#{i}"
        seen.add(qid)
        if q.strip():
            out.append(Question(ds, qid, q))
    out = out[offset:]
    return out[:limit] if limit is not None else out


def parse_preferences(spec: Union[str, Sequence[str]]) -> list[str]:
    """Comma-separated preferences (a Python list is taken as is). PAD's ``humor`` becomes "humorous";
    other names and free text pass through; use ``;`` as the separator when a free-text preference has commas."""
    if isinstance(spec, str):
        sep = ";" if ";" in spec else ","
        parts = [p.strip() for p in spec.split(sep)]
    else:
        parts = [str(p).strip() for p in spec]
    parts = [p for p in parts if p]
    if not parts:
        raise ValueError("no preference given: pass e.g. --preferences concise,verbose")
    return parts


def preference_record(pref: str) -> Preference:
    """The record of a preference label (PAD's labels map to their dimension's record)."""
    dim = PAD_PREFERENCES.get(pref.lower()) if isinstance(pref, str) else None
    return dim if dim is not None else get_preference(pref)


def preference_text(pref: str) -> str:
    """The phrase given to the decoding methods for a preference label."""
    return preference_record(pref).name


def preference_sentence(pref: str) -> str:
    """The instruction sentence a method puts in its prompt (used to detect answers that echo it)."""
    return preference_record(pref).sentence
