"""The deployments: what `python -m deployments.serve` registers, and prefect.yaml agreeing with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments.prefect_yaml import POOL_SUFFIX
from deployments.serve import DEFAULT_CRON, DEFAULT_VALIDATE_CRON, ServeSettings, build_deployments, parse_settings
from flows.full import full_pipeline
from flows.params import PipelineParams
from flows.predict import PredictParams
from flows.predict import predict as predict_flow
from flows.validate import ValidateParams, validate
from tests.helpers import REPO  # noqa: E402


def by_name(deployments: list[Any]) -> dict[str, Any]:
    return {f"{d.flow_name}/{d.name}": d for d in deployments}


def crons(deployment: Any) -> list[tuple[str, str]]:
    return [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules]


def test_three_deployments_with_their_schedules(tmp_path: Path) -> None:
    deployments = by_name(build_deployments(ServeSettings(output_dir=tmp_path / "out")))
    manual = f"{full_pipeline.name}/manual"
    weekly = f"{full_pipeline.name}/weekly-retrain"
    daily = f"{validate.name}/daily-validate"
    predict = f"{predict_flow.name}/predict"
    assert set(deployments) == {manual, weekly, daily, predict}
    assert crons(deployments[predict]) == []
    assert crons(deployments[manual]) == []
    assert crons(deployments[weekly]) == [(DEFAULT_CRON, "UTC")]
    assert crons(deployments[daily]) == [(DEFAULT_VALIDATE_CRON, "UTC")]
    for deployment in deployments.values():
        assert deployment.parameters == {"params": {"data": {"output_dir": str((tmp_path / "out").resolve())}}}
        assert "living-things" in deployment.tags and deployment.description
        assert deployment.entrypoint in ("flows.full.full_pipeline", "flows.validate.validate", "flows.predict.predict")
    # One training run at a time; validation is not limited.
    assert deployments[manual].concurrency_limit == deployments[weekly].concurrency_limit == 1
    assert deployments[daily].concurrency_limit is None and deployments[predict].concurrency_limit is None


def test_settings_reach_the_deployments(tmp_path: Path) -> None:
    settings = ServeSettings(
        cron="30 2 * * 0",
        validate_cron="15 5 * * *",
        timezone="Europe/Paris",
        data_dir=tmp_path / "data",
        output_dir=tmp_path / "out",
        weekly_refresh=True,
    )
    deployments = by_name(build_deployments(settings))
    weekly = deployments[f"{full_pipeline.name}/weekly-retrain"]
    assert crons(weekly) == [("30 2 * * 0", "Europe/Paris")]
    assert crons(deployments[f"{validate.name}/daily-validate"]) == [("15 5 * * *", "Europe/Paris")]
    assert weekly.parameters["params"]["data"]["data_dir"] == str((tmp_path / "data").resolve())
    assert weekly.parameters["params"]["runtime"]["refresh"] is True
    assert "runtime" not in deployments[f"{full_pipeline.name}/manual"].parameters["params"]
    # Every default is a valid parameter set for its flow.
    PipelineParams(**weekly.parameters["params"])
    ValidateParams(**deployments[f"{validate.name}/daily-validate"].parameters["params"])


def test_manual_deployment_form_exposes_every_parameter() -> None:
    manual = by_name(build_deployments())[f"{full_pipeline.name}/manual"]
    schema = manual._parameter_openapi_schema.model_dump()
    assert list(schema["properties"]) == ["params"]
    form = schema["definitions"]["PipelineParams"]
    assert list(form["properties"]) == list(PipelineParams.model_fields)  # one group per section
    split = schema["definitions"]["SplitSettings"]["properties"]
    assert split["target"]["enum"] == ["coarse", "fine"]
    assert split["seed"]["description"]  # help text shows in the UI form
    assert manual.enforce_parameter_schema


def test_command_line(tmp_path: Path) -> None:
    settings = parse_settings(["--cron", "0 4 * * 2", "--timezone", "America/New_York", "--output-dir", str(tmp_path)])
    assert settings.cron == "0 4 * * 2" and settings.timezone == "America/New_York"
    assert settings.validate_cron == DEFAULT_VALIDATE_CRON and settings.output_dir == tmp_path
    for bad in (["--cron", "every monday"], ["--timezone", "Mars/Olympus"]):
        with pytest.raises(SystemExit) as exit_info:
            parse_settings(bad)
        assert exit_info.value.code == 2


def test_serve_help_runs_without_a_server() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deployments.serve", "--help"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0 and "--validate-cron" in result.stdout


# --- prefect.yaml -----------------------------------------------------------------------------


def load_prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def test_prefect_yaml_is_generated_from_the_deployment_table() -> None:
    from deployments.prefect_yaml import render

    assert (REPO / "prefect.yaml").read_text(encoding="utf-8") == render(), (
        "prefect.yaml is stale: run python -m deployments.prefect_yaml"
    )


def test_prefect_yaml_matches_the_served_deployments() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel

    config = load_prefect_yaml()
    PrefectYamlModel.model_validate(config)  # the schema `prefect deploy` reads it with
    declared = {d["name"]: d for d in config["deployments"]}
    served = {f"{d.name}{POOL_SUFFIX}": d for d in build_deployments()}
    assert set(declared) == set(served)  # the same deployments, under names that never collide
    for name, deployment in declared.items():
        assert deployment["work_pool"]["name"] == "living-things-process"
        assert deployment["entrypoint"] == served[name].entrypoint
        schedules = [(s["cron"], s.get("timezone", "UTC")) for s in deployment.get("schedules") or []]
        assert schedules == crons(served[name])
        limit = deployment.get("concurrency_limit")
        assert (limit["limit"] if isinstance(limit, dict) else limit) == served[name].concurrency_limit
    training = [d for d in declared.values() if "training" in d["tags"]]
    assert training and all(d["work_pool"]["work_queue_name"] == "gpu" for d in training)


def test_prefect_yaml_entrypoints_load_real_flows() -> None:
    from prefect.flows import load_flow_from_entrypoint

    expected = {
        "manual": full_pipeline.name,
        "weekly-retrain": full_pipeline.name,
        "daily-validate": validate.name,
        "predict": predict_flow.name,
    }
    seen = []
    for deployment in load_prefect_yaml()["deployments"]:
        base = deployment["name"].removesuffix(POOL_SUFFIX)
        loaded = load_flow_from_entrypoint(deployment["entrypoint"], use_placeholder_flow=False)
        assert loaded.name == expected[base]
        # The declared parameters validate against the flow's parameter model and mean what they say.
        given = deployment["parameters"]["params"]
        if loaded.name == predict_flow.name:  # its images have no default: the user names them
            validated = PredictParams(images=Path("images"), **given).model_dump(mode="json")
        else:
            model = PipelineParams if loaded.name == full_pipeline.name else ValidateParams
            validated = model(**given).model_dump(mode="json")
        assert_declared(given, validated, base)
        seen.append(base)
    assert sorted(seen) == sorted(expected)  # every deployment is declared, none twice


def assert_declared(given: Any, validated: Any, where: str) -> None:
    """Every value a deployment declares is the value its flow's parameter model keeps."""
    if isinstance(given, dict):
        for key, value in given.items():
            assert key in validated, f"{where}: {key}"
            assert_declared(value, validated[key], f"{where}.{key}")
    else:
        assert str(given) == str(validated), f"{where}: {given!r} became {validated!r}"
