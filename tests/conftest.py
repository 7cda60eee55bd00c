"""Shared fixtures. Markers: ``model`` tests load the embedded default model (SmolLM2-135M, a few seconds
once it is cached); everything else uses tiny random models built in code or plain tensors."""
from __future__ import annotations

import os
import pathlib

import pytest
import torch

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_configure(config):
    config.addinivalue_line("markers", "model: loads the embedded default model (SmolLM2-135M-Instruct)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    if not SHARED.exists():
        pytest.skip(f"../shared not found at {SHARED}")
    return SHARED
