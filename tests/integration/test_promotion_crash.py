"""Kill -9 a process in the middle of promotions, many times: after `reconcile_champion` the champion
folder is always complete, and the registry's last promotion always names the run it serves."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tasks.layout import OutputDir, RunFolder
from tasks.results.champion import promote_run
from tasks.results.promotion import reconcile_champion
from tasks.results.registry import read_registry
from tasks.results.settings import GateSettings
from tests.helpers import REPO, write_fake_run

KILLS = 80
#: Kill delays are uniform over this many promotion times, so they land anywhere in a promotion.
SPAN = 2.5
SEED = 20240611

#: A child that imports the pipeline once, then for each "go <i>" forks a process that promotes run
#: A, B, A, ... forever (each forced, so each really swaps the champion folder) and prints its pid;
#: "reap <pid>" waits for that process and prints its wait status; "time <n>" prints the mean time
#: of n promotions by such a forked process. Forking a warm process instead of starting Python per
#: kill keeps 80 kills within seconds.
CHILD = """
import os, sys, time, traceback
from pathlib import Path
import tasks.results.submission
from tasks.results.champion import describe_run, promote_run
from tasks.results.settings import GateSettings
from tasks.logs import get_logger
runs, output = [Path(p) for p in sys.argv[1:3]], Path(sys.argv[3])
settings = GateSettings(force_promote=True)
describe_run(runs[0], "fake-data")  # warm up pandas before any clock starts
get_logger()  # and import Prefect, which the first log line of a promotion would do
print("ready", flush=True)
def promote_forever(i, count=None):
    while count is None or count > 0:
        promote_run(runs[i % 2], output, data_fingerprint="fake-data", settings=settings)
        i, count = i + 1, None if count is None else count - 1
for line in sys.stdin:
    command, number = line.split()
    if command == "reap":
        print(os.waitpid(int(number), 0)[1], flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        try:
            if command == "go":
                promote_forever(int(number))
            else:  # "time <n>": n promotions by a forked process, as the killed ones run them
                start = time.perf_counter()
                promote_forever(1, int(number))
                print((time.perf_counter() - start) / int(number), flush=True)
                os._exit(0)
        except BaseException:
            traceback.print_exc()
        os._exit(1)
    if command == "go":
        print(pid, flush=True)
    elif os.waitpid(pid, 0)[1] != 0:
        print("failed", flush=True)
"""


class Promoter:
    """The forking child above, driven line by line."""

    def __init__(self, runs: list[Path], output: Path, log: Path) -> None:
        self.log = log
        self.stderr = open(log, "w")  # a file, not a pipe: a chatty child never blocks on a full pipe
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, *map(str, runs), str(output)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        assert self.ask(None) == "ready"

    def ask(self, line: str | None) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        if line is not None:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        # One line per request, so nothing waits in Python's buffer and select sees every answer.
        waiting, _, _ = select.select([self.process.stdout], [], [], 120)
        assert waiting, f"the promoting child did not answer {line!r} within 120 s: {self.log.read_text()}"
        answer = self.process.stdout.readline().strip()
        assert answer, f"the promoting child died: {self.log.read_text()}"
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


def state_before_recovery(output: OutputDir) -> str:
    """Where the kill landed, read from the disk (the same test applies to any promotion code)."""
    root = output.root
    if output.promotion_intent.exists():
        record = (
            json.loads(output.champion.champion_record.read_text()) if output.champion.champion_record.is_file() else {}
        )
        intent = json.loads(output.promotion_intent.read_text())
        return "intent, committed" if record.get("promotion_id") == intent["promotion_id"] else "intent, not committed"
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".champion-")]
    if any(name.startswith(".champion-old-") for name in leftovers):
        return "old champion set aside"
    if leftovers:
        return "building"
    if not output.champion.root.exists():
        return "no champion folder"
    promoted = [e for e in read_registry(root) if e["decision"] == "promoted"]
    served = json.loads(output.champion.champion_record.read_text())["run"]
    if promoted[-1]["run"] != served:
        return "swapped, not recorded"
    return "between promotions"


def check_consistent(output: OutputDir, runs: dict[str, Path], actions: list[str], before: list[str]) -> list[str]:
    """What is wrong after reconciliation (empty: the invariant holds)."""
    problems = []
    champion = output.champion
    for path in (champion.champion_record, champion.submission, champion.metrics, champion.split):
        if not path.is_file():
            problems.append(f"{path} missing")
    if problems:
        return problems
    served = json.loads(champion.champion_record.read_text())["run"]
    source = RunFolder(runs[served])
    if champion.submission.read_text() != source.submission.read_text():
        problems.append(f"{champion.submission} is not run {served}'s submission")
    if champion.metrics.read_bytes() != source.metrics.read_bytes():
        problems.append(f"{champion.metrics} is not run {served}'s metrics")
    lines = output.registry.read_text().splitlines()
    if lines[: len(before)] != before:
        problems.append("registry.jsonl was rewritten, not appended to")
    promoted = [json.loads(line) for line in lines if json.loads(line)["decision"] == "promoted"]
    if promoted[-1]["run"] != served:
        problems.append(f"champion/ serves run {served} but the registry's last promotion names {promoted[-1]['run']}")
    leftovers = sorted(p.name for p in output.root.iterdir() if p.name.startswith((".champion-", ".promotion-")))
    if leftovers:
        problems.append(f"left behind: {leftovers}")
    unexplained = [a for a in actions if "unexplained" in a]
    if unexplained:
        problems.append(f"repaired a state no intent explains: {unexplained}")
    return problems


@pytest.mark.slow
def test_sigkill_at_random_instants_of_promotions_always_reconciles(tmp_path: Path) -> None:
    output = OutputDir(tmp_path / "outputs")
    runs = {
        name: write_fake_run(output.runs / name, tmp_path / "data", best_errors=errors, images=False)
        for name, errors in (("run-A", 2), ("run-B", 5))
    }
    order = [runs["run-A"], runs["run-B"]]
    promote_run(runs["run-A"], output.root, data_fingerprint="fake-data", settings=GateSettings(force_promote=True))
    rng = random.Random(SEED)
    landed: Counter[str] = Counter()
    failures: list[str] = []
    promoter = Promoter(order, output.root, tmp_path / "child.log")
    started = time.perf_counter()
    try:
        timed = promoter.ask("time 4")
        assert timed != "failed", f"promotions fail in the child: {promoter.log.read_text()}"
        promotion_time = float(timed)
        for i in range(KILLS):
            before = output.registry.read_text().splitlines()
            pid = int(promoter.ask(f"go {i}"))
            try:
                time.sleep(rng.uniform(0, SPAN * promotion_time))
            finally:  # even when the test is interrupted: no promoting process outlives it
                os.kill(pid, signal.SIGKILL)
            status = os.waitstatus_to_exitcode(int(promoter.ask(f"reap {pid}")))
            assert status == -signal.SIGKILL, (
                f"kill {i}: the promoting process ended by itself: {promoter.log.read_text()}"
            )
            landed[state_before_recovery(output)] += 1
            actions = reconcile_champion(output.root)
            failures += [f"kill {i}: {problem}" for problem in check_consistent(output, runs, actions, before)]
    finally:
        promoter.close()
    elapsed = time.perf_counter() - started

    mid = KILLS - landed["between promotions"]
    print(
        f"\n{KILLS} kills in {elapsed:.1f} s (one promotion {promotion_time * 1000:.0f} ms): "
        f"{mid} mid-promotion; landings {dict(landed)}; {len(failures)} inconsistent after reconciliation"
    )
    assert not failures, "\n".join(failures)
    assert mid >= KILLS // 4, f"only {mid} of {KILLS} kills landed inside a promotion: {dict(landed)}"
    assert landed["intent, not committed"] + landed["intent, committed"] > 0, dict(landed)
