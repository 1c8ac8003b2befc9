"""Plain, typed functions that do the pipeline's work, plus thin Prefect task wrappers."""
