"""Transfer learning in two stages (Keras' fine-tuning guide; docs/original-project.md).

Stage 1 trains a new head on cached backbone features (`tasks.models.embeddings`), so the frozen
backbone never runs per epoch. Stage 2 puts the backbone under the trained head, unfreezes its
top blocks (BatchNorm stays frozen and the backbone is called with ``training=False``) and
fine-tunes at a low learning rate on augmented images. Both stages stop early on the macro-F1 of
a stratified validation slice carved from the TRAIN role; the hold-out is never seen here.
Stage 2 checkpoints every epoch under a key of its inputs (`tasks.models.checkpoints`), so a rerun
after a crash continues from the last completed epoch, and a rerun after success reuses the result.

One module per concern: `rows` (which table rows each stage fits and validates on), `stage1`,
`stage2`, `publish` (predictions, model files, recipes, history) and `train`, the short
orchestrator (`train_transfer`). The model itself is plain Keras 3 (no ``tf.*``), so it also runs
on the JAX backend.
"""
