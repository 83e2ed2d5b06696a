"""Shared test fixtures."""

from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real speech); tests using it skip where a clone has no ``../shared``."""
    if not (SHARED_DATA / "real" / "trials.txt").exists():
        pytest.skip(f"real speech test data not found at {SHARED_DATA} (only present beside the project's own checkout)")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
