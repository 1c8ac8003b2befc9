"""Using a published model on new images: its inputs recipe, inference with the training code path,
and the exported-model check that the champion gate runs before a promotion.

- `tasks.predict.recipe`: what a saved model eats (``models/<name>.inputs.json``);
- `tasks.predict.inference`: load a model and its recipe from a folder, compute its inputs for image
  paths exactly as training did, return class probabilities;
- `tasks.predict.inputs`: the images to predict (a folder or a CSV), validated like training's;
- `tasks.predict.source`: which model (the champion, through a snapshot, or a run's best model);
- `tasks.predict.output`: ``predictions.csv`` and ``prediction.json``;
- `tasks.predict.report`: the gallery and the Prefect artifacts;
- `tasks.predict.export_check`: the fresh-process reload check (TFX's InfraValidator).
"""
