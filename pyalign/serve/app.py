"""The ASGI app of ``pyalign serve`` (Starlette): OpenAI-compatible endpoints over one ``EngineRunner``.

    POST /v1/chat/completions   POST /v1/completions   GET /v1/models   GET /health

Streaming answers are server-sent events in OpenAI's chunk format ending with ``data: [DONE]``. A client that
disconnects (streaming or not) has its engine rows cancelled. Errors use OpenAI's JSON shape: 400 for bad input
(``param`` names the field), 401 for a wrong API key, 404/405 for unknown routes, 413 for an oversized body,
429 when the engine's queue is full, 500 when the engine fails on a request, 503 while it is not running.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import time
from typing import Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from . import protocol
from .protocol import APIError, Choice, ServerDefaults
from .runner import EngineFailure, EngineRunner

log = logging.getLogger("pyalign.serve")
MAX_BODY_BYTES = 4 * 1024 * 1024


def _error_response(err: APIError) -> JSONResponse:
    headers = {"Retry-After": "1"} if err.status in (429, 503) else None
    return JSONResponse(err.to_json(), status_code=err.status, headers=headers)


def _sse(obj) -> str:
    return "data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n\n"


class _EventStream(StreamingResponse):
    """An SSE response that cancels its engine requests however it ends (finished, disconnect, shutdown)."""

    def __init__(self, content, streams):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.streams = streams

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            for s in self.streams:
                s.close()


async def _events(streams):
    """(stream, event) of every engine request of one HTTP request, in arrival order, until all finish."""
    by_rid = {s.rid: s for s in streams}
    pending = set(by_rid)
    queue = streams[0].queue
    while pending:
        item = await queue.get()
        if isinstance(item, BaseException):
            raise item
        stream = by_rid.get(item.request_id)
        if stream is None:
            continue
        if item.finish_reason is not None:
            pending.discard(item.request_id)
            stream.finished = True
            if item.finish_reason == "error":
                raise EngineFailure(item.error or "the engine failed on this request")
            if item.finish_reason == "cancelled":
                raise EngineFailure("the request was cancelled by the engine")
        yield stream, item


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def create_app(engine, tokenizer, model_name: str, defaults: Optional[ServerDefaults] = None,
               api_key: Optional[str] = None, runner: Optional[EngineRunner] = None) -> Starlette:
    """The app serving ``engine`` (an ``HFEngine``) as ``model_name``; the engine thread runs for the app's
    lifespan. ``api_key``: when set, requests must send ``Authorization: Bearer <api_key>``."""
    defaults = defaults or ServerDefaults()
    runner = runner or EngineRunner(engine)
    started = int(time.time())

    @functools.lru_cache(maxsize=65536)
    def token_text(token_id: int) -> str:
        return tokenizer.decode([token_id])

    def logprob_entry(req, ev):
        if not req.logprobs or ev.token_id is None or ev.token_id < 0 or ev.finish_reason == "eos":
            return None
        return (token_text(int(ev.token_id)), float(ev.logprob))

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        got = request.headers.get("authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {api_key}".encode()):
            raise APIError("missing or wrong API key: send the header 'Authorization: Bearer <key>' with the "
                           "server's --api-key", None, 401, "invalid_request_error", "invalid_api_key")

    async def read_json(request: Request):
        chunks, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > MAX_BODY_BYTES:
                raise APIError(f"the request body is larger than {MAX_BODY_BYTES // 2**20} MiB", "body", 413)
            chunks.append(part)
        raw = b"".join(chunks)
        if not raw.strip():
            raise APIError("the request body is empty: send a JSON object", "body")
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise APIError(f"the request body is not valid JSON: {exc}", "body") from exc

    async def stream_body(req, streams, rid: str, created: int):
        index = {s.rid: sub.index for s, sub in zip(streams, req.submissions)}
        choices = {s.rid: Choice(index=index[s.rid]) for s in streams}
        if req.kind == "chat":
            for s in streams:
                yield _sse(protocol.chunk(req, rid, model_name, created, index[s.rid], role=True))
        try:
            async for s, ev in _events(streams):
                c = choices[s.rid]
                entry = logprob_entry(req, ev)
                if ev.text or entry is not None:
                    yield _sse(protocol.chunk(req, rid, model_name, created, c.index, text=ev.text,
                                              tokens=[entry] if entry else None, text_offset=len(c.text)))
                    c.text += ev.text
                if ev.finish_reason is not None:
                    c.finish_reason, c.num_prompt_tokens = ev.finish_reason, ev.num_prompt_tokens
                    c.num_generated = ev.num_generated
                    yield _sse(protocol.chunk(req, rid, model_name, created, c.index,
                                              finish_reason=ev.finish_reason))
            if req.include_usage:
                yield _sse(protocol.usage_chunk(req, rid, model_name, created, list(choices.values())))
            yield "data: [DONE]\n\n"
        except EngineFailure as exc:
            log.error("request %s failed: %s", rid, exc)
            yield _sse({"error": {"message": str(exc), "type": "server_error", "param": None, "code": None}})

    async def collect(req, streams, rid: str, created: int, request: Request):
        index = {s.rid: sub.index for s, sub in zip(streams, req.submissions)}
        choices = {s.rid: Choice(index=index[s.rid]) for s in streams}

        async def run():
            async for s, ev in _events(streams):
                c = choices[s.rid]
                c.text += ev.text
                entry = logprob_entry(req, ev)
                if entry is not None:
                    c.tokens.append(entry)
                if ev.finish_reason is not None:
                    c.finish_reason, c.num_prompt_tokens = ev.finish_reason, ev.num_prompt_tokens
                    c.num_generated = ev.num_generated

        work = asyncio.ensure_future(run())
        gone = asyncio.ensure_future(_wait_disconnect(request))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():         # the client went away: free its rows, answer no one
                log.info("client of %s disconnected; its requests are cancelled", rid)
                return JSONResponse({"error": {"message": "client disconnected", "type": "invalid_request_error",
                                               "param": None, "code": None}}, status_code=499)
            try:
                work.result()
            except EngineFailure as exc:
                raise APIError(str(exc), None, exc.status, "server_error") from exc
            return JSONResponse(protocol.response(req, rid, model_name, list(choices.values()), created))
        finally:
            for t in (work, gone):
                t.cancel()
            for s in streams:
                s.close()

    async def generate(request: Request, kind: str):
        check_key(request)
        req = protocol.parse_request(await read_json(request), kind, defaults)
        try:
            streams = await runner.submit_all(req.submissions)
        except APIError as exc:
            if kind == "chat" and exc.param == "prompt":      # the engine's name for the prompt of a chat
                exc.param = "messages"
            raise
        rid, created = protocol.new_id(kind), int(time.time())
        if req.stream:
            return _EventStream(stream_body(req, streams, rid, created), streams)
        return await collect(req, streams, rid, created, request)

    async def chat(request: Request):
        return await generate(request, "chat")

    async def completions(request: Request):
        return await generate(request, "completion")

    async def models(request: Request):
        check_key(request)
        return JSONResponse({"object": "list", "data": [
            {"id": model_name, "object": "model", "created": started, "owned_by": "pyalign"}]})

    async def health(request: Request):
        if not runner.alive:
            return JSONResponse({"status": "unavailable", "reason": "the engine thread is not running"}, 503)
        return JSONResponse({"status": "ok", "model": model_name, "requests": len(runner.streams),
                             "steps": runner.steps, "step_failures": runner.failures})

    async def on_api_error(request: Request, exc: APIError):
        return _error_response(exc)

    async def on_http_error(request: Request, exc: HTTPException):
        kind = "not_found" if exc.status_code == 404 else None
        msg = (f"no route {request.method} {request.url.path}; the server offers POST /v1/chat/completions, "
               "POST /v1/completions, GET /v1/models and GET /health")
        return _error_response(APIError(msg if exc.status_code in (404, 405) else str(exc.detail), None,
                                        exc.status_code, "invalid_request_error", kind))

    async def on_error(request: Request, exc: Exception):
        log.exception("internal error on %s", request.url.path)
        return _error_response(APIError(f"internal server error: {type(exc).__name__}: {exc}", None, 500,
                                        "server_error"))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        runner.start()
        log.info("pyalign serve: engine thread started (model %s)", model_name)
        try:
            yield
        finally:
            await runner.stop()
            log.info("pyalign serve: engine thread stopped")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                            Route("/v1/completions", completions, methods=["POST"]),
                            Route("/v1/models", models, methods=["GET"]),
                            Route("/health", health, methods=["GET"])],
                    exception_handlers={APIError: on_api_error, HTTPException: on_http_error, Exception: on_error},
                    lifespan=lifespan)
    app.state.runner = runner
    app.state.defaults = defaults
    return app
