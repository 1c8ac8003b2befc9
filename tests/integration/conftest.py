"""Fixtures of the integration tests: a real Prefect server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import run_prefect_server


@pytest.fixture()
def prefect_api(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """A real `prefect server start` on a free port with its own home; yields (api_url, env, log)."""
    yield from run_prefect_server(tmp_path)
