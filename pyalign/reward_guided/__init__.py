"""Reward models bound to the candidates of reward-guided decoding (ARGS, PANDA; PAD's PersRM).

The methods themselves are step rules in ``pyalign.methods`` (``pad``, ``args``, ``panda``); the scorers they
adapt (MiniLM, VADER, HF classifiers) are ``pyalign.scoring``. PersRM training: ``pyalign.persrm``.
"""
from .rewards import (EmbeddingReward, HFSequenceReward, PersRMReward, RewardModel, RewardSession,  # noqa: F401
                      SentimentReward, load_reward)

__all__ = ["EmbeddingReward", "HFSequenceReward", "PersRMReward", "RewardModel", "RewardSession",
           "SentimentReward", "load_reward"]
