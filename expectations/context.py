"""A Great Expectations context that lives inside one run folder.

Why not ``gx.get_context()``: with no arguments GX looks for a ``gx/`` project in the working
directory and otherwise makes an ephemeral context whose Data Docs go to a random temporary
folder. We want nothing written outside the run folder, no analytics, no progress bars in the
logs, and results that several Prefect tasks (each with its own context) add to the same Data
Docs. So the context is ephemeral (no ``great_expectations.yml``) but its expectation and
validation-result stores and its one Data Docs site are folders under the run's
``validation/`` folder (``tasks.layout.RunFolder`` names them); every context made on the same
run folder sees the same suites and results.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

import expectations.custom  # noqa: F401  (registers the custom Expectations before any load)
from tasks.layout import RunFolder

DOCS_SITE = "validation"


def make_context(run: RunFolder) -> Any:
    """An offline, quiet GX context whose stores and Data Docs are folders of this run."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    defaults = InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
    stores = dict(defaults.stores)
    for name, folder in (
        (defaults.expectations_store_name, run.gx_expectations),
        (defaults.validation_results_store_name, run.gx_validations),
    ):
        stores[name] = {
            "class_name": stores[name]["class_name"],
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder.resolve())},
        }
    config = DataContextConfig(
        store_backend_defaults=defaults,
        stores=stores,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={
            DOCS_SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(run.data_docs.resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def validate_frame(
    context: Any,
    suite: Any,
    frame: pd.DataFrame,
    index_columns: list[str],
    partial_count: int = 20,
    run_name: str | None = None,
) -> Any:
    """Validate one in-memory table against a suite; the result is stored for Data Docs.

    ``index_columns`` name the columns that identify an offending row in the result (for
    example the CSV row number and the filename), so a failure can say which row. ``run_name``
    (the run folder's name) labels the result in the Data Docs.
    """
    import great_expectations as gx

    name = suite.name
    suite = context.suites.add_or_update(suite)
    source = context.data_sources.add_or_update_pandas("in_memory")
    asset = source.get_asset(name) if name in source.get_asset_names() else source.add_dataframe_asset(name)
    batch_name = f"{name}_batch"
    batch = (
        asset.get_batch_definition(batch_name)
        if any(b.name == batch_name for b in asset.batch_definitions)
        else asset.add_batch_definition_whole_dataframe(batch_name)
    )
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    result_format = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": partial_count,
        "unexpected_index_column_names": [c for c in index_columns if c in frame.columns],
    }
    run_id = None
    if run_name:
        from great_expectations.core.run_identifier import RunIdentifier

        run_id = RunIdentifier(run_name=run_name, run_time=datetime.now(UTC))
    return definition.run(batch_parameters={"dataframe": frame}, result_format=result_format, run_id=run_id)


def build_docs(context: Any) -> Path:
    """(Re)build the run's Data Docs from every stored result; returns the index.html path."""
    urls = context.build_data_docs(site_names=[DOCS_SITE])
    url = urls[DOCS_SITE]
    return Path(url.removeprefix("file://"))
