"""Data stage: the Kaggle-layout table, the embedded sample, taxonomy and the hold-out split."""
