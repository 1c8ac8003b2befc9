"""Results stage: predictions, evaluation, submission, plots, report and the champion gate."""
