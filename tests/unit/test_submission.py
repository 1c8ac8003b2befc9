"""The submission is checked before it is published and never half-written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasks.results.submission import SubmissionError, build_submission, publish_submission

FILES = [f"{i:040x}.jpg" for i in range(5)]


def publish(frame: pd.DataFrame, path: Path) -> Path:
    return publish_submission(frame, path, FILES, "coarse", 8)


def test_good_submission_is_written_with_kaggle_header(tmp_path: Path) -> None:
    path = publish(build_submission(FILES, [0, 7, 3, 4, 1], "coarse"), tmp_path / "submission.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "filename,coarse"
    assert lines[1] == f"{FILES[0]},0" and len(lines) == 6


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (build_submission(FILES[:4], [0, 1, 2, 3], "coarse"), "missing"),
        (build_submission(FILES + FILES[:1], [0, 1, 2, 3, 4, 0], "coarse"), "duplicated"),
        (build_submission(FILES, [0, 1, 2, 3, 8], "coarse"), "not an integer in 0..7"),
        (build_submission(FILES, [0, 1, -1, 3, 4], "coarse"), "not an integer in 0..7"),
        (build_submission(FILES, [0, 1, 2, 3, 4], "fine"), "expected filename,coarse"),
        (build_submission(FILES[:4] + ["x.jpg"], [0, 1, 2, 3, 4], "coarse"), "not in test.csv"),
    ],
)
def test_bad_submission_is_refused_and_previous_file_kept(tmp_path: Path, frame: pd.DataFrame, problem: str) -> None:
    path = publish(build_submission(FILES, [1, 1, 1, 1, 1], "coarse"), tmp_path / "submission.csv")
    before = path.read_bytes()
    with pytest.raises(SubmissionError, match=problem):
        publish(frame, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]  # no temp files left behind
