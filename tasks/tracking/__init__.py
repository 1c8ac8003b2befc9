"""Experiment tracking in MLflow (issue 30): every run's settings, hold-out scores, files and models,
and the champion as a registered-model alias. ``champion/`` and ``registry.jsonl`` stay the source
of truth; MLflow mirrors them, and a tracking failure never fails a run (`tasks.tracking.session`).

- `tasks.tracking.settings`: the ``tracking`` section of the parameters;
- `tasks.tracking.store`: which store (the embedded SQLite file, or a server) and a client for it;
- `tasks.tracking.record`: one MLflow run per pipeline run (params, metrics, artifacts, models);
- `tasks.tracking.registry`: the registered model ``living-things-<target>`` and its aliases;
- `tasks.tracking.session`: what a pipeline run calls (start, finish), each failure one warning;
- `tasks.tracking.fetch`: a registered version's files, for ``flows.predict --model models:/...``.
"""
