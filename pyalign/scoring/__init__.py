"""The scoring layer: the scorers shared by the reward-guided methods and the evaluation.

* ``SentenceEncoder`` / ``shared_encoder`` -- the MiniLM sentence encoder (embedding reward, coherence)
* ``vader_compound`` -- VADER sentiment (sentiment reward, sentiment metric)
* ``SequenceClassifier`` -- a Hugging Face sequence-classification reward model (ARGS/PANDA reward, reward metric)
* ``render_chat`` -- chat messages -> token ids (from ``pyalign.chat``)

Imports nothing above it (no methods, engines, generation or evaluation): only ``pyalign.chat``.
"""
from ..chat import render_chat  # noqa: F401
from .classifier import SequenceClassifier, parse_head  # noqa: F401
from .embeddings import SentenceEncoder, minilm_path, shared_encoder  # noqa: F401
from .sentiment import vader, vader_compound  # noqa: F401
