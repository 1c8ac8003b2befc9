"""Kaggle download and submit, with the client faked at its boundary (no network, no kaggle package)."""

from __future__ import annotations

import importlib.machinery
import json
import logging
import os
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

import pytest

import flows.full  # noqa: F401  (imported here, not inside a test: Prefect binds its log handler to stderr on import)
from tasks.kaggle import (
    DEFAULT_COMPETITION,
    KaggleCredentials,
    KaggleCredentialsMissing,
    KaggleError,
    create_client,
    download_competition,
    find_credentials,
    require_client,
    require_credentials,
    submit_champion,
    submit_file,
)

KEY = "0123456789abcdef-very-secret-key"
LAYOUT = {
    "info.json": json.dumps({"coarse": ["Aves", "Insecta"], "fine": ["Laridae", "Apidae"]}),
    "train.csv": "filename,fine,coarse\n" + f"{1:040x}.jpg,0,0\n",
    "val.csv": "filename,fine,coarse\n" + f"{2:040x}.jpg,1,1\n",
    "test.csv": "filename,fine,coarse\n" + f"{3:040x}.jpg,0,0\n",
    f"train/{1:040x}.jpg": "jpeg bytes",
    f"val/{2:040x}.jpg": "jpeg bytes",
    f"test/{3:040x}.jpg": "jpeg bytes",
}


def no_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no Kaggle variables and an empty home."""
    return {"HOME": str(tmp_path / "home")}


class FakeKaggle:
    """The two KaggleApi methods we use, recording calls; the download writes a competition zip."""

    def __init__(self, prefix: str = "public/") -> None:
        self.prefix = prefix
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def competition_download_files(
        self, competition: str, path: str | None = None, force: bool = False, quiet: bool = True
    ) -> None:
        self.calls.append(("download", (competition,), {"path": path}))
        with zipfile.ZipFile(Path(path) / f"{competition}.zip", "w") as bundle:
            for name, text in LAYOUT.items():
                bundle.writestr(self.prefix + name, text)

    def competition_submit(self, file_name: str, message: str, competition: str, quiet: bool = False) -> str:
        self.calls.append(("submit", (file_name, message, competition), {}))
        return "Successfully submitted"


def test_credentials_come_from_the_environment_first(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": "file-user", "key": "file-key"}))
    env = {"KAGGLE_USERNAME": "env-user", "KAGGLE_KEY": KEY, "KAGGLE_CONFIG_DIR": str(config)}
    found = find_credentials(env)
    assert (found.username, found.key) == ("env-user", KEY) and "environment" in found.source
    assert KEY not in repr(found) and KEY not in str(found)


def test_kaggle_json_honours_kaggle_config_dir_and_home(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": "file-user", "key": KEY}))
    assert find_credentials({"KAGGLE_CONFIG_DIR": str(config)}).username == "file-user"
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "home-user", "key": KEY}))
    assert find_credentials({"HOME": str(home)}).username == "home-user"


def test_a_malformed_kaggle_json_is_named_but_not_quoted(tmp_path: Path) -> None:
    (tmp_path / "kaggle.json").write_text('{"username": "u", "key": "' + KEY + '"')  # truncated JSON
    with pytest.raises(KaggleCredentialsMissing, match="kaggle.json") as error:
        find_credentials({}, config_dir=tmp_path)
    assert KEY not in str(error.value)


def test_missing_credentials_list_the_three_ways(tmp_path: Path) -> None:
    with pytest.raises(KaggleCredentialsMissing) as error:
        require_credentials(no_env(tmp_path))
    message = str(error.value)
    assert "KAGGLE_USERNAME" in message and "kaggle.json" in message and "Prefect Secret block" in message


@pytest.mark.parametrize("prefix", ["public/", "living-things/public/", "", "living-things/"])
def test_download_unpacks_either_archive_layout(tmp_path: Path, prefix: str) -> None:
    client = FakeKaggle(prefix)
    data_dir = download_competition(tmp_path / "data", client=client)
    assert data_dir == (tmp_path / "data").resolve()
    assert (data_dir / "public" / "info.json").is_file() and (data_dir / "public" / "train" / f"{1:040x}.jpg").is_file()
    assert [c[0] for c in client.calls] == ["download"] and client.calls[0][1] == (DEFAULT_COMPETITION,)
    assert sorted(p.name for p in data_dir.iterdir()) == ["public"]  # no archive or temp folder left
    # A second call finds the data and does not download 150,000 images again.
    download_competition(tmp_path / "data", client=client)
    assert len(client.calls) == 1


def test_an_unexpected_archive_leaves_nothing_behind(tmp_path: Path) -> None:
    class WrongCompetition(FakeKaggle):
        def competition_download_files(self, competition: str, path: str | None = None, **_: Any) -> None:
            with zipfile.ZipFile(Path(path) / "other.zip", "w") as bundle:
                bundle.writestr("sample_submission.csv", "id,target\n")

    with pytest.raises(KaggleError, match="right competition"):
        download_competition(tmp_path / "data", client=WrongCompetition())
    assert list((tmp_path / "data").iterdir()) == []


def test_zip_slip_is_refused(tmp_path: Path) -> None:
    class Malicious(FakeKaggle):
        def competition_download_files(self, competition: str, path: str | None = None, **_: Any) -> None:
            with zipfile.ZipFile(Path(path) / "evil.zip", "w") as bundle:
                bundle.writestr("../../escaped.txt", "gotcha")

    with pytest.raises(KaggleError, match="unsafe path"):
        download_competition(tmp_path / "data", client=Malicious())
    assert not (tmp_path / "escaped.txt").exists()


def test_submit_sends_the_file_with_its_message(tmp_path: Path) -> None:
    path = tmp_path / "submission.csv"
    path.write_text(f"filename,coarse\n{3:040x}.jpg,0\n")
    client = FakeKaggle()
    assert submit_file(path, "run 42: efficientnet_lite0", client=client) == "Successfully submitted"
    assert client.calls == [("submit", (str(path), "run 42: efficientnet_lite0", DEFAULT_COMPETITION), {})]
    with pytest.raises(ValueError, match="message"):
        submit_file(path, "  ", client=client)
    path.write_text("id,label\n1,0\n")
    with pytest.raises(KaggleError, match="header"):
        submit_file(path, "x", client=client)


def test_submit_champion_needs_a_champion(tmp_path: Path) -> None:
    with pytest.raises(KaggleError, match="no champion submission"):
        submit_champion(tmp_path / "outputs", "msg", client=FakeKaggle())
    champion = tmp_path / "outputs" / "champion"
    champion.mkdir(parents=True)
    (champion / "submission.csv").write_text(f"filename,coarse\n{3:040x}.jpg,0\n")
    client = FakeKaggle()
    submit_champion(tmp_path / "outputs", "champion of run 7", client=client)
    assert client.calls[0][1][:2] == (str((champion / "submission.csv").resolve()), "champion of run 7")
    (champion / "champion.json").write_text(
        json.dumps(
            {"run": "20260101-000000-abcdef", "model": "efficientnet_lite0_finetuned", "metrics": {"macro_f1": 0.91234}}
        )
    )
    submit_champion(tmp_path / "outputs", client=client)
    assert (
        client.calls[1][1][1] == "champion from run 20260101-000000-abcdef: efficientnet_lite0_finetuned, "
        "hold-out macro-F1 0.9123"
    )


def install_fake_kaggle_package(monkeypatch: pytest.MonkeyPatch, authenticate: Any) -> type:
    """Put a `kaggle.api.kaggle_api_extended.KaggleApi` into sys.modules, like the real package."""

    class KaggleApi(FakeKaggle):
        seen_env: dict[str, str | None] = {}

        def authenticate(self) -> None:
            authenticate(self)

    extended = types.ModuleType("kaggle.api.kaggle_api_extended")
    extended.KaggleApi = KaggleApi  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kaggle", types.ModuleType("kaggle"))
    monkeypatch.setitem(sys.modules, "kaggle.api", types.ModuleType("kaggle.api"))
    monkeypatch.setitem(sys.modules, "kaggle.api.kaggle_api_extended", extended)
    return KaggleApi


def test_real_client_is_built_lazily_and_the_key_never_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def authenticate(api: Any) -> None:  # the real client reads these variables
        api.seen_env = {"user": os.environ.get("KAGGLE_USERNAME"), "key": os.environ.get("KAGGLE_KEY")}

    install_fake_kaggle_package(monkeypatch, authenticate)
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    config = tmp_path / "config"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": "someone", "key": KEY}))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    caplog.set_level(logging.DEBUG)

    data_dir = download_competition(tmp_path / "data")  # no client given: credentials + lazy import
    path = data_dir / "public" / "test.csv"
    submission = tmp_path / "submission.csv"
    submission.write_text(f"filename,coarse\n{3:040x}.jpg,0\n")
    submit_file(submission, "lazy client")
    api = create_client(require_credentials())
    assert api.seen_env == {"user": "someone", "key": KEY}
    assert "KAGGLE_KEY" not in os.environ and "KAGGLE_USERNAME" not in os.environ  # restored afterwards
    assert path.is_file()
    assert "Kaggle credentials found" in caplog.text
    assert KEY not in caplog.text
    assert all(KEY not in str(record.args) for record in caplog.records)


def test_authentication_errors_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(api: Any) -> None:
        raise RuntimeError(f"401 Unauthorized for key {os.environ['KAGGLE_KEY']}")

    install_fake_kaggle_package(monkeypatch, refuse)
    with pytest.raises(KaggleError, match="authentication failed") as error:
        create_client(KaggleCredentials("someone", KEY))
    assert KEY not in str(error.value) and "***" in str(error.value)


def test_missing_kaggle_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kaggle.api.kaggle_api_extended", None)  # import now raises ImportError
    with pytest.raises(KaggleError, match="pip install kaggle"):
        create_client(KaggleCredentials("someone", KEY))


# --------------------------------------------------------------------------------------------
# Fail early, never twice: the client and the credentials are checked before any work


def forbid_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every first step of the pipeline record that work started (and stop there)."""

    started: list[str] = []

    def work(*_: Any, **__: Any) -> Any:
        started.append("work")
        raise RuntimeError("work started")

    monkeypatch.setattr(flows.full, "full_pipeline", work)
    return started


def with_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", KEY)


@pytest.mark.parametrize("flag", ["--submit", "--download"])
def test_cli_without_the_kaggle_package_says_how_to_install_it_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    from flows.full import main

    with_credentials(monkeypatch)
    monkeypatch.setitem(sys.modules, "kaggle", None)  # not importable (it is not a dependency)
    started = forbid_work(monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main([flag, "--data-dir", str(tmp_path / "data"), "--output-dir", str(out)])
    assert exit_.value.code == 1 and started == []
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and 'pip install -e ".[kaggle]"' in lines[0]
    assert not out.exists() and not (tmp_path / "data").exists()


def test_cli_names_both_problems_when_client_and_credentials_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.full import main

    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setitem(sys.modules, "kaggle", None)
    started = forbid_work(monkeypatch)
    with pytest.raises(SystemExit):
        main(["--submit", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert 'pip install -e ".[kaggle]"' in err and "KAGGLE_USERNAME" in err and started == []


def test_client_check_never_imports_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Old kaggle versions authenticate (and may exit) on import: the check only looks for it."""
    install_fake_kaggle_package(monkeypatch, lambda api: None)
    package = sys.modules["kaggle"]
    package.__spec__ = importlib.machinery.ModuleSpec("kaggle", None)  # found, never executed
    require_client()
    monkeypatch.setitem(sys.modules, "kaggle", None)
    with pytest.raises(KaggleError, match=r'pip install -e "\.\[kaggle\]"'):
        require_client()


def test_submit_is_never_retried_but_downloads_are_on_transient_errors() -> None:
    from prefect.states import Failed

    from flows.steps import download_task, kaggle_submit_task

    assert kaggle_submit_task.retries == 0  # not idempotent: a retry could submit twice
    assert download_task.retries > 0
    assert download_task.retry_condition_fn is not None
    assert not download_task.retry_condition_fn(None, None, Failed(data=KaggleError("wrong competition")))
    assert download_task.retry_condition_fn(None, None, Failed(data=ConnectionResetError()))
