"""Benchmark cross-run caching: a cold `python -m flows.full` against a warm, unchanged rerun.

    python -m benchmarks.bench_orchestration [--output-dir DIR] [--keep] [-- EXTRA FLOW FLAGS]

    e.g. python -m benchmarks.bench_orchestration -- --stage1-epochs 5 --baselines random_forest

Both runs are subprocesses with the same flags and output directory, as a user would rerun the
command: the first into a fresh output directory (cold: the sample is generated, features
extracted, models trained), the second into the same one (warm: the validation scan, features
and models come from ``<output-dir>/cache/``). Both use one fresh, isolated Prefect home (its
ephemeral server starts each time, as it would for the user). Prints the wall seconds of each, the
warm/cold ratio and how many task runs the warm run reported as Cached.

Not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.flow_env import flow_env, split_flow_args

REPO = Path(__file__).resolve().parents[1]


def run_flow(output_dir: Path, extra: list[str], env: dict[str, str], log: Path) -> float:
    """Wall seconds of one `python -m flows.full` (its output goes to ``log``); exits on failure."""
    command = [sys.executable, "-m", "flows.full", "--output-dir", str(output_dir), *extra]
    started = time.perf_counter()
    with open(log, "w") as handle:
        result = subprocess.run(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}); log: {log}\n" + tail(log))
    return seconds


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def cached_task_runs(log: Path) -> int:
    """Task runs the log reports as finished in state Cached."""
    return len(re.findall(r"Finished in state Cached", log.read_text(errors="replace")))


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_flow_args(argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_orchestration", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="output directory for both runs (must not exist; default: a temporary one)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the output directory and logs")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-orchestration-"))
    output_dir = args.output_dir or workdir / "outputs"
    if output_dir.exists():
        parser.error(f"{output_dir} exists: a cold run needs a fresh output directory")
    env = flow_env(workdir)
    try:
        print(f"python -m flows.full --output-dir {output_dir} {' '.join(extra)}".rstrip(), flush=True)
        cold = run_flow(output_dir, extra, env, workdir / "cold.log")
        print(f"cold run: {cold:8.1f} s", flush=True)
        warm = run_flow(output_dir, extra, env, workdir / "warm.log")
        cached = cached_task_runs(workdir / "warm.log")
        print(f"warm run: {warm:8.1f} s  ({cached} task runs Cached)")
        print(f"warm/cold ratio: {warm / cold:.3f}  (speed-up x{cold / warm:.1f})")
    finally:
        if args.keep:
            print(f"kept: {output_dir} and logs in {workdir}")
        else:
            if args.output_dir is not None:
                shutil.rmtree(output_dir, ignore_errors=True)
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
