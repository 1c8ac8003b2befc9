"""A champion that cannot serve a prediction (a model file deleted, a garbled registry line) is one
sentence naming ``champion/`` or the line: before any work on the command line, and again under
the champion lock where a prediction takes its snapshot. No Prefect server is needed here (the
flow's side is in tests/integration/test_predict.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# At collection, not inside a test: Prefect binds its console log handler to the stderr of the
# moment it is first imported, and a test's own capture is closed when the test ends.
from flows.predict import main
from tasks.layout import OutputDir
from tasks.predict.source import PredictionError, check_request, snapshot_champion
from tasks.results.champion import promote_run
from tests.helpers import BEST, write_fake_run


@pytest.fixture()
def output(tmp_path: Path) -> Path:
    """An output directory whose champion is a fake run's best model (``models/<BEST>.keras``)."""
    root = tmp_path / "out"
    assert promote_run(write_fake_run(root / "runs" / "run-1", tmp_path / "data", images=False), root).promote
    return root


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    """A folder with one image file to classify (listing looks at names only)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff")
    return folder


def main_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line ``python -m flows.predict`` prints on stderr before exiting 1."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 1 and len(lines) == 1, lines
    return lines[0]


def test_a_deleted_champion_model_is_named_under_champion(
    output: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    champion = OutputDir(output).champion
    model = champion.models / f"{BEST}.keras"
    assert f"models/{model.name}" in json.loads(champion.champion_record.read_text())["model_files"]
    model.unlink()
    expected = f"the champion in {champion.root} cannot predict: models/{model.name} missing"

    line = main_error(["--images", str(images), "--output-dir", str(output)], capsys)
    assert expected in line and "--model run-1" in line  # the champion's run still has the model
    assert "Traceback" not in line and not OutputDir(output).predictions.exists()  # before any work

    with pytest.raises(PredictionError, match="cannot predict") as caught:  # under the lock, as the flow does
        snapshot_champion(output, tmp_path / "prediction")
    assert expected in str(caught.value)
    assert str(tmp_path / "prediction") not in str(caught.value)  # not the snapshot's copy


def test_a_garbled_registry_line_is_one_sentence(
    output: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = OutputDir(output).registry
    registry.write_text('{"run": "run-0", "decis\n' + registry.read_text(), encoding="utf-8")
    expected = f"{registry} line 1 is not JSON"

    line = main_error(["--images", str(images), "--output-dir", str(output)], capsys)
    assert expected in line and "--model RUN_ID" in line

    with pytest.raises(PredictionError) as caught:
        snapshot_champion(output, tmp_path / "prediction")
    assert expected in str(caught.value)


def test_a_last_line_cut_short_is_left_to_the_recovery(output: Path, tmp_path: Path) -> None:
    """A crash mid-append leaves a last line without its newline: recovery trims it under the lock,
    so the check before the lock does not refuse the prediction."""
    registry = OutputDir(output).registry
    registry.write_text(registry.read_text() + '{"run": "run-2", "deci', encoding="utf-8")
    check_request(output, "champion")
    assert snapshot_champion(output, tmp_path / "prediction").run == "run-1"
    assert registry.read_text().endswith("}\n")


def test_a_run_model_does_not_need_the_champion(output: Path, tmp_path: Path) -> None:
    """--model RUN_ID, the way out the messages offer, reads neither champion/ nor the registry."""
    OutputDir(output).registry.write_text("garbled\n")
    (OutputDir(output).champion.models / f"{BEST}.keras").unlink()
    check_request(output, "run-1")
