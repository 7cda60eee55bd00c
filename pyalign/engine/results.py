"""What every engine returns per answer (the HF loop, vLLM, the server's completions)."""
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass
class GenerationResult:
    """One answer: ``token_ids`` are the new tokens (a final EOS included, as Hugging Face returns it); ``text`` is
    decoded without special tokens and, on a stop string, ends just before it; ``logprobs`` are the guided
    policy's log-probs of the chosen tokens; ``finish_reason`` is "eos", "stop" or "length"; ``timings`` holds
    prefill_s, decode_s, total_s, tokens_per_s (new tokens after the first / decode_s) and ms_per_token."""
    prompt: object
    preference: Optional[object]
    method: str
    text: str
    token_ids: list
    logprobs: list
    finish_reason: str
    num_prompt_tokens: int
    timings: dict

    def to_json(self) -> dict:
        """A JSON-ready dict (``pyalign generate --json`` prints one per line)."""
        d = dataclasses.asdict(self)
        d["question"] = d.pop("prompt")
        return d
