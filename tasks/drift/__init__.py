"""Data drift: how the data validated today compare with the data the champion was trained on.

What a training run keeps of its data (backbone features of a subsample of the train rows, label
counts, the feature recipe) is `tasks.models.drift_reference`, next to the features it samples;
here, ``statistics``: the two-sample tests (scipy);
``check``: the comparison the validate flow runs; ``events``: the Prefect event it emits when
the data changed, and the trigger that matches it; ``rendering``: the ``data-drift`` artifact.
"""
