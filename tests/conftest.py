"""Shared fixtures: an isolated, offline, quiet environment and tiny generated datasets."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Before anything imports Prefect: never touch the user's ~/.prefect, never phone home.
_PREFECT_HOME = tempfile.mkdtemp(prefix="living-things-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("LIVING_THINGS_CACHE", tempfile.mkdtemp(prefix="living-things-cache-"))

from tasks.data.sample import generate_sample  # noqa: E402
from tests.helpers import TINY  # noqa: E402


@pytest.fixture(scope="session")
def tiny_sample_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Kaggle-layout sample (300 labelled + 100 test images), generated once per session."""
    return generate_sample(tmp_path_factory.mktemp("tiny") / "data", TINY)


@pytest.fixture()
def tiny_sample(tiny_sample_master: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny sample that a test may damage."""
    return Path(shutil.copytree(tiny_sample_master, tmp_path / "data"))


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (isolated database) for all flow tests of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
