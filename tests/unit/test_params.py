"""The sectioned parameters: one default per setting, a CLI grouped by section, a UI form with
sections and list defaults."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import flows
import tasks
from flows.cli import parse_model
from flows.params import LEGACY_FLAGS, PipelineParams
from tasks.data.settings import DataSettings
from tasks.models.embeddings import EmbeddingSpec
from tasks.models.settings import BaselineSettings, TransferSettings

REPO = Path(__file__).resolve().parents[2]
#: Fields of other classes that share a section field's name but mean something else.
SAME_NAME_OTHER_MEANING = {
    ("SampleSpec", "seed"): "the seed the synthetic images are drawn with, not the split's",
    ("ServeSettings", "output_dir"): "the served deployments' default, taken from DataSettings (asserted equal below)",
    ("ServeSettings", "data_dir"): "the served deployments' default data dir (empty, like DataSettings')",
}


def sections() -> dict[str, type[BaseModel]]:
    return {name: field.annotation for name, field in PipelineParams.model_fields.items()}  # type: ignore[misc]


def project_classes() -> list[type]:
    """Every class defined in a light project module (no TF/GX import needed for settings)."""
    found: list[type] = []
    for package in (tasks, flows):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if (
                info.name.split(".")[-1] in ("transfer", "backbones", "lite0", "devices", "images")
                or "validation" in info.name
                and not info.name.endswith("settings")
            ):
                continue  # Keras / GX importers: checked for settings by the flow test below instead
            module = importlib.import_module(info.name)
            found += [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == info.name]
    import deployments.definitions

    found += [deployments.definitions.ServeSettings]
    return found


def defaulted_fields(cls: type) -> dict[str, Any]:
    """Field name -> default, for the fields of a pydantic model or dataclass that have one."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return {n: f.get_default(call_default_factory=True) for n, f in cls.model_fields.items() if not f.is_required()}
    if dataclasses.is_dataclass(cls):
        return {
            f.name: f.default
            for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        }
    return {}


def test_no_setting_has_two_defaults() -> None:
    section_types = set(sections().values())
    owners = {name: section for section in section_types for name in section.model_fields}
    clashes = []
    for cls in project_classes():
        if cls in section_types or cls is PipelineParams:
            continue
        for name in defaulted_fields(cls):
            if name in owners and (cls.__name__, name) not in SAME_NAME_OTHER_MEANING:
                clashes.append(f"{cls.__module__}.{cls.__name__}.{name} (also {owners[name].__name__}.{name})")
    assert not clashes, f"settings with a second default: {clashes}"


def test_served_defaults_are_the_pipelines() -> None:
    from deployments.definitions import ServeSettings

    assert ServeSettings().output_dir == DataSettings().output_dir
    assert ServeSettings().data_dir is None and DataSettings().data_dir is None


def test_task_settings_built_from_default_params_equal_the_section_defaults() -> None:
    params = PipelineParams()
    # Each section is the settings type its tasks take: nothing is copied field by field.
    assert params.baselines == BaselineSettings() and params.transfer == TransferSettings()
    transfer = params.transfer.resolved()
    assert transfer == params.transfer  # the default preset changes nothing
    spec = EmbeddingSpec.of(transfer, params.split.seed)
    for name in ("backbone", "weights", "views", "batch_size"):
        assert getattr(spec, name) == TransferSettings.model_fields[name].default
    assert spec.seed == params.split.seed and spec.image_size == 224 and spec.pooled
    assert not [f.name for f in dataclasses.fields(EmbeddingSpec) if f.default is not dataclasses.MISSING]
    sample = params.data.sample_spec()
    assert (sample.per_family, sample.test_per_family) == (
        DataSettings.model_fields["sample_per_family"].default,
        DataSettings.model_fields["sample_test_per_family"].default,
    )
    on_features = params.baselines.on_embeddings()
    assert on_features.rf_n_estimators == BaselineSettings.model_fields["rf_n_estimators"].default
    assert (on_features.svm_c, on_features.svm_gamma, on_features.rf_max_depth) == (
        BaselineSettings.model_fields["embedding_svm_c"].default,
        BaselineSettings.model_fields["embedding_svm_gamma"].default,
        BaselineSettings.model_fields["embedding_rf_max_depth"].default,
    )


def test_original_preset_overrides_the_transfer_section() -> None:
    original = TransferSettings(preset="original", stage2_epochs=1).resolved()
    assert original.backbone == "efficientnetv2s" and original.head == "flatten-dense"
    assert original.stage2_epochs == 1  # what the preset does not name stays the user's


def parse(*argv: str) -> PipelineParams:
    return parse_model(PipelineParams, list(argv), "test", "test", legacy=LEGACY_FLAGS)


def test_sectioned_flat_and_legacy_flags_set_the_same_field() -> None:
    assert parse("--transfer.stage1-epochs", "5").transfer.stage1_epochs == 5
    assert parse("--stage1-epochs", "5").transfer.stage1_epochs == 5
    assert parse("--baselines", "svm").baselines.pixel_models == ["svm"]
    assert parse("--baselines").baselines.pixel_models == []
    assert parse("--embedding-baselines", "logreg").baselines.embedding_models == ["logreg"]
    assert parse("--no-transfer").transfer.enabled is False
    assert parse("--tracking.enabled", "false").tracking.enabled is False  # as other tools spell it
    assert parse("--tracking.enabled", "No", "--transfer.enabled").tracking.enabled is False
    assert parse("--tracking.enabled", "true").tracking.enabled is True
    assert parse("--gate-min-improvement", "0.1").gate.min_improvement == 0.1
    assert parse("--data-dir", "/d", "--target", "fine").data.data_dir == Path("/d")
    assert parse("--max-bad-image-fraction", "0.2").validation.max_bad_image_fraction == 0.2
    assert parse().model_dump() == PipelineParams().model_dump()


def test_nullable_fields_take_none_and_unions_parse() -> None:
    assert parse("--rf-max-depth", "none").baselines.rf_max_depth is None
    assert parse("--rf-max-depth", "12").baselines.rf_max_depth == 12
    assert parse("--embedding-svm-gamma", "0.5").baselines.embedding_svm_gamma == 0.5
    assert parse("--embedding-svm-gamma", "scale").baselines.embedding_svm_gamma == "scale"


@pytest.mark.parametrize(
    "argv",
    [
        ["--holdout-fraction", "2"],
        ["--backbone", "resnet"],
        ["--split.seed", "x"],
        ["--tracking.enabled", "maybe"],
        ["--no-tracking.enabled", "true"],
    ],
)
def test_bad_values_exit_2_naming_the_flag(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    assert argv[0].lstrip("-").split(".")[-1] in capsys.readouterr().err


def test_help_is_grouped_by_section() -> None:
    from flows.cli import build_parser

    text = build_parser(PipelineParams, "python -m flows.full", "test", LEGACY_FLAGS).format_help()
    positions = [text.index(f"\n{section}:") for section in sections()]
    assert positions == sorted(positions)  # every section is a group, in the model's order
    transfer_group = text[text.index("\ntransfer:") : text.index("\ngate:")]
    assert "--transfer.stage1-epochs" in transfer_group and "--rf-n-estimators" not in transfer_group


def test_ui_form_has_sections_and_list_defaults() -> None:
    """What the Prefect UI renders: the flow's parameter schema."""
    from prefect.utilities.callables import parameter_schema

    from flows.full import full_pipeline

    schema = parameter_schema(full_pipeline.fn).model_dump()
    definitions = schema["definitions"]
    form = definitions["PipelineParams"]["properties"]
    assert list(form) == list(sections())
    for name, section in sections().items():
        assert form[name]["$ref"].endswith(f"/{section.__name__}") or form[name].get("allOf")
        assert definitions[section.__name__]["properties"]
    baselines = definitions["BaselineSettings"]["properties"]
    assert baselines["pixel_models"]["default"] == ["random_forest", "svm"]  # not "0 selected"
    assert baselines["embedding_models"]["default"] == ["logreg", "random_forest", "svm"]
    assert "empty" in definitions["TransferSettings"]["properties"]["image_size"]["description"]


# Refused values: one message naming the flag, on the command line and in the model alike.


def float_leaves() -> list[str]:
    """Dotted names of every parameter that takes a float (alone or in a union)."""
    from flows.cli import leaf_fields, unwrap_optional

    def takes_float(annotation: Any) -> bool:
        inner, _ = unwrap_optional(annotation)
        return inner is float or float in getattr(inner, "__args__", ())

    return [dest for dest, field in leaf_fields(PipelineParams) if takes_float(field.annotation)]


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def nested(dest: str, value: Any) -> dict[str, Any]:
    section, name = dest.split(".")
    return {section: {name: value}}


def refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line the command line prints for argv (exit code 2)."""
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1
    return lines[0]


def test_every_float_parameter_is_found() -> None:
    assert {"split.holdout_fraction", "split.undersample_ratio", "baselines.svm_gamma"} <= set(float_leaves())


@pytest.mark.parametrize("word", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("dest", float_leaves())
def test_floats_refuse_nan_and_inf(dest: str, word: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = refusal([f"{flag(dest)}={word}"], capsys)  # "=": argparse would take a bare -inf for a flag
    assert f"{flag(dest)}/" in line and "finite number" in line and line.count("finite") == 1
    with pytest.raises(ValidationError, match="finite number"):
        PipelineParams(**nested(dest, float(word)))


MISSING_WEIGHTS = "/nonexistent.h5"
REFUSED = [
    ("split.seed", "-1", "greater than or equal to 0"),
    ("split.seed", str(2**32), "less than or equal to 4294967295"),
    ("data.output_dir", "", "a path is needed"),
    ("data.output_dir", "  ", "a path is needed"),
    ("data.data_dir", "", "a path is needed"),
    ("transfer.weights", MISSING_WEIGHTS, f"file {MISSING_WEIGHTS} does not exist"),
    ("transfer.weights", "imagenet21k", "file imagenet21k does not exist"),
    ("split.undersample_ratio", "inf", "finite number"),
    ("split.holdout_fraction", "nan", "finite number"),
    ("runtime.dask_address", "garbage", "garbage is not a Dask scheduler address"),
    ("runtime.dask_address", "tcp://host", "missing port"),
    ("runtime.dask_address", "tcp://host:99999", "port of 1 to 65535"),
    ("runtime.dask_address", "foo://host:1", "unknown scheme foo://"),
    ("transfer.stage1_c", "0", "cv or a number greater than 0"),
    ("baselines.logreg_c", "-1", "cv or a number greater than 0"),
    ("baselines.logreg_c", "auto", "cv or a number greater than 0"),
]


@pytest.mark.parametrize(("dest", "text", "reason"), REFUSED)
def test_refused_on_the_command_line(dest: str, text: str, reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = refusal([flag(dest), text], capsys)
    assert f": error: {flag(dest)}/" in line and reason in line
    flat = flag(dest.split(".")[-1])
    assert reason in refusal([flat, text], capsys)  # the flat spelling of the same flag


@pytest.mark.parametrize(("dest", "text", "reason"), REFUSED)
def test_refused_by_the_model(dest: str, text: str, reason: str) -> None:
    """What a UI-triggered or deployment run gets: the same refusal, before any work."""
    with pytest.raises(ValidationError, match=reason.replace("+", r"\+")) as error:
        PipelineParams.model_validate(nested(dest, text))
    assert [tuple(e["loc"][:2]) for e in error.value.errors()] == [tuple(dest.split("."))]


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["--seed", "0"], "split.seed", 0),
        (["--seed", str(2**32 - 1)], "split.seed", 2**32 - 1),
        (["--data-dir", "none"], "data.data_dir", None),
        (["--weights", "random"], "transfer.weights", "random"),
        (["--dask-address", "tcp://10.0.0.5:8786"], "runtime.dask_address", "tcp://10.0.0.5:8786"),
        (["--dask-address", "10.0.0.5:8786"], "runtime.dask_address", "10.0.0.5:8786"),
        (["--dask-address", "tls://[::1]:8786"], "runtime.dask_address", "tls://[::1]:8786"),
        (["--dask-address", "ucx://gpu-node:13337"], "runtime.dask_address", "ucx://gpu-node:13337"),
        (["--dask-address", "inproc://10.0.0.5/1234/1"], "runtime.dask_address", "inproc://10.0.0.5/1234/1"),
        (["--svm-gamma", "0.5"], "baselines.svm_gamma", 0.5),
        (["--embedding-svm-gamma", "scale"], "baselines.embedding_svm_gamma", "scale"),
        (["--logreg-c", "0.5"], "baselines.logreg_c", 0.5),
        (["--stage1-c", "cv"], "transfer.stage1_c", "cv"),
    ],
)
def test_valid_values_still_pass(argv: list[str], dest: str, value: Any) -> None:
    section, name = dest.split(".")
    assert getattr(getattr(parse(*argv), section), name) == value


def test_an_existing_weights_file_passes(tmp_path: Path) -> None:
    weights = tmp_path / "backbone.weights.h5"
    weights.write_bytes(b"")
    assert parse("--transfer.weights", str(weights)).transfer.weights == str(weights)


@pytest.mark.parametrize(
    ("address", "ok"),
    [("tcp://h:8786", True), ("h:8786", True), ("tls://[::1]:8786", True), ("inproc://x/1/2", True)]
    + [("garbage", False), ("tcp://h", False), ("foo://h:1", False), ("", False)],
)
def test_dask_address_without_distributed(address: str, ok: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from flows.params import dask_address_problem

    monkeypatch.setitem(sys.modules, "distributed.comm.addressing", None)  # import fails: the regex judges
    assert (dask_address_problem(address) is None) is ok


def test_other_path_parameters_refuse_empty_strings() -> None:
    from deployments.definitions import ServeSettings
    from flows.predict import PredictParams

    for build in (
        lambda: ServeSettings(output_dir=""),
        lambda: ServeSettings(data_dir=""),
        lambda: PredictParams(images=""),
    ):
        with pytest.raises(ValidationError, match="a path is needed"):
            build()


def test_notify_url_is_a_secret_on_the_command_line() -> None:
    from fastapi.encoders import jsonable_encoder

    url = "https://user:hunter2@hooks.example/T0/B0"
    params = parse("--runtime.notify-url", url, "--notify-secret-block", "team-webhook")
    assert params.runtime.notify_url is not None and params.runtime.notify_url.get_secret_value() == url
    assert params.runtime.notify_secret_block == "team-webhook"
    for shown in (repr(params), params.model_dump_json(), str(jsonable_encoder({"params": params}))):
        assert "hunter2" not in shown  # what Prefect stores for an in-process call (Flow.serialize_parameters)
