"""Benchmark model quality: hold-out macro-F1 of every pipeline model, mean and spread over seeds.

    python -m benchmarks.bench_quality [--seeds 42,43,44] [--data-dir DIR] [--work DIR] [--json PATH]
                                       [-- EXTRA FLOW FLAGS]

    e.g. python -m benchmarks.bench_quality --seeds 1,2 -- --stage2-epochs 0 --sample-per-family 6

For each seed it runs the real pipeline, ``python -m flows.full --seed S``, as a subprocess into
its own output directory ``<work>/seed-S`` (so one seed's champion never gates another's, and no
seed is served from another's cache), then reads that run's ``metrics.json`` and
``champion_decision.json`` (never its log). Without ``--data-dir`` the embedded sample is generated
once, for the sample settings the extra flags ask for, and hard-linked into every seed's
``sample/`` with its stamp, so the pipeline reuses it instead of regenerating it. The seed moves
the hold-out, the sampling and every model's initialisation; on the embedded sample the images
themselves stay the same.

Printed: per model, the mean, sample standard deviation, min and max of hold-out macro-F1 over the
seeds and the mean accuracy, best mean first; one line per seed (its best model, wall time,
champion decision); the machine load; and the issue's acceptance checks as plain lines (pixel
baselines below every backbone model, any mean above 0.95, the published Keras model against the
logistic-regression probe minus 0.01, how often a Keras model was the run's best). ``--json``
writes every per-seed figure and the summary.

Judging a recipe change: run it before and after the change on the same seeds and the same flags,
and compare the means against their spread; a difference smaller than the standard deviations is
not evidence. Never judge from one seed. Leave the code alone while it runs: each seed's
subprocess imports it afresh, and a seed whose sample the pipeline rebuilt (a changed generator or
sample setting) is flagged with a WARNING line. The "published" Keras model is the one every run
saved as ``.keras`` (the fine-tuned network when stage 2 runs; the stage-1 head has no file), else
the better mean of ``<backbone>_head`` and ``<backbone>_finetuned``.

Cost: about 3 minutes per seed on a 2-core CPU for the default sample (the seeds run one after
another), about 1-2 minutes with ``--sample-per-family 6 --stage2-epochs 0``. Not a test: timings
depend on the machine, scores on the data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.flow_env import flow_env, split_flow_args

REPO = Path(__file__).resolve().parents[1]
#: Flags the benchmark sets itself for each seed; passing them after ``--`` would be ambiguous.
OWN_FLAGS = ("--seed", "--split.seed", "--output-dir", "--data.output-dir", "--data-dir", "--data.data-dir")
PIXEL_PREFIX = "pixels_"
KERAS_SUFFIXES = ("_head", "_finetuned", "_published")
#: The row holding, per seed, the scores of the Keras model that run published (stage 1 or 2).
PUBLISHED = "keras_published"
PROBE_SUFFIX = "_logreg"
#: The Keras model may trail the linear probe by at most this much (mean hold-out macro-F1).
PROBE_MARGIN = 0.01
SATURATED = 0.95


@dataclass(frozen=True)
class Row:
    """One model's hold-out scores over the seeds it was trained on."""

    model: str
    n: int
    mean_f1: float
    std_f1: float | None  # sample std (ddof=1); None with one seed: one number has no spread
    min_f1: float
    max_f1: float
    mean_accuracy: float
    #: Mean width of the per-seed 95% bootstrap intervals of hold-out macro-F1 (the hold-out's own
    #: noise, to set against the spread over seeds); None when the runs recorded no interval.
    mean_ci_width: float | None = None


def is_pixel(model: str) -> bool:
    return model.startswith(PIXEL_PREFIX)


def is_keras(model: str) -> bool:
    return model.endswith(KERAS_SUFFIXES)


def seed_record(
    seed: int,
    wall_s: float,
    metrics: Mapping[str, Any],
    decision: Mapping[str, Any] | None,
    keras_files: Sequence[str],
    run_dir: str,
    sample_stamp: Mapping[str, Any] | None = None,
    published: str | None = None,
) -> dict[str, Any]:
    """The figures of one seed's run that the summary needs (from its metrics.json and decision);
    ``published`` (from training_history.json) adds a `PUBLISHED` row with that model's scores."""
    models = {
        name: {
            "macro_f1": float(m["macro_f1"]),
            "accuracy": float(m["accuracy"]),
            **({"macro_f1_ci": dict(m["macro_f1_ci"])} if "macro_f1_ci" in m else {}),
        }
        for name, m in metrics["models"].items()
    }
    if published in models:
        models[PUBLISHED] = dict(models[published])
    return {
        "seed": seed,
        "wall_s": round(wall_s, 1),
        "best_model": metrics["best_model"],
        "majority_macro_f1": metrics.get("majority_reference", {}).get("macro_f1"),
        "models": models,
        "champion_decision": dict(decision) if decision is not None else None,
        "keras_files": sorted(keras_files),
        "run_dir": run_dir,
        "sample_stamp": dict(sample_stamp) if sample_stamp is not None else None,
    }


def summarise(per_seed: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Per model: mean, sample std, min, max of macro-F1 and mean accuracy; best mean first (ties: by name)."""
    f1s: dict[str, list[float]] = {}
    accuracies: dict[str, list[float]] = {}
    widths: dict[str, list[float]] = {}
    for record in per_seed:
        for name, scores in record["models"].items():
            f1s.setdefault(name, []).append(float(scores["macro_f1"]))
            accuracies.setdefault(name, []).append(float(scores["accuracy"]))
            if "macro_f1_ci" in scores:
                widths.setdefault(name, []).append(scores["macro_f1_ci"]["high"] - scores["macro_f1_ci"]["low"])
    rows = [
        Row(
            model=name,
            n=len(values),
            mean_f1=statistics.fmean(values),
            std_f1=statistics.stdev(values) if len(values) > 1 else None,
            min_f1=min(values),
            max_f1=max(values),
            mean_accuracy=statistics.fmean(accuracies[name]),
            mean_ci_width=statistics.fmean(widths[name]) if name in widths else None,
        )
        for name, values in f1s.items()
    ]
    return sorted(rows, key=lambda r: (-r.mean_f1, r.model))


def format_table(rows: Sequence[Row]) -> str:
    """Fixed-width table of the summary, in the order given."""
    width = max([len("model")] + [len(r.model) for r in rows])
    lines = [f"{'model':<{width}}  seeds  F1 mean  F1 std  F1 min  F1 max  acc mean  F1 CI width"]
    for r in rows:
        std = f"{r.std_f1:6.4f}" if r.std_f1 is not None else f"{'n/a':>6}"
        ci = f"{r.mean_ci_width:11.4f}" if r.mean_ci_width is not None else f"{'n/a':>11}"
        lines.append(
            f"{r.model:<{width}}  {r.n:5d}  {r.mean_f1:7.4f}  {std}  {r.min_f1:6.4f}  {r.max_f1:6.4f}  "
            f"{r.mean_accuracy:8.4f}  {ci}"
        )
    if any(r.mean_ci_width is not None for r in rows):
        lines.append("F1 CI width: mean width of each run's 95% bootstrap interval of hold-out macro-F1")
    return "\n".join(lines)


def format_seeds(per_seed: Sequence[Mapping[str, Any]]) -> str:
    """One line per seed: its best model and score, wall time and what the gate decided."""
    lines = []
    for record in per_seed:
        best = record["best_model"]
        decision = record.get("champion_decision")
        verdict = "no decision" if decision is None else ("promoted" if decision.get("promote") else "kept")
        scores = record["models"][best]
        ci = scores.get("macro_f1_ci")
        interval = f" [{ci['low']:.4f}, {ci['high']:.4f}]" if ci else ""
        lines.append(
            f"seed {record['seed']}: best {best} ({scores['macro_f1']:.4f}{interval}), "
            f"wall {record['wall_s']:.1f} s, champion {verdict}"
        )
    return "\n".join(lines)


def published_keras(rows: Sequence[Row], per_seed: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(model, why) of the Keras model the pipeline publishes: the one saved as ``.keras`` in every
    run (the fine-tuned network when stage 2 ran); else the better mean of head and fine-tuned."""
    keras_rows = [r for r in rows if is_keras(r.model)]
    if not keras_rows:
        return None
    if any(r.model == PUBLISHED and r.n == len(per_seed) for r in keras_rows):
        return PUBLISHED, "the stage each run published, from its training_history.json"
    saved = [set(record.get("keras_files", [])) for record in per_seed]
    shipped = [r.model for r in keras_rows if saved and all(r.model in files for files in saved)]
    if len(shipped) == 1:
        return shipped[0], "saved as .keras by every run"
    best = max(keras_rows, key=lambda r: r.mean_f1)
    return best.model, "no single saved .keras model; the better mean of the Keras models"


def acceptance(rows: Sequence[Row], per_seed: Sequence[Mapping[str, Any]]) -> list[str]:
    """The issue's acceptance figures, as plain sentences (checks to read, not asserts)."""
    lines: list[str] = []
    pixels = [r for r in rows if is_pixel(r.model)]
    backbone = [r for r in rows if not is_pixel(r.model)]
    if pixels and backbone:
        top_pixel = max(pixels, key=lambda r: r.mean_f1)
        low_backbone = min(backbone, key=lambda r: r.mean_f1)
        ok = top_pixel.mean_f1 < low_backbone.mean_f1
        lines.append(
            f"pixel baselines below every backbone model (mean): {'yes' if ok else 'NO'} "
            f"(best pixel {top_pixel.model} {top_pixel.mean_f1:.4f} vs weakest backbone "
            f"{low_backbone.model} {low_backbone.mean_f1:.4f})"
        )
    else:
        lines.append("pixel baselines below every backbone model: not measured (no pixel or no backbone model)")
    above = [f"{r.model} {r.mean_f1:.4f}" for r in rows if r.mean_f1 > SATURATED]
    lines.append(
        f"models with mean macro-F1 above {SATURATED}: {len(above)}" + (f" ({', '.join(above)})" if above else "")
    )
    lines.append(keras_vs_probe(rows, per_seed))
    keras_best = sum(1 for record in per_seed if is_keras(record["best_model"]))
    keras_tied = sum(1 for record in per_seed if keras_tied_for_best(record))
    lines.append(
        f"a Keras model was the run's best model on {keras_best} of {len(per_seed)} seeds "
        f"(tied for best or best on {keras_tied})"
    )
    return lines


def keras_vs_probe(rows: Sequence[Row], per_seed: Sequence[Mapping[str, Any]]) -> str:
    """The published Keras model's mean against the logistic-regression probe's mean minus the margin."""
    published = published_keras(rows, per_seed)
    probes = [r for r in rows if r.model.endswith(PROBE_SUFFIX)]
    if published is None or not probes:
        return "published Keras model vs logreg probe: not measured (no Keras model or no logreg probe)"
    name, why = published
    keras_mean = next(r.mean_f1 for r in rows if r.model == name)
    probe = probes[0]
    bar = probe.mean_f1 - PROBE_MARGIN
    ok = keras_mean >= bar
    return (
        f"published Keras model {name} ({why}) mean {keras_mean:.4f} >= {probe.model} mean - {PROBE_MARGIN} "
        f"= {bar:.4f}: {'yes' if ok else 'NO'}"
    )


def keras_tied_for_best(record: Mapping[str, Any]) -> bool:
    """Whether some Keras model scored the run's top macro-F1 (the best model is the first of equals)."""
    top = max(scores["macro_f1"] for scores in record["models"].values())
    return any(is_keras(name) and scores["macro_f1"] >= top - 1e-12 for name, scores in record["models"].items())


def consistency(per_seed: Sequence[Mapping[str, Any]], expected_stamp: Mapping[str, Any] | None) -> list[str]:
    """Warnings when the seeds did not all run on the sample prepared for them: the pipeline rebuilt
    it (its generator or settings changed during the benchmark), so their scores are not comparable."""
    if expected_stamp is None:
        return []
    return [
        f"WARNING: seed {record['seed']} ran on a different sample ({record.get('sample_stamp')} instead of "
        f"{dict(expected_stamp)}): the code or settings changed mid-benchmark; its scores are not comparable"
        for record in per_seed
        if record.get("sample_stamp") != dict(expected_stamp)
    ]


def format_load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


# --- running the pipeline --------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    """``"42,43,44"`` -> [42, 43, 44]; duplicates would share an output directory, so they are refused."""
    seeds = [int(part) for part in text.split(",") if part.strip()]
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"need distinct comma-separated integers, got {text!r}")
    return seeds


def own_flags_in(extra: Sequence[str]) -> list[str]:
    """Extra flow flags that the benchmark sets per seed (refused: they would be overridden or clash)."""
    return [token for token in extra if token.split("=", 1)[0] in OWN_FLAGS]


def seed_command(seed: int, output_dir: Path, data_dir: Path | None, extra: Sequence[str]) -> list[str]:
    command = [sys.executable, "-m", "flows.full", "--split.seed", str(seed), "--data.output-dir", str(output_dir)]
    if data_dir is not None:
        command += ["--data.data-dir", str(data_dir)]
    return [*command, *extra]


def prepare_sample(work: Path, extra: Sequence[str]) -> Path:
    """Generate the embedded sample the extra flags ask for, once, under ``work/sample``."""
    from flows.cli import parse_model
    from flows.params import LEGACY_FLAGS, PipelineParams
    from tasks.data.sample import ensure_sample

    params = parse_model(PipelineParams, list(extra), description="", prog="python -m flows.full", legacy=LEGACY_FLAGS)
    return ensure_sample(work / "sample", params.data.sample_spec())


def read_stamp(sample: Path) -> dict[str, Any]:
    """The stamp the sample was generated with (its settings and generator version)."""
    from tasks.data.sample import STAMP_NAME

    return dict(json.loads((sample / STAMP_NAME).read_text(encoding="utf-8")))


def link_tree(source: Path, target: Path) -> None:
    """Hard-link (or copy, across file systems) the sample into a seed's output dir; the pipeline
    never writes into its data, so the links are safe, and its stamp file makes it reuse them."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)


def run_seed(seed: int, output_dir: Path, data_dir: Path | None, extra: Sequence[str], env: dict[str, str]) -> dict:
    """Run the pipeline for one seed and read back its run's figures; exits on a failed run."""
    from tasks.layout import OutputDir, RunFolder

    command = seed_command(seed, output_dir, data_dir, extra)
    log = output_dir / "bench.log"
    started = time.perf_counter()
    with open(log, "w") as handle:
        result = subprocess.run(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        sys.exit(f"{' '.join(command)} failed ({result.returncode}); log: {log}\n{tail}")
    runs = sorted(p for p in OutputDir(output_dir).runs.iterdir() if RunFolder(p).metrics.is_file())
    run = RunFolder(runs[-1])
    metrics = json.loads(run.metrics.read_text(encoding="utf-8"))
    decision_path = run.champion_decision
    decision = json.loads(decision_path.read_text(encoding="utf-8")) if decision_path.is_file() else None
    keras_files = [p.name.split(".", 1)[0] for p in run.models.glob("*.keras")] if run.models.is_dir() else []
    sample = OutputDir(output_dir).sample
    sample_stamp = read_stamp(sample) if data_dir is None and sample.is_dir() else None
    history = json.loads(run.training_history.read_text()) if run.training_history.is_file() else {}
    published = history.get("published")
    return seed_record(seed, wall, metrics, decision, keras_files, str(run.root), sample_stamp, published)


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_flow_args(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_quality", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=parse_seeds, default=[42, 43, 44], help="comma-separated (default 42,43,44)")
    parser.add_argument("--data-dir", type=Path, default=None, help="Kaggle-layout data (default: the embedded sample)")
    parser.add_argument("--work", type=Path, default=None, help="keep outputs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="write per-seed figures and the summary here")
    args = parser.parse_args(argv)
    if clashes := own_flags_in(extra):
        parser.error(f"the benchmark sets {', '.join(clashes)} itself; use --seeds / --data-dir / --work")
    data_dir = args.data_dir.resolve() if args.data_dir is not None else None  # the flow runs from the repo root
    work = (args.work or Path(tempfile.mkdtemp(prefix="bench-quality-"))).resolve()
    taken = [str(work / f"seed-{s}") for s in args.seeds if (work / f"seed-{s}").exists()]
    if taken:
        parser.error(f"{', '.join(taken)} exist: each seed needs a fresh output directory (cold, ungated)")
    work.mkdir(parents=True, exist_ok=True)
    env = flow_env(work)
    print(f"python -m flows.full --split.seed S {' '.join(extra)}".rstrip() + f"  for S in {args.seeds}", flush=True)
    load_before = format_load()
    finished = False
    try:
        sample = None if data_dir is not None else prepare_sample(work, extra)
        expected = None if sample is None else read_stamp(sample)
        per_seed = []
        for seed in args.seeds:
            output_dir = work / f"seed-{seed}"
            output_dir.mkdir()
            if sample is not None:
                from tasks.layout import OutputDir

                link_tree(sample, OutputDir(output_dir).sample)
            per_seed.append(run_seed(seed, output_dir, data_dir, extra, env))
            print(format_seeds(per_seed[-1:]), flush=True)
        finished = True
    finally:
        if args.work is None and finished:  # a failed run's outputs and log stay for reading
            shutil.rmtree(work, ignore_errors=True)
    rows = summarise(per_seed)
    checks = consistency(per_seed, expected) + acceptance(rows, per_seed)
    load_after = format_load()
    print("\n" + format_table(rows) + "\n")
    print(format_seeds(per_seed))
    print(f"machine: before {load_before}; after {load_after}")
    print("\n".join(f"check: {line}" for line in checks))
    if args.json is not None:
        report = {
            "seeds": args.seeds,
            "data_dir": str(data_dir) if data_dir else None,
            "extra_flags": extra,
            "per_seed": per_seed,
            "summary": [asdict(r) for r in rows],
            "acceptance": checks,
            "load_before": load_before,
            "load_after": load_after,
        }
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
