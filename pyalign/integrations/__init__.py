"""Integrations of pyalign's decoding methods into other inference engines.

``pyalign.integrations.hf``: Hugging Face ``generate()`` logits processors (see that module).
``pyalign.integrations.vllm``: Amulet, LA, pref and base as paired requests in vLLM's engine (a batch-level
logits processor for both of vLLM's model runners, plus the driver that submits and resubmits the pairs).
Importing this package imports no engine; each submodule imports its engine when it is itself imported.
"""
