"""Batch prediction with a published model: which model (the champion, through a snapshot, or a
run's best), the images to classify, and what is written.

- `tasks.predict.inputs`: the images to predict (a folder or a CSV), validated like training's;
- `tasks.predict.source`: which model (the champion, through a snapshot, or a run's best model);
- `tasks.predict.output`: ``predictions.csv`` and ``prediction.json``;
- `tasks.predict.report`: the gallery and the Prefect artifacts.

A saved model's inputs recipe (`tasks.models.recipe`) and the inference that follows it
(`tasks.models.inference`) live with the models, one floor down, because the champion gate
(`tasks.results`) uses them too (docs/architecture.md).
"""
