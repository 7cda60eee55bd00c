"""Decoding: the shared KV-cached context batch, methods, the generate() loop and HF integration."""
