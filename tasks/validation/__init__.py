"""Data validation: Great Expectations suites on a Kaggle-layout data directory, before anything
else reads it. One module per concern; import the one you need (this package imports nothing, so
``tasks.validation.settings`` stays free of Great Expectations and pandas):

- `tasks.validation.settings`: ``ValidationSettings``, the thresholds (a section of the flow parameters).
- `tasks.validation.report`: ``ValidationReport``, ``SuiteSummary``, ``ValidationFailed``.
- `tasks.validation.tables`: the raw CSVs and the image scan as the tables the suites check.
- `tasks.validation.image_scan`: the parallel, cached scan of every referenced image.
- `tasks.validation.gx_results`: GX results as plain outcomes and readable messages.
- `tasks.validation.stages`: ``validate_csvs``, ``validate_images``, ``publish_validation``.
- `tasks.validation.rendering`: the offline HTML summary and the Prefect markdown artifact.

The sequence itself is the ``flows.validate.validate_dataset`` flow; the Prefect task wrappers
are in ``flows.steps``.
"""
