"""The sectioned parameters: one default per setting, a CLI grouped by section, a UI form with
sections and list defaults."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

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
    assert parse("--gate-min-improvement", "0.1").gate.min_improvement == 0.1
    assert parse("--data-dir", "/d", "--target", "fine").data.data_dir == Path("/d")
    assert parse("--max-bad-image-fraction", "0.2").validation.max_bad_image_fraction == 0.2
    assert parse().model_dump() == PipelineParams().model_dump()


def test_nullable_fields_take_none_and_unions_parse() -> None:
    assert parse("--rf-max-depth", "none").baselines.rf_max_depth is None
    assert parse("--rf-max-depth", "12").baselines.rf_max_depth == 12
    assert parse("--embedding-svm-gamma", "0.5").baselines.embedding_svm_gamma == 0.5
    assert parse("--embedding-svm-gamma", "scale").baselines.embedding_svm_gamma == "scale"


@pytest.mark.parametrize("argv", [["--holdout-fraction", "2"], ["--backbone", "resnet"], ["--split.seed", "x"]])
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
