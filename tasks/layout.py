"""Where everything lives: the one place that names the files of a run and of an output directory.

Every module asks these objects for paths instead of spelling file names itself, so the layout
cannot drift between the writer and the reader (it did: the champion looked for ``samples.csv``
in the run root while validation writes it under ``validation/``).

    <output-dir>/
      runs/<YYYYmmdd-HHMMSS>-<hex>/     a RunFolder (one per run)
      cache/                            content-keyed caches: steps/, prefect-results/, image_scan/
      sample/                           the embedded synthetic dataset
      champion/                         the served champion (a RunFolder-like copy)
      registry.jsonl                    one JSON line per champion decision
      predictions/<YYYYmmdd-HHMMSS>-<hex>/  a PredictionFolder (one per `python -m flows.predict`)

A cached step's work folder (``cache/steps/<step>/<key>/``) has the same layout as a run folder
for what it writes (``predictions/``, ``models/``, histories), so its outputs are adopted into the
run folder by relative path.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tasks.confine import make_dirs, register_output_root


@dataclass(frozen=True)
class RunFolder:
    """The files of one run (or of a cached step's work folder, which shares the layout)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # --- validation/ -------------------------------------------------------------------------
    @property
    def validation(self) -> Path:
        return self.root / "validation"

    @property
    def samples(self) -> Path:
        """The validated sample table (every labelled and test image, with its role and flags)."""
        return self.validation / "samples.csv"

    @property
    def classes(self) -> Path:
        """The class names in info.json order, next to the samples they index."""
        return self.validation / "classes.json"

    @property
    def validation_report(self) -> Path:
        return self.validation / "report.json"

    @property
    def quarantine(self) -> Path:
        return self.validation / "quarantine.csv"

    @property
    def scan_list(self) -> Path:
        return self.validation / "image_list.csv"

    @property
    def image_scan(self) -> Path:
        return self.validation / "image_scan.csv"

    @property
    def data_docs(self) -> Path:
        return self.validation / "data_docs"

    @property
    def gx(self) -> Path:
        """Great Expectations' file context (suites, results) of this run."""
        return self.validation / "gx"

    @property
    def gx_expectations(self) -> Path:
        """GX's expectation store: the suites, as JSON."""
        return self.gx / "expectations"

    @property
    def gx_validations(self) -> Path:
        """GX's validation-result store, read back when the Data Docs are built."""
        return self.gx / "validations"

    @property
    def validation_summary(self) -> Path:
        return self.validation / "summary.html"

    @property
    def drift_report(self) -> Path:
        """How the validated data compare with the champion's (tasks.drift), as JSON."""
        return self.validation / "drift.json"

    # --- split and training -----------------------------------------------------------------
    @property
    def validation_duplicates(self) -> Path:
        """Duplicate groups found from the image scan's hashes (group,filename,split,label)."""
        return self.validation / "duplicates.csv"

    @property
    def validation_image_issues(self) -> Path:
        """Dark, bright, near-constant, small or elongated images (filename,issue,score)."""
        return self.validation / "image_issues.csv"

    @property
    def validation_audit(self) -> Path:
        """Counts of the scan audit (duplicates, image issues)."""
        return self.validation / "audit.json"

    @property
    def audit(self) -> Path:
        """The data audit's outputs (tasks.validation.audit, tasks.audit)."""
        return self.root / "audit"

    @property
    def audit_duplicates(self) -> Path:
        """group,filename,split,label: one row per member of a duplicate group (hashes and features)."""
        return self.audit / "duplicates.csv"

    @property
    def audit_label_issues(self) -> Path:
        """filename,split,given,suggested,score: label-issue candidates, most likely wrong first."""
        return self.audit / "label_issues.csv"

    @property
    def audit_image_issues(self) -> Path:
        """filename,issue,score: unusable-looking images."""
        return self.audit / "image_issues.csv"

    @property
    def audit_summary(self) -> Path:
        """Counts of the audit (summary.json)."""
        return self.audit / "summary.json"

    @property
    def audit_gallery(self) -> Path:
        """Thumbnails of the largest duplicate groups and the top label-issue candidates."""
        return self.audit / "gallery.png"

    @property
    def split(self) -> Path:
        """Role of every labelled image (train / holdout), carved before any resampling."""
        return self.root / "split.csv"

    @property
    def table(self) -> Path:
        """samples + split roles: what every model step reads."""
        return self.root / "table.csv"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    def predictions_of(self, model: str) -> Path:
        """One model's hold-out and test predictions."""
        return self.predictions / f"{model}.csv"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model_file(self, model: str, suffix: str) -> Path:
        """One model's saved file, ``models/<model><suffix>`` (``.skops``, ``.keras``: see tasks.models.persistence)."""
        return self.models / f"{model}{suffix}"

    def model_inputs(self, model: str) -> Path:
        """One model's inputs recipe, ``models/<model>.inputs.json``: what it eats (tasks.models.recipe).

        Named ``<model>.<...>`` so that it travels with the model file wherever the model goes
        (tasks.results.champion.model_files)."""
        return self.models / f"{model}.inputs.json"

    @property
    def training_history(self) -> Path:
        return self.root / "training_history.json"

    @property
    def resampling(self) -> Path:
        return self.root / "resampling.json"

    @property
    def transfer_state(self) -> Path:
        """Stage-2 resume state (epoch, best score), next to its checkpoints."""
        return self.models / "state.json"

    @property
    def best_weights(self) -> Path:
        return self.models / "best.weights.h5"

    @property
    def last_weights(self) -> Path:
        return self.models / "last.weights.h5"

    # --- results ----------------------------------------------------------------------------
    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def submission(self) -> Path:
        return self.root / "submission.csv"

    @property
    def drift_reference(self) -> Path:
        """Backbone features and label counts of the training rows: what later data is compared with (tasks.drift)."""
        return self.root / "drift_reference.npz"

    @property
    def champion_decision(self) -> Path:
        return self.root / "champion_decision.json"

    @property
    def champion_record(self) -> Path:
        """Only in the champion folder: which run, model and scores it serves."""
        return self.root / "champion.json"


@dataclass(frozen=True)
class OutputDir:
    """The output directory: run folders, caches, the sample, the champion and its registry."""

    root: Path

    def __post_init__(self) -> None:
        given = Path(self.root).expanduser()
        object.__setattr__(self, "root", given.resolve())
        # Both spellings: paths are built from the resolved root, but a caller may join the given one.
        register_output_root(given)
        register_output_root(self.root)

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def steps(self) -> Path:
        """Content-keyed work folders of the expensive steps."""
        return self.cache / "steps"

    def step(self, name: str, key: str) -> Path:
        return self.steps / name / key

    @property
    def prefect_results(self) -> Path:
        return self.cache / "prefect-results"

    @property
    def image_scan_cache(self) -> Path:
        return self.cache / "image_scan"

    @property
    def sample(self) -> Path:
        return self.root / "sample"

    @property
    def champion(self) -> RunFolder:
        return RunFolder(self.root / "champion")

    @property
    def registry(self) -> Path:
        return self.root / "registry.jsonl"

    @property
    def champion_lock(self) -> Path:
        return self.root / ".champion.lock"

    @property
    def promotion_intent(self) -> Path:
        """Only while a promotion is in progress: what it promotes (tasks.results.champion recovers from it)."""
        return self.root / ".promotion-intent.json"

    @property
    def lock(self) -> Path:
        """Held (flock) by the one run writing here; while held it records who holds it (tasks.lock)."""
        return self.root / ".lock"

    @property
    def predictions(self) -> Path:
        """Batch predictions (`python -m flows.predict`), one new folder per call."""
        return self.root / "predictions"

    def new_prediction(self) -> PredictionFolder:
        """Create ``predictions/<YYYYmmdd-HHMMSS>-<6 hex>/``: unique, so concurrent calls never share one."""
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        folder = PredictionFolder(self.predictions / f"{stamp}-{secrets.token_hex(3)}")
        make_dirs(folder.root.parent)
        folder.root.mkdir(exist_ok=False)
        return folder

    def new_run(self) -> RunFolder:
        """Create ``runs/<YYYYmmdd-HHMMSS>-<6 hex>/``; names sort by start time (UTC)."""
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        folder = RunFolder(self.runs / f"{stamp}-{secrets.token_hex(3)}")
        make_dirs(folder.root.parent)
        folder.root.mkdir(exist_ok=False)
        return folder


@dataclass(frozen=True)
class PredictionFolder:
    """The files of one batch prediction (``<output-dir>/predictions/<id>/``)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def predictions(self) -> Path:
        """filename, class index and name, one probability column per class; unreadable rows flagged."""
        return self.root / "predictions.csv"

    @property
    def inputs(self) -> Path:
        """The input images as listed and validated (filename, path, image_ok, problem)."""
        return self.root / "inputs.csv"

    @property
    def scan_list(self) -> Path:
        return self.root / "image_list.csv"

    @property
    def image_scan(self) -> Path:
        return self.root / "image_scan.csv"

    @property
    def gallery(self) -> Path:
        return self.root / "gallery.png"

    @property
    def record(self) -> Path:
        """Which model predicted (champion or run, model name, promotion id) and the counts."""
        return self.root / "prediction.json"

    @property
    def model_snapshot(self) -> RunFolder:
        """The champion's files as they were when this prediction started (hard links): a promotion
        that swaps the champion meanwhile cannot mix two models' files."""
        return RunFolder(self.root / "model")
