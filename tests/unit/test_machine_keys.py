"""What depends on the machine (stage-2 image budget, precision, device count, backend) is resolved
before the transfer step's cache key is computed and is part of it: a GPU run on an output
directory a CPU run filled never gets the CPU-trained model back from the cache."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from flows.caching import step_dir
from flows.steps import TRANSFER_CODE, transfer_task
from tasks.data.settings import SplitSettings
from tasks.models import devices
from tasks.models.devices import DevicePlan, for_machine, survey_devices
from tasks.models.settings import TransferSettings
from tasks.models.sizing import CPU_STAGE2_IMAGES


def plan_with_gpus(monkeypatch: pytest.MonkeyPatch, capabilities: list[float], precision: str = "auto") -> DevicePlan:
    """`survey_devices` on a machine faked to have these GPUs (compute capabilities)."""
    monkeypatch.setattr(devices, "gpu_capabilities", lambda: capabilities)
    return survey_devices(precision)  # type: ignore[arg-type]


def transfer_key(settings: TransferSettings, machine: DevicePlan, table: Path) -> str | None:
    ctx = SimpleNamespace(task=SimpleNamespace(fn=transfer_task.fn, name=transfer_task.name))
    inputs = {"table": table, "settings": settings, "split": SplitSettings(), "machine": machine}
    return transfer_task.cache_policy.compute_key(ctx, inputs, {})  # type: ignore[union-attr]


def test_the_survey_resolves_budget_and_precision_for_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, h100 = plan_with_gpus(monkeypatch, []), plan_with_gpus(monkeypatch, [9.0])
    assert (cpu.n_gpus, cpu.precision) == (0, "float32") and (h100.n_gpus, h100.precision) == (1, "mixed_bfloat16")
    on_cpu, on_gpu = for_machine(TransferSettings(), cpu), for_machine(TransferSettings(), h100)
    assert (on_cpu.stage2_max_images, on_cpu.precision) == (CPU_STAGE2_IMAGES, "float32")
    assert (on_gpu.stage2_max_images, on_gpu.precision) == (0, "mixed_bfloat16")  # 0: every image
    asked = TransferSettings(stage2_max_images=500, precision="float32")
    assert for_machine(asked, plan_with_gpus(monkeypatch, [9.0], "float32")) == asked  # what the user set stays


def test_a_cpu_result_is_not_the_cache_entry_of_a_gpu_plan(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    table = tmp_path / "table.csv"
    table.write_text("filename,role\na.jpg,train\n")
    plans = {
        "cpu": plan_with_gpus(monkeypatch, []),
        "1 gpu": plan_with_gpus(monkeypatch, [9.0]),
        "8 gpus": plan_with_gpus(monkeypatch, [9.0] * 8),
        "old gpu": plan_with_gpus(monkeypatch, [7.0]),
    }
    keys = {name: transfer_key(for_machine(TransferSettings(), plan), plan, table) for name, plan in plans.items()}
    folders = {
        name: step_dir(
            tmp_path / "cache", "transfer", TRANSFER_CODE, settings=for_machine(TransferSettings(), plan), machine=plan
        )
        for name, plan in plans.items()
    }
    assert len(set(keys.values())) == len(plans) and len(set(folders.values())) == len(plans)
    again = transfer_key(for_machine(TransferSettings(), plans["cpu"]), plans["cpu"], table)
    assert again == keys["cpu"]  # the same machine still finds its own entry
