"""XGBoost and LightGBM through their scikit-learn APIs, as the registry's ``xgboost`` and ``lightgbm``.

XGBoost's classifier wants the labels ``0..n-1``; :class:`XGBLabelClassifier` takes any labels (strings
such as the penguins' species), like every scikit-learn classifier, and gives them back from ``predict``
and ``classes_``. LightGBM's classifier already does. Both take blanks (NaN) as they are; threads are set
by the service (one per fit), results are deterministic for a fixed ``random_state``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.preprocessing import LabelEncoder
from xgboost import XGBClassifier, XGBRegressor

__all__ = ["LGBMClassifier", "LGBMRegressor", "XGBLabelClassifier", "XGBRegressor"]


class XGBLabelClassifier(XGBClassifier):
    """``XGBClassifier`` for any labels: encoded to ``0..n-1`` for XGBoost, decoded on the way out."""

    def fit(self, X: Any, y: Any, **kwargs: Any) -> XGBLabelClassifier:
        self._labels = LabelEncoder().fit(np.asarray(y))
        self._decoded = False  # while XGBoost fits, classes_ is its own 0..n-1
        super().fit(X, self._labels.transform(np.asarray(y)), **kwargs)
        self._decoded = True
        return self

    @property
    def classes_(self) -> np.ndarray:
        if getattr(self, "_decoded", False):
            return self._labels.classes_
        return np.arange(self.n_classes_)

    def predict(self, X: Any, **kwargs: Any) -> np.ndarray:
        return self._labels.classes_[np.asarray(super().predict(X, **kwargs), dtype=int)]

    def to_portable(self) -> Any:
        """This classifier as XGBoost's and scikit-learn's own objects, for deployment exports, which must
        load without this project: XGBoost's ``XGBClassifier`` holding the same booster (it answers
        ``0..n-1``) inside a fitted soft-voting ``VotingClassifier`` of one, whose label encoder gives the
        original labels back. The same probabilities and the same predictions."""
        from sklearn.ensemble import VotingClassifier
        from sklearn.utils import Bunch

        plain = XGBClassifier(**self.get_params())
        plain.load_model(bytearray(self.get_booster().save_raw("ubj")))
        voting = VotingClassifier([("xgboost", plain)], voting="soft")
        voting.estimators_ = [plain]
        voting.named_estimators_ = Bunch(xgboost=plain)
        voting.le_ = self._labels
        voting.classes_ = self._labels.classes_
        return voting
