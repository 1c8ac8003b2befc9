"""The parts of test_kaggle.py that need a Prefect server (moved out of tests/unit, which starts none)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import flows.full
from tasks.kaggle import (
    KaggleCredentialsMissing,
    KaggleError,
    require_credentials,
)
from tests.unit.test_kaggle import KEY, no_env, with_credentials


def test_secret_block_holds_the_credentials(prefect_server: None, tmp_path: Path) -> None:
    from prefect.blocks.system import Secret

    Secret(value={"username": "block-user", "key": KEY}).save("kaggle-test-credentials", overwrite=True)
    found = require_credentials(no_env(tmp_path), secret_block="kaggle-test-credentials")
    assert (found.username, found.key) == ("block-user", KEY)
    with pytest.raises(KaggleCredentialsMissing, match="could not be loaded") as error:
        require_credentials(no_env(tmp_path), secret_block="no-such-block")
    assert KEY not in str(error.value)


def test_ui_triggered_submit_checks_the_client_at_flow_start(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.params import PipelineParams
    from tasks.data.settings import DataSettings
    from tasks.results.settings import KaggleSettings

    with_credentials(monkeypatch)
    monkeypatch.setitem(sys.modules, "kaggle", None)

    def work(*_: Any, **__: Any) -> Any:
        raise AssertionError("the flow started work before checking the Kaggle client")

    monkeypatch.setattr(flows.full, "prepare_sample_task", work)
    out = tmp_path / "out"
    params = PipelineParams(data=DataSettings(output_dir=out), kaggle=KaggleSettings(submit=True))
    with pytest.raises(KaggleError, match=r'pip install -e "\.\[kaggle\]"'):
        flows.full.full_pipeline(params)
    assert not out.exists()
