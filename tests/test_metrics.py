"""The label metrics computed from one confusion matrix equal scikit-learn's own functions."""

import numpy as np
import pytest

from models.training.metrics import classification_metrics, sklearn_classification_metrics


def check(y, y_pred, proba, classes):
    fast = classification_metrics(y, y_pred, proba, classes)
    reference = sklearn_classification_metrics(y, y_pred, proba, classes)
    assert fast.keys() == reference.keys()
    for key, value in reference.items():
        if isinstance(value, float):
            assert fast[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
        else:
            assert fast[key] == value, key


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("kind", ["int", "str"])
def test_same_numbers_as_scikit_learn(k, kind):
    rng = np.random.default_rng(k)
    labels = np.arange(k) + 10 if kind == "int" else np.array([f"c{i}" for i in range(k)], dtype=object)
    classes = np.asarray(sorted(labels.tolist()))
    y = labels[rng.integers(0, k, 2000)]
    proba = rng.integers(1, 8, (2000, k)).astype(float)  # many ties, for the AUC
    proba /= proba.sum(axis=1, keepdims=True)
    y_pred = classes[proba.argmax(axis=1)]
    check(y, y_pred, proba, classes)
    check(y, np.full_like(y_pred, classes[0]), proba, classes)  # classes never predicted
    y_missing = np.where(y == labels[-1], labels[0], y)
    check(y_missing, y_pred, proba, classes)  # a class absent from the truth


def test_labels_outside_the_classes_take_scikit_learns_path():
    y = np.array([0, 1, 2, 1, 0, 2])
    proba = np.tile([0.5, 0.5], (6, 1))
    with pytest.raises(ValueError):  # scikit-learn's own refusal (y_true holds a label beyond `classes`)
        classification_metrics(y, np.zeros(6, dtype=int), proba, np.array([0, 1]))
