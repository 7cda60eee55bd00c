"""The benchmark harness shared by bench/ scripts: a timer, a resumable JSON result file, Markdown tables.

    from harness import timeit, Results, markdown_table
    res = Results(path, meta={...})          # loads what a previous run finished (resume), or starts anew
    if not res.done(key):
        res.put(key, {"us": timeit(fn, seconds)})   # written to disk at once: a killed run loses nothing
    markdown_table(rows, columns)

Timings are medians of repeated calls after warm-up; ratios are always taken against a reference measured in the
same run (never across runs or machines).
"""
from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Callable, Iterable, Optional, Sequence


def timeit(fn: Callable[[], object], seconds: float = 1.0, sync: Optional[Callable[[], None]] = None) -> float:
    """Median of per-call times (µs) over ~``seconds`` of repeated calls, after warm-up."""
    for _ in range(3):
        fn()
    if sync:
        sync()
    t0 = time.perf_counter()
    fn()
    if sync:
        sync()
    one = max(time.perf_counter() - t0, 1e-7)
    reps = max(3, min(2000, int(seconds / one)))
    inner = max(1, min(50, int(reps / 10) or 1))
    times = []
    for _ in range(max(3, reps // inner)):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        if sync:
            sync()
        times.append((time.perf_counter() - t0) / inner)
    times.sort()
    return times[len(times) // 2] * 1e6


class Results:
    """A JSON file of results keyed by configuration; every ``put`` is written atomically (resume after a kill)."""

    def __init__(self, path: pathlib.Path, meta: Optional[dict] = None, force: bool = False):
        self.path = pathlib.Path(path)
        self.data = {} if force or not self.path.exists() else json.loads(self.path.read_text())
        if meta is not None:
            self.data.setdefault("_meta", meta)

    def done(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default=None):
        return self.data.get(key, default)

    def put(self, key: str, value) -> None:
        self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


def markdown_table(rows: Iterable[Sequence], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in
                                                              range(len(columns))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
