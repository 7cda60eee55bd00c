"""``pyalign serve``: an OpenAI-compatible HTTP server over the continuously batched engine.

``protocol`` (request validation, responses and stream chunks), ``runner`` (the engine thread and its asyncio
bridge), ``app`` (the Starlette app: ``create_app(engine, tokenizer, model_name, defaults)``), ``cli`` (the
``pyalign serve`` flags and entry point). Imports nothing heavy until used.
"""
__all__ = ["create_app"]


def create_app(*args, **kwargs):
    """``pyalign.serve.app.create_app`` (imported on first use)."""
    from .app import create_app as _create
    return _create(*args, **kwargs)
