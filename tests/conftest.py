"""Shared fixtures: paths to the real datasets in ../shared/data and quiet TensorFlow logging."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("KERAS_LLM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_data_path(*parts):
    """Returns ../shared/data/<parts>, skipping the test if the shared datasets are not present."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared dataset not found: {path}")
    return path


@pytest.fixture
def tiny_shakespeare_dir():
    return shared_data_path("tinyshakespeare")
