"""Stage 1 as a linear probe (LP-FT, Kumar et al. 2022): the Keras head *is* the fitted probe.

A multinomial logistic regression on standardised backbone features is fitted to convergence
(L-BFGS, L2 strength ``1 / C``), and its standardisation is folded into the weights, so the head's
Dense layer computes exactly the probe's logits on raw features:

    z = ((x - mean) / scale) @ W.T + b  =  x @ (W / scale).T + (b - (mean / scale) @ W.T)

Why: a head trained by Adam and chosen by early stopping on a validation slice of a few images
per class was no better than the probe and unstable across splits (its selection was noise);
a convex fit has no epoch to select. Stage 2 then fine-tunes from this head, so it starts from a
good classifier instead of distorting the backbone's features to fit a random one.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np


@dataclass(frozen=True)
class ProbeWeights:
    """Dense-layer weights (``features x classes``) and biases (``classes``) of a folded probe."""

    kernel: np.ndarray
    bias: np.ndarray


#: Bias of a class absent from the probe's training rows: the head never predicts it.
ABSENT_CLASS_BIAS = -1e4


def fit_probe(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    c: float,
    class_weight: dict[int, float] | None,
    seed: int,
) -> ProbeWeights:
    """Fit the probe (the same model as the ``logreg`` baseline, plus the class weights the
    transfer model trains with) and fold its standardisation into Dense weights."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    # float32, as the ``logreg`` baseline fits (L-BFGS takes it since scikit-learn 1.9), standardised
    # in place in this one copy: a float64 copy plus a scaled one held 4x the features' bytes.
    x = np.array(features.reshape(len(features), -1), dtype=np.float32)
    scaler = StandardScaler(copy=False).fit(x)
    probe = LogisticRegression(C=c, max_iter=3000, class_weight=class_weight, random_state=seed)
    probe.fit(scaler.transform(x), labels)
    coef, intercept = probe.coef_, probe.intercept_
    if len(probe.classes_) == 2:  # sklearn stores one row for two classes: logits (-z/2, z/2)
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    kernel = np.zeros((x.shape[1], n_classes))
    bias = np.full(n_classes, ABSENT_CLASS_BIAS)
    for row, label in enumerate(probe.classes_.astype(int)):
        kernel[:, label] = coef[row] / scaler.scale_
        bias[label] = intercept[row] - (scaler.mean_ / scaler.scale_) @ coef[row]
    return ProbeWeights(kernel=kernel.astype(np.float32), bias=bias.astype(np.float32))


def load_into_head(head: keras.Model, weights: ProbeWeights) -> None:
    """Put the probe into the head's classifier layer (``head_probs``: Dense + softmax)."""
    layer = head.get_layer("head_probs")
    layer.set_weights([weights.kernel, weights.bias])
