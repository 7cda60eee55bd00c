"""PersRM preference pairs: JSONL lines ``{"prompt", "chosen", "rejected", "preference"}``.

``preference`` is one preference (named or free text) or a list of preference dimensions; an optional
``weights`` list (one per dimension, default all 1) gives w_p of the loss. Errors name the file and line.
"""
from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field
from typing import Union

REQUIRED = ("prompt", "chosen", "rejected", "preference")


@dataclass
class Pair:
    prompt: str
    chosen: str
    rejected: str
    preferences: list
    weights: list = field(default_factory=list)


def parse_pair(obj, where: str) -> Pair:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object with fields {', '.join(REQUIRED)}")
    missing = [k for k in REQUIRED if k not in obj or obj[k] is None]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)} (each line needs {', '.join(REQUIRED)})")
    for k in ("prompt", "chosen", "rejected"):
        if not isinstance(obj[k], str) or not obj[k].strip():
            raise ValueError(f"{where}: field {k!r} must be a non-empty string")
    prefs = obj["preference"] if isinstance(obj["preference"], list) else [obj["preference"]]
    if not prefs or not all(isinstance(p, str) and p.strip() for p in prefs):
        raise ValueError(f"{where}: 'preference' must be a non-empty string or a list of them")
    weights = obj.get("weights", [1.0] * len(prefs))
    if not isinstance(weights, list) or len(weights) != len(prefs):
        raise ValueError(f"{where}: 'weights' must be a list with one number per preference ({len(prefs)})")
    try:
        weights = [float(w) for w in weights]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: 'weights' must be numbers") from None
    return Pair(obj["prompt"], obj["chosen"], obj["rejected"], [p.strip() for p in prefs], weights)


def load_pairs(path: Union[str, pathlib.Path]) -> list:
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"pairs file {str(path)!r} does not exist")
    pairs = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            pairs.append(parse_pair(obj, f"{path}:{n}"))
    if not pairs:
        raise ValueError(f"{path}: no pairs (the file is empty)")
    return pairs


def write_pairs(pairs, path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for p in pairs:
            obj = p if isinstance(p, dict) else {"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected,
                                                 "preference": p.preferences[0] if len(p.preferences) == 1
                                                 else p.preferences, "weights": p.weights}
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
