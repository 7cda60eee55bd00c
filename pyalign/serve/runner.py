"""The engine thread and its bridge to asyncio.

One thread owns the model: it loops ``engine.wait_for_work`` → ``engine.step()`` and hands each step's events to
the event loop in one ``call_soon_threadsafe``; every request reads its own ``asyncio.Queue``. Cancellations
(a client that went away) are queued and applied by the engine thread between steps, so the event loop never
waits on a step. Submission runs in a worker thread (it tokenizes and validates) and maps the engine's errors to
HTTP: ``InvalidArgument`` → 400 naming the field, ``Overloaded`` → 429.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
import traceback
import uuid
from typing import Optional

from ..errors import InvalidArgument, Overloaded
from .protocol import APIError, invalid

log = logging.getLogger("pyalign.serve")


class EngineFailure(Exception):
    """The engine could not finish a request (its step raised, or it reported an error): HTTP 500."""
    status = 500


class ShuttingDown(EngineFailure):
    """The server stopped before the request finished: HTTP 503."""
    status = 503


class RequestStream:
    """The events of one engine request, in order; iterate until the finishing event."""

    def __init__(self, runner: "EngineRunner", rid: str, queue: Optional[asyncio.Queue] = None):
        self.runner, self.rid = runner, rid
        self.queue: asyncio.Queue = asyncio.Queue() if queue is None else queue   # may be shared by n streams
        self.finished = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.finished:
            raise StopAsyncIteration
        ev = await self.queue.get()
        if isinstance(ev, BaseException):
            self.finished = True
            raise ev
        if ev.finish_reason is not None:
            self.finished = True
            if ev.finish_reason == "error":
                raise EngineFailure(ev.error or "the engine failed on this request")
        return ev

    def close(self) -> None:
        """Stop the request if it is still running (its rows leave the batch at the next step)."""
        if not self.finished:
            self.finished = True
            self.runner.cancel(self.rid)


class EngineRunner:
    """Runs ``engine.step()`` on a dedicated thread and routes events to ``RequestStream``s."""

    def __init__(self, engine, idle_wait: float = 0.05):
        self.engine = engine
        self.idle_wait = idle_wait
        self.streams: dict[str, RequestStream] = {}
        self._cancels: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.closing = False
        self.steps = 0
        self.failures = 0

    # ----------------------------------------------------------------------------- lifecycle (event loop)
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pyalign-engine", daemon=True)
        self._thread.start()

    async def drain(self, grace: float) -> None:
        """Refuse new requests (503), give running ones ``grace`` seconds to finish, then end the rest (their
        clients get a 'shutting down' error) and free their rows."""
        self.closing = True
        deadline = time.monotonic() + grace
        while self.streams and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.streams:
            log.info("shutting down: ending %d unfinished request(s)", len(self.streams))
        self._fail_all(ShuttingDown("the server is shutting down; retry against a running server"), cancel=True)

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop the engine thread after its current step; pending requests end with an error."""
        self.closing = True
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout)
        self._fail_all(ShuttingDown("the server is shutting down; retry against a running server"))

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ----------------------------------------------------------------------------- requests (event loop)
    async def submit(self, prompt, queue: Optional[asyncio.Queue] = None, **kwargs) -> RequestStream:
        """Queue one engine request; its stream (reading ``queue``, a new one by default) is registered before the
        engine can emit for it."""
        if self.closing or not self.alive:
            raise APIError("the server is shutting down (or its engine is not running); retry later", None, 503,
                           "server_error", "unavailable")
        rid = "req-" + uuid.uuid4().hex
        stream = RequestStream(self, rid, queue)
        self.streams[rid] = stream
        work = asyncio.ensure_future(asyncio.to_thread(self.engine.submit, prompt, request_id=rid, **kwargs))
        try:
            got = await asyncio.shield(work)
        except asyncio.CancelledError:      # the client left while the engine was taking the request
            self.streams.pop(rid, None)
            work.add_done_callback(lambda f: None if f.cancelled() or f.exception() is not None
                                   else self.cancel(f.result()))
            raise
        except InvalidArgument as exc:
            self.streams.pop(rid, None)
            raise invalid(exc) from exc
        except Overloaded as exc:
            self.streams.pop(rid, None)
            raise APIError(f"the server is busy ({exc}); retry in a moment", None, 429, "rate_limit_exceeded",
                           "overloaded") from exc
        except (TypeError, ValueError) as exc:
            self.streams.pop(rid, None)
            raise APIError(str(exc), None) from exc
        except BaseException:
            self.streams.pop(rid, None)
            self.cancel(rid)
            raise
        if got != rid:              # an engine that ignores request_id: route by the id it returned
            self.streams[got] = self.streams.pop(rid)
            stream.rid = got
        return stream

    async def submit_all(self, submissions) -> list:
        """Submit every ``protocol.Submission`` of a request, their events into one shared queue; if one fails the
        others are cancelled."""
        streams, queue = [], asyncio.Queue()
        try:
            for s in submissions:
                streams.append(await self.submit(s.prompt, queue, **s.kwargs))
        except BaseException:
            for st in streams:
                st.close()
            raise
        return streams

    def cancel(self, rid: str) -> None:
        """Forget ``rid`` (event loop) and have the engine thread cancel it before its next step."""
        self.streams.pop(rid, None)
        self._cancels.append(rid)

    # ----------------------------------------------------------------------------- engine thread
    def _run(self) -> None:
        while not self._stop.is_set():
            self._drain_cancels()
            if not self.engine.wait_for_work(self.idle_wait):
                continue
            try:
                events = self.engine.step()
            except Exception as exc:            # a bug or a fault in the model: fail what runs, keep serving
                self.failures += 1
                log.error("engine step failed:\n%s", traceback.format_exc())
                self._post(self._fail_all, EngineFailure(f"the engine step failed: {type(exc).__name__}: {exc}"),
                           True)
                continue
            self.steps += 1
            if events:
                self._post(self._dispatch, events)
        self._drain_cancels()

    def _drain_cancels(self) -> None:
        while self._cancels:
            rid = self._cancels.popleft()
            try:
                self.engine.cancel(rid)
            except Exception:                   # already finished or unknown: nothing to free
                log.debug("cancel %s: %s", rid, traceback.format_exc())

    def _post(self, fn, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:                    # the event loop is closed: the server is gone
            self._stop.set()

    # ----------------------------------------------------------------------------- event loop callbacks
    def _dispatch(self, events) -> None:
        for ev in events:
            stream = self.streams.get(ev.request_id)
            if stream is None:                  # cancelled, or its client went away
                continue
            stream.queue.put_nowait(ev)
            if ev.finish_reason is not None:
                self.streams.pop(ev.request_id, None)

    def _fail_all(self, exc: BaseException, cancel: bool = False) -> None:
        for rid, stream in list(self.streams.items()):
            stream.queue.put_nowait(exc)
            if cancel:
                self._cancels.append(rid)
        self.streams.clear()
