"""Running the app: ``GracefulServer`` (uvicorn, ending open answers cleanly on Ctrl-C) and ``serve_in_thread``
(a background server on a free loopback port, for tests, benchmarks and notebooks)::

    with serve_in_thread(app) as base_url:          # "http://127.0.0.1:PORT/v1"
        client = openai.OpenAI(base_url=base_url, api_key="none")
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time

import uvicorn


class GracefulServer(uvicorn.Server):
    """uvicorn's server, plus: on shutdown (Ctrl-C) the app's runner refuses new requests, lets running answers
    finish for ``grace`` seconds, then ends the rest with a 'shutting down' error (a last SSE event, or HTTP 503),
    so every connection closes by itself before uvicorn would cancel it."""

    def __init__(self, config: uvicorn.Config, grace: float = 3.0):
        super().__init__(config)
        self.grace = grace

    async def shutdown(self, sockets=None) -> None:
        runner = getattr(getattr(self.config.app, "state", None), "runner", None)
        if runner is not None:
            await runner.drain(self.grace)
        await super().shutdown(sockets)


def make_server(app, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
                grace: float = 3.0) -> GracefulServer:
    """A ``GracefulServer`` for ``app`` (h11, lifespan on; uvicorn's own deadline a few seconds after ``grace``)."""
    config = uvicorn.Config(app, host=host, port=port, http="h11", lifespan="on", log_level=log_level,
                            timeout_graceful_shutdown=grace + 5.0)
    return GracefulServer(config, grace)


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 60.0,
                    log_level: str = "warning", grace: float = 1.0):
    """Serve ``app`` on ``host:port`` (0: a free port, bound before the server starts, so no race) in a daemon
    thread until the block exits; yields the OpenAI base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    server = make_server(app, host, port, log_level, grace)
    errors = []

    def target():
        try:
            server.run(sockets=[sock])
        except BaseException as exc:                    # reported to the caller below
            errors.append(exc)

    thread = threading.Thread(target=target, name="pyalign-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if errors or not thread.is_alive():
            sock.close()
            raise RuntimeError(f"the server did not start: {errors[0] if errors else 'its thread ended'}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"the server did not start within {startup_timeout} s")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(grace + 30)
        sock.close()
