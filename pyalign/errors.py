"""Errors every layer raises for bad input: each names the argument (``param``) and says how to fix it.

``InvalidArgument`` is a ``ValueError`` (existing ``except ValueError`` callers keep working); servers map it to
HTTP 400 with ``param`` as the offending field. ``Overloaded`` means a bounded queue is full: retry later."""
from __future__ import annotations

from typing import Optional


class InvalidArgument(ValueError):
    """Bad input: ``param`` names the argument (e.g. ``"temperature"``, ``"preference"``), the message the fix."""

    def __init__(self, param: Optional[str], message: str):
        super().__init__(message)
        self.param = param


class Overloaded(RuntimeError):
    """A bounded queue is full (too many waiting requests): retry later or raise the limit."""
