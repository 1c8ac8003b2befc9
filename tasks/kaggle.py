"""Kaggle: download the competition data, submit the champion's file.

Credentials are looked up in the order the Kaggle CLI itself uses, plus Prefect:

1. environment variables ``KAGGLE_USERNAME`` and ``KAGGLE_KEY``;
2. ``kaggle.json`` in ``$KAGGLE_CONFIG_DIR``, else ``~/.kaggle`` (or ``$XDG_CONFIG_HOME/kaggle``);
3. a Prefect Secret block whose value is ``{"username": ..., "key": ...}`` (a dict or JSON text),
   for deployments where workers have no home directory of their own.

Credentials never appear in logs, errors or artifacts: `KaggleCredentials` hides the key from its
repr, logs say only where credentials were found, and error text passes through `redact`.

The real client (the ``kaggle`` package, not a dependency of this project) is imported lazily;
every function accepts a ``client`` with the same method names instead, which is how the tests
fake Kaggle at its boundary without a network.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.data.dataset import INFO_FILE, PUBLIC_DIR, PUBLIC_FILES, check_data_dir
from tasks.layout import OutputDir, RunFolder
from tasks.logs import get_logger
from tasks.results.promotion import reconcile_champion
from tasks.results.settings import DEFAULT_COMPETITION

REQUIRED_FILES = PUBLIC_FILES


class KaggleCredentialsMissing(RuntimeError):
    """No Kaggle credentials were found; the message lists the ways to provide them."""


class KaggleError(RuntimeError):
    """Kaggle could not be used (client missing, authentication refused, unexpected archive)."""


@dataclass(frozen=True)
class KaggleCredentials:
    """A Kaggle username and API key; the key is left out of repr so it cannot leak into logs."""

    username: str
    key: str = field(repr=False)
    source: str = ""


def redact(text: str, credentials: KaggleCredentials | None) -> str:
    """The text with the API key blanked out (for error messages that quote a client's output)."""
    if credentials is not None and credentials.key:
        return text.replace(credentials.key, "***")
    return text


def kaggle_config_dirs(env: Mapping[str, str]) -> list[Path]:
    """Where kaggle.json may live: ``$KAGGLE_CONFIG_DIR`` alone if set, else ~/.kaggle then XDG."""
    if env.get("KAGGLE_CONFIG_DIR"):
        return [Path(env["KAGGLE_CONFIG_DIR"]).expanduser()]
    home = Path(env.get("HOME") or Path.home()).expanduser()
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config").expanduser()
    return [home / ".kaggle", xdg / "kaggle"]


def credentials_from_env(env: Mapping[str, str]) -> KaggleCredentials | None:
    """``KAGGLE_USERNAME`` and ``KAGGLE_KEY``, when both are set."""
    username, key = env.get("KAGGLE_USERNAME", "").strip(), env.get("KAGGLE_KEY", "").strip()
    if username and key:
        return KaggleCredentials(username, key, "environment variables KAGGLE_USERNAME/KAGGLE_KEY")
    return None


def credentials_from_mapping(value: Any, source: str) -> KaggleCredentials:
    """Credentials from ``{"username": ..., "key": ...}`` (a dict or its JSON text)."""
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            # The message of a JSON error quotes the document: never pass it on.
            raise KaggleCredentialsMissing(f'{source} is not JSON with "username" and "key"') from None
    if not isinstance(value, Mapping) or not all(str(value.get(k, "")).strip() for k in ("username", "key")):
        raise KaggleCredentialsMissing(f'{source} must hold {{"username": ..., "key": ...}}')
    return KaggleCredentials(str(value["username"]).strip(), str(value["key"]).strip(), source)


def credentials_from_file(path: Path) -> KaggleCredentials | None:
    """The contents of a kaggle.json file, or None if there is no such file."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KaggleCredentialsMissing(f"{path} exists but cannot be read ({type(exc).__name__})") from None
    return credentials_from_mapping(text, str(path))


def credentials_from_secret_block(name: str) -> KaggleCredentials:
    """The value of a Prefect Secret block (needs a reachable Prefect API)."""
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name, _sync=True).get()  # type: ignore[call-arg, union-attr]  # sync call
    except Exception as exc:  # block missing, API unreachable...: say which, quote nothing
        raise KaggleCredentialsMissing(
            f"Prefect Secret block {name!r} could not be loaded ({type(exc).__name__}); create it with "
            f'Secret(value={{"username": ..., "key": ...}}).save({name!r})'
        ) from None
    return credentials_from_mapping(value, f"Prefect Secret block {name!r}")


def find_credentials(
    env: Mapping[str, str] | None = None, config_dir: Path | None = None, secret_block: str | None = None
) -> KaggleCredentials | None:
    """The first credentials found (environment, kaggle.json, Secret block), or None."""
    env = os.environ if env is None else env
    found = credentials_from_env(env)
    if found is None:
        folders = [Path(config_dir).expanduser()] if config_dir is not None else kaggle_config_dirs(env)
        for folder in folders:
            found = credentials_from_file(folder / "kaggle.json")
            if found is not None:
                break
    if found is None and secret_block:
        found = credentials_from_secret_block(secret_block)
    if found is not None:
        get_logger().info("Kaggle credentials found in %s (username set, key hidden)", found.source)
    return found


def require_credentials(
    env: Mapping[str, str] | None = None, config_dir: Path | None = None, secret_block: str | None = None
) -> KaggleCredentials:
    """Credentials, or `KaggleCredentialsMissing` listing the three ways to provide them.

    Call it before any work when the user asked for ``--download`` or ``--submit``, so a missing
    key fails in a second rather than after an hour of training.
    """
    found = find_credentials(env, config_dir, secret_block)
    if found is not None:
        return found
    env = os.environ if env is None else env
    folders = [Path(config_dir)] if config_dir is not None else kaggle_config_dirs(env)
    block = f"the Prefect Secret block {secret_block!r}" if secret_block else "a Prefect Secret block"
    raise KaggleCredentialsMissing(
        "No Kaggle credentials found. Provide them in one of three ways: "
        "(1) set the environment variables KAGGLE_USERNAME and KAGGLE_KEY; "
        f"(2) put the kaggle.json from kaggle.com > Settings > API > Create New Token at "
        f"{' or '.join(str(f / 'kaggle.json') for f in folders)} (chmod 600; KAGGLE_CONFIG_DIR moves it); "
        f'(3) store {{"username": ..., "key": ...}} in {block} and name it in the run parameters.'
    )


#: What to run when the Kaggle client is missing (it is an optional extra of this project).
INSTALL_HINT = 'pip install -e ".[kaggle]"'


def require_client() -> None:
    """`KaggleError` unless the ``kaggle`` package can be imported; it is only looked up, never
    imported (importing it authenticates, and old versions exit when that fails)."""
    try:
        found = importlib.util.find_spec("kaggle") is not None
    except (ImportError, ValueError):  # a broken or half-removed installation
        found = False
    if not found:
        raise KaggleError(
            f"the Kaggle client is not installed: run {INSTALL_HINT} (or pip install kaggle) "
            "to use --download or --submit"
        )


def require_kaggle(secret_block: str | None = None) -> KaggleCredentials:
    """Both things --download and --submit need, checked before any work: the client package and
    credentials. Raises `KaggleError` naming every missing piece (install command, the three ways
    to provide credentials)."""
    client_problem: str | None = None
    try:
        require_client()
    except KaggleError as exc:
        client_problem = str(exc)
    try:
        credentials = require_credentials(secret_block=secret_block)
    except KaggleCredentialsMissing as exc:
        if client_problem is None:
            raise
        raise KaggleError(f"{client_problem}; and {exc}") from None
    if client_problem is not None:
        raise KaggleError(client_problem)
    return credentials


@contextlib.contextmanager
def kaggle_environment(credentials: KaggleCredentials) -> Iterator[None]:
    """Expose the credentials to the kaggle package as it expects them, for this block only.

    Importing ``kaggle`` authenticates at import time and reads these variables, so they must be
    set before the import; they are restored afterwards so child processes do not inherit them.
    """
    names = ("KAGGLE_USERNAME", "KAGGLE_KEY")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["KAGGLE_USERNAME"], os.environ["KAGGLE_KEY"] = credentials.username, credentials.key
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def create_client(credentials: KaggleCredentials) -> Any:
    """An authenticated ``kaggle.api.kaggle_api_extended.KaggleApi``."""
    with kaggle_environment(credentials):
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi
        except ImportError:
            raise KaggleError(f"the Kaggle client is not installed: {INSTALL_HINT} (or pip install kaggle)") from None
        except (Exception, SystemExit) as exc:  # old versions authenticate (and may exit) on import
            raise KaggleError(f"Kaggle authentication failed: {redact(str(exc), credentials)}") from None
        api = KaggleApi()
        try:
            api.authenticate()
        except (Exception, SystemExit) as exc:
            raise KaggleError(f"Kaggle authentication failed: {redact(str(exc), credentials)}") from None
    return api


def missing_required(folder: Path) -> list[str]:
    """Which of info.json and the three CSVs a would-be ``public/`` folder lacks."""
    return [name for name in REQUIRED_FILES if not (folder / name).is_file()]


def locate_public(root: Path, max_depth: int = 3) -> Path:
    """The folder that holds info.json and the CSVs inside an extracted archive.

    Handles the layouts Kaggle archives come in: ``public/info.json`` at the top, the files at
    the top with no ``public/``, or either of those inside one wrapping folder.
    """
    candidates = sorted(
        (p.parent for p in root.rglob(INFO_FILE) if len(p.relative_to(root).parts) <= max_depth + 1),
        key=lambda p: len(p.relative_to(root).parts),
    )
    for folder in candidates:
        if not missing_required(folder):
            return folder
    top = sorted(p.name for p in root.iterdir())[:10]
    raise KaggleError(
        f"the downloaded archive has no folder with {', '.join(REQUIRED_FILES)} "
        f"(top level: {', '.join(top) or 'empty'}); is this the right competition?"
    )


def extract_archive(archive: Path, destination: Path) -> None:
    """Unzip, refusing members that would land outside ``destination`` (zip-slip)."""
    destination = destination.resolve()
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.namelist():
            target = (destination / member).resolve()
            if target != destination and destination not in target.parents:
                raise KaggleError(f"{archive.name} contains an unsafe path {member!r}; not extracting it")
        bundle.extractall(destination)


def download_competition(
    data_dir: Path,
    competition: str = DEFAULT_COMPETITION,
    client: Any = None,
    credentials: KaggleCredentials | None = None,
    force: bool = False,
    secret_block: str | None = None,
) -> Path:
    """Download and unpack the competition into ``<data-dir>/public/``; return the checked data dir.

    An existing complete layout is kept (150,000 images are not fetched twice) unless ``force``.
    Without ``client`` or ``credentials`` they are looked up here (``secret_block`` names the
    optional Prefect Secret block), so a flow passes a block name, never a key, between tasks.
    The archive is unpacked in a temporary folder inside ``data_dir`` and moved into place only
    once it has info.json and the three CSVs, so a failed download never leaves half a dataset.
    """
    logger = get_logger()
    data_dir = Path(data_dir).expanduser().resolve()
    public = data_dir / PUBLIC_DIR
    if public.exists() and not force:
        missing = missing_required(public)
        if not missing:
            logger.info("Kaggle data already in %s; not downloading again (force to refresh)", data_dir)
            return check_data_dir(data_dir)
        raise KaggleError(f"{public} exists but lacks {', '.join(missing)}; delete it or choose another data dir")
    if client is None:
        client = create_client(credentials or require_credentials(secret_block=secret_block))
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".kaggle-download-", dir=data_dir))
    try:
        logger.info("Downloading Kaggle competition %s into %s", competition, data_dir)
        client.competition_download_files(competition, path=str(staging), quiet=True)
        archives = sorted(staging.glob("*.zip"))
        unpacked = staging / "unpacked"
        for archive in archives:
            logger.info("Unpacking %s (%.1f MB)", archive.name, archive.stat().st_size / 1e6)
            extract_archive(archive, unpacked)
            archive.unlink()
        found = locate_public(unpacked if archives else staging)
        if public.exists():  # force: replace the old copy only now that the new one is complete
            shutil.rmtree(public)
        os.rename(found, public)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Kaggle data ready in %s", data_dir)
    return check_data_dir(data_dir)


def submit_file(
    path: Path,
    message: str,
    competition: str = DEFAULT_COMPETITION,
    client: Any = None,
    credentials: KaggleCredentials | None = None,
    secret_block: str | None = None,
) -> Any:
    """Submit one CSV to the competition with a message; returns what the client returns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"submission {path} not found")
    if not message or not message.strip():
        raise ValueError("a Kaggle submission needs a message (what model, which run)")
    header = path.open(encoding="utf-8").readline().strip()
    if not header.startswith("filename,"):
        raise KaggleError(f"{path} has header {header!r}, expected filename,<target>; not submitting it")
    if client is None:
        client = create_client(credentials or require_credentials(secret_block=secret_block))
    logger = get_logger()
    logger.info("Submitting %s to Kaggle competition %s: %s", path, competition, message)
    result = client.competition_submit(str(path), message, competition)
    logger.info("Kaggle accepted the submission of %s", path.name)
    return result


def champion_message(champion_dir: Path) -> str:
    """A default submission message naming the champion's run, model and hold-out macro-F1."""
    try:
        record = json.loads(RunFolder(champion_dir).champion_record.read_text(encoding="utf-8"))
        return (
            f"champion from run {record['run']}: {record['model']}, hold-out macro-F1 "
            f"{record['metrics']['macro_f1']:.4f}"
        )
    except (OSError, KeyError, TypeError, ValueError):
        return f"champion submission from {champion_dir}"


def submit_champion(
    output_dir: Path,
    message: str | None = None,
    competition: str = DEFAULT_COMPETITION,
    client: Any = None,
    credentials: KaggleCredentials | None = None,
    secret_block: str | None = None,
) -> object:
    """Submit ``<output-dir>/champion/submission.csv``, the checked file of the current champion.

    The champion, not the latest run: a run that was not promoted never reaches Kaggle. Without
    a message, one is made from champion.json (run, model, hold-out macro-F1). A promotion that a
    crash interrupted is finished or undone first (`reconcile_champion`), so the file sent is the
    one the registry's last promotion names.
    """

    reconcile_champion(output_dir)
    champion = OutputDir(output_dir).champion
    folder, path = champion.root, champion.submission
    if not path.is_file():
        raise KaggleError(f"no champion submission at {path}: run the pipeline first (and let a model be promoted)")
    return submit_file(path, message or champion_message(folder), competition, client, credentials, secret_block)
