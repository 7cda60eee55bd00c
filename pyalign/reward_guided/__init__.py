"""Reward-guided decoding: PAD (``"pad"``), ARGS (``"args"``) and PANDA (``"panda"``), and their reward models.

Importing this package registers the three methods with ``pyalign.generation.methods`` (``get_method``
imports it lazily). Reward models: ``pyalign.reward_guided.rewards`` (one interface, four kinds: Hugging Face
sequence classifiers, the MiniLM embedding reward, VADER sentiment, the PersRM log-ratio). PersRM training:
``pyalign.persrm``.
"""
from .rewards import (EmbeddingReward, HFSequenceReward, PersRMReward, RewardModel, RewardSession,  # noqa: F401
                      SentimentReward, load_reward)
from .pad import PAD  # noqa: F401  (registers "pad")
from .args import ARGS  # noqa: F401  (registers "args")
from .panda import PANDA, SCHEDULE_SETS, LambdaFn, resolve_lambdas  # noqa: F401  (registers "panda")

__all__ = ["ARGS", "EmbeddingReward", "HFSequenceReward", "LambdaFn", "PAD", "PANDA", "PersRMReward", "RewardModel",
           "RewardSession", "SCHEDULE_SETS", "SentimentReward", "load_reward", "resolve_lambdas"]
