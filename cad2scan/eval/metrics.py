"""Segmentation metrics: per-class average precision (AP, AmAP) and IoU (mIoU).

Everything is vectorised numpy: one sort per class for AP, one ``bincount`` for the
confusion matrix. Scores of many scans are gathered by :class:`EvalAccumulator`, which
keeps them as float32 so that a whole validation set fits in memory.

Conventions
-----------
- ``labels`` are class ids ``0 .. C-1``; points with ``labels == ignore_index`` take no
  part in any metric.
- Confusion matrices are indexed ``conf[true_class, predicted_class]``.
- :class:`EvalResult` reports AP and IoU in percent, like the paper's tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PR_CURVE_POINTS = 200  # points kept per precision-recall curve in results


def _to_numpy(array: Any) -> np.ndarray:
    """Accept numpy arrays, lists, or torch tensors (on any device) without importing torch."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def precision_recall_curve(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of "score >= t" at every distinct score value t, highest first.

    Equal scores form one threshold, so the order of ties does not matter. The curve is the
    one :func:`average_precision` integrates: ``AP = step_area(precision, recall)``.

    Args:
        scores: (N,) float, higher means "more likely positive"; must not contain NaN.
        positives: (N,) bool, the ground truth.

    Returns:
        ``precision, recall``: (T,) float64 each, T = number of distinct scores, recall
        non-decreasing and ending at 1; both empty when there is no positive.
    """
    scores = _to_numpy(scores).astype(np.float64, copy=False).reshape(-1)
    positives = _to_numpy(positives).astype(bool, copy=False).reshape(-1)
    if scores.shape != positives.shape:
        raise ValueError(f"scores {scores.shape} and positives {positives.shape} differ in length")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    num_positives = int(np.count_nonzero(positives))
    if num_positives == 0:
        return np.zeros(0), np.zeros(0)

    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    sorted_positives = positives[order]
    # Last index of every group of equal scores: one threshold per distinct score value.
    # (``!=`` rather than ``np.diff`` so that runs of equal infinities stay grouped.)
    group_ends = np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1])
    threshold_ends = np.append(group_ends, sorted_scores.size - 1)

    true_positives = np.cumsum(sorted_positives, dtype=np.int64)[threshold_ends]
    predicted_positives = threshold_ends + 1
    return true_positives / predicted_positives, true_positives / num_positives


def step_area(precision: np.ndarray, recall: np.ndarray) -> float:
    """Step-wise area under a precision-recall curve: ``sum_n (R_n - R_{n-1}) P_n``, ``R_0 = 0``.

    precision, recall: (T,) float, points in order of decreasing threshold (recall
    non-decreasing). Returns a fraction; ``nan`` for an empty curve.
    """
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    if precision.shape != recall.shape:
        raise ValueError(f"precision {precision.shape} and recall {recall.shape} differ in length")
    if precision.size == 0:
        return math.nan
    return float(max(0.0, np.sum(np.diff(recall, prepend=0.0) * precision)))


def downsample_curve(precision: np.ndarray, recall: np.ndarray, max_points: int = PR_CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a precision-recall curve, for plotting and storage.

    Keeps the first and the last point exactly and, in between, the first point at or past
    each of ``max_points - 2`` recall levels evenly spaced between the end points (so a
    curve is sampled evenly along recall, not along its many thresholds).

    precision, recall: (T,) float, recall non-decreasing. Returns two (T',) float64
    arrays, T' <= max(max_points, 2), points in their original order.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    if precision.size <= max_points:
        return precision.copy(), recall.copy()
    levels = np.linspace(recall[0], recall[-1], max_points)[1:-1]
    inner = np.searchsorted(recall, levels, side="left")
    keep = np.unique(np.concatenate([[0], inner, [recall.size - 1]]))
    return precision[keep], recall[keep]


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Non-interpolated average precision of a binary ranking.

    The definition of ``sklearn.metrics.average_precision_score``: with the distinct score
    values taken as thresholds in decreasing order, ``AP = sum_n (R_n - R_{n-1}) P_n``
    where ``P_n`` and ``R_n`` are the precision and recall of "score >= threshold n" and
    ``R_0 = 0`` (the step-wise area under :func:`precision_recall_curve`). Equal scores
    form one threshold, so the order of ties does not matter.

    Args:
        scores: (N,) float, higher means "more likely positive"; must not contain NaN.
        positives: (N,) bool, the ground truth.

    Returns:
        AP in [0, 1] (a fraction, not percent); ``nan`` when there is no positive.
    """
    return step_area(*precision_recall_curve(scores, positives))


def per_class_ap(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_ids: list[int],
    ignore_index: int = -1,
) -> dict[int, float]:
    """One-vs-rest AP for each class in ``class_ids``.

    Args:
        probabilities: (N, C) float, per-point class scores (softmax outputs).
        labels: (N,) int, ground-truth class ids; ``ignore_index`` points are dropped.
        class_ids: the classes to score; the positives of class ``c`` are ``labels == c``.

    Returns:
        ``{class_id: AP}`` as fractions in [0, 1]; ``nan`` for a class with no point.
    """
    probabilities = _to_numpy(probabilities)
    labels = _to_numpy(labels).reshape(-1)
    if probabilities.ndim != 2 or probabilities.shape[0] != labels.shape[0]:
        raise ValueError(
            f"probabilities must be (N, C) with N = len(labels) = {labels.shape[0]}, "
            f"got {probabilities.shape}"
        )
    valid = labels != ignore_index
    probabilities = probabilities[valid]
    labels = labels[valid]
    return {int(c): average_precision(probabilities[:, c], labels == c) for c in class_ids}


def confusion_matrix(
    pred: np.ndarray, labels: np.ndarray, num_classes: int, ignore_index: int = -1
) -> np.ndarray:
    """Confusion matrix ``conf[true, predicted]`` counted with one ``bincount``.

    Args:
        pred: (N,) int, predicted class ids in ``0 .. num_classes-1``.
        labels: (N,) int, ground-truth ids; ``ignore_index`` points are dropped.

    Returns:
        (C, C) int64.
    """
    pred = _to_numpy(pred).reshape(-1).astype(np.int64, copy=False)
    labels = _to_numpy(labels).reshape(-1).astype(np.int64, copy=False)
    if pred.shape != labels.shape:
        raise ValueError(f"pred {pred.shape} and labels {labels.shape} differ in length")
    valid = labels != ignore_index
    pred = pred[valid]
    labels = labels[valid]
    for name, ids in (("labels", labels), ("pred", pred)):
        if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
            raise ValueError(
                f"{name} ids must lie in [0, {num_classes}) (or equal ignore_index for labels), "
                f"found range [{ids.min()}, {ids.max()}]"
            )
    flat = np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64, copy=False)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class intersection over union ``TP / (TP + FP + FN)``.

    Args:
        conf: (C, C) int, ``conf[true, predicted]``.

    Returns:
        (C,) float64 in [0, 1]; ``nan`` where the union is empty (class neither present
        nor predicted).
    """
    conf = np.asarray(conf, dtype=np.int64)
    true_positives = np.diag(conf).astype(np.float64)
    union = conf.sum(axis=1) + conf.sum(axis=0) - np.diag(conf)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positives / np.maximum(union, 1), np.nan)


def mean_iou(conf: np.ndarray, class_ids: list[int] | None = None) -> float:
    """Mean IoU over the classes of ``class_ids`` (default: all) present in the ground truth.

    A class without ground-truth points is left out of the mean (its IoU would be 0 or
    undefined and says nothing about the scans). Returns a fraction; ``nan`` when no
    listed class is present.
    """
    conf = np.asarray(conf, dtype=np.int64)
    ids = np.arange(conf.shape[0]) if class_ids is None else np.asarray(class_ids, dtype=np.int64)
    present = conf.sum(axis=1)[ids] > 0
    if not present.any():
        return math.nan
    return float(iou_from_confusion(conf)[ids][present].mean())


def _json_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class EvalResult:
    """Metrics of one method on one evaluation set. AP and IoU in percent.

    Attributes:
        ap: class name -> AP (percent); ``nan`` for a class absent from the ground truth.
        amap: mean of the non-nan entries of ``ap`` (percent); ``nan`` if there is none.
        iou: class name -> IoU (percent); ``nan`` where the union is empty.
        miou: mean IoU over the target classes present in the ground truth (percent).
        num_points: number of evaluated (non-ignored) points.
        pr_curves: class name -> ``{"precision": [...], "recall": [...]}`` (fractions, at most
            ``PR_CURVE_POINTS`` points, see :func:`downsample_curve`); classes absent from the
            ground truth have no entry. Empty when not computed.
    """

    ap: dict[str, float]
    amap: float
    iou: dict[str, float]
    miou: float
    num_points: int
    pr_curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (``nan`` becomes ``None``); PR curves are left out (see ``write_results_json``)."""
        return {
            "ap": {name: _json_float(v) for name, v in self.ap.items()},
            "amap": _json_float(self.amap),
            "iou": {name: _json_float(v) for name, v in self.iou.items()},
            "miou": _json_float(self.miou),
            "num_points": int(self.num_points),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        """Inverse of :meth:`to_dict` (``None`` becomes ``nan``)."""

        def num(value: Any) -> float:
            return math.nan if value is None else float(value)

        return cls(
            ap={name: num(v) for name, v in data["ap"].items()},
            amap=num(data["amap"]),
            iou={name: num(v) for name, v in data["iou"].items()},
            miou=num(data["miou"]),
            num_points=int(data["num_points"]),
            pr_curves={name: {"precision": [float(v) for v in curve["precision"]],
                              "recall": [float(v) for v in curve["recall"]]}
                       for name, curve in (data.get("pr_curves") or {}).items()},
        )


@dataclass
class EvalAccumulator:
    """Gathers point scores and a confusion matrix over many scans, then computes metrics.

    Args:
        num_classes: C; inferred from the first :meth:`add` when ``None``.
        ignore_index: label of points that take no part (dropped in :meth:`add`).
        score_class_ids: the classes whose score columns are kept for AP (default: all);
            keeping only the target classes bounds memory to ``N * len(score_class_ids)``
            float32 values.
    """

    num_classes: int | None = None
    ignore_index: int = -1
    score_class_ids: list[int] | None = None
    _scores: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _labels: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _confusion: np.ndarray | None = field(default=None, init=False, repr=False)

    @property
    def num_points(self) -> int:
        """Number of non-ignored points added so far."""
        return int(sum(chunk.size for chunk in self._labels))

    @property
    def confusion(self) -> np.ndarray:
        """(C, C) int64 confusion matrix ``conf[true, predicted]`` of everything added."""
        if self._confusion is None:
            raise ValueError("no scan added yet")
        return self._confusion

    def add(self, probabilities: np.ndarray, labels: np.ndarray) -> None:
        """Add one scan.

        Args:
            probabilities: (N, C) float, per-point class probabilities (or any scores
                whose argmax is the prediction).
            labels: (N,) int, ground-truth class ids or ``ignore_index``.
        """
        probabilities = _to_numpy(probabilities)
        labels = _to_numpy(labels).reshape(-1).astype(np.int64, copy=False)
        if probabilities.ndim != 2 or probabilities.shape[0] != labels.shape[0]:
            raise ValueError(
                f"probabilities must be (N, C) with N = len(labels) = {labels.shape[0]}, "
                f"got {probabilities.shape}"
            )
        if self.num_classes is None:
            self.num_classes = int(probabilities.shape[1])
        if probabilities.shape[1] != self.num_classes:
            raise ValueError(
                f"probabilities have {probabilities.shape[1]} classes, expected {self.num_classes}"
            )
        valid = labels != self.ignore_index
        probabilities = probabilities[valid]
        labels = labels[valid]
        pred = np.argmax(probabilities, axis=1)
        conf = confusion_matrix(pred, labels, self.num_classes)
        self._confusion = conf if self._confusion is None else self._confusion + conf
        columns = probabilities if self.score_class_ids is None else probabilities[:, self.score_class_ids]
        self._scores.append(np.ascontiguousarray(columns, dtype=np.float32))
        self._labels.append(labels.astype(np.int32))

    def compute(self, class_names: list[str], target_ids: list[int]) -> EvalResult:
        """Metrics over the target classes of everything added so far.

        Args:
            class_names: the names of all C classes indexed by class id (``class_names[c]``
                names class ``c``), or else exactly one name per entry of ``target_ids``.
            target_ids: the class ids reported (usually every class but background).
        """
        if self.num_classes is None or self._confusion is None:
            raise ValueError("no scan added yet")
        if len(class_names) == self.num_classes:
            names = [class_names[c] for c in target_ids]
        elif len(class_names) == len(target_ids):
            names = list(class_names)
        else:
            raise ValueError(
                f"class_names has {len(class_names)} names; expected one per class "
                f"({self.num_classes}) or one per target id ({len(target_ids)})"
            )
        kept = list(range(self.num_classes)) if self.score_class_ids is None else list(self.score_class_ids)
        missing = [c for c in target_ids if c not in kept]
        if missing:
            raise ValueError(f"scores of classes {missing} were not kept (score_class_ids={kept})")

        scores = np.concatenate(self._scores, axis=0)
        labels = np.concatenate(self._labels, axis=0)
        ap: dict[str, float] = {}
        pr_curves: dict[str, dict[str, list[float]]] = {}
        for name, c in zip(names, target_ids):
            precision, recall = precision_recall_curve(scores[:, kept.index(c)], labels == c)
            ap[name] = 100.0 * step_area(precision, recall)
            if precision.size:
                precision, recall = downsample_curve(precision, recall, PR_CURVE_POINTS)
                pr_curves[name] = {"precision": precision.tolist(), "recall": recall.tolist()}
        finite_ap = [v for v in ap.values() if not math.isnan(v)]
        iou_all = iou_from_confusion(self._confusion)
        iou = {name: 100.0 * float(iou_all[c]) for name, c in zip(names, target_ids)}
        return EvalResult(
            ap=ap,
            amap=float(np.mean(finite_ap)) if finite_ap else math.nan,
            iou=iou,
            miou=100.0 * mean_iou(self._confusion, list(target_ids)),
            num_points=int(labels.size),
            pr_curves=pr_curves,
        )
