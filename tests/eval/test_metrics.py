import json
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from cad2scan.eval.metrics import (
    EvalAccumulator,
    EvalResult,
    average_precision,
    confusion_matrix,
    iou_from_confusion,
    mean_iou,
    per_class_ap,
)


@pytest.mark.parametrize("seed", range(8))
def test_average_precision_matches_sklearn_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    positives = rng.random(n) < rng.uniform(0.05, 0.9)
    positives[0] = True
    scores = rng.random(n) + 0.3 * positives
    assert average_precision(scores, positives) == pytest.approx(
        average_precision_score(positives, scores), abs=1e-6
    )


@pytest.mark.parametrize("decimals", [1, 2])
@pytest.mark.parametrize("seed", range(6))
def test_average_precision_matches_sklearn_with_many_ties(seed, decimals):
    rng = np.random.default_rng(100 + seed)
    n = 2000
    positives = rng.random(n) < 0.3
    positives[-1] = True
    scores = np.round(rng.random(n) * 0.7 + 0.3 * positives * rng.random(n), decimals)
    assert len(np.unique(scores)) < n // 10  # the case really is tie-heavy
    assert average_precision(scores, positives) == pytest.approx(
        average_precision_score(positives, scores), abs=1e-6
    )


def test_average_precision_ignores_the_order_of_tied_scores():
    rng = np.random.default_rng(7)
    scores = np.round(rng.random(500), 1)
    positives = rng.random(500) < 0.4
    permutation = rng.permutation(500)
    assert average_precision(scores, positives) == pytest.approx(
        average_precision(scores[permutation], positives[permutation]), abs=1e-12
    )


def test_average_precision_with_all_scores_equal_is_the_positive_rate():
    positives = np.array([1, 0, 0, 1, 0, 0, 0, 1], dtype=bool)
    scores = np.full(8, 0.25)
    expected = average_precision_score(positives, scores)
    assert expected == pytest.approx(3 / 8)
    assert average_precision(scores, positives) == pytest.approx(expected, abs=1e-12)


def test_average_precision_all_positive_is_one():
    rng = np.random.default_rng(1)
    scores = rng.random(50)
    positives = np.ones(50, dtype=bool)
    assert average_precision(scores, positives) == pytest.approx(1.0)
    assert average_precision(scores, positives) == pytest.approx(average_precision_score(positives, scores))


@pytest.mark.parametrize("rank", [0, 5, 49])
def test_average_precision_single_positive_is_reciprocal_rank(rank):
    scores = np.linspace(1.0, 0.0, 50)
    positives = np.zeros(50, dtype=bool)
    positives[rank] = True
    assert average_precision(scores, positives) == pytest.approx(1 / (rank + 1))
    assert average_precision(scores, positives) == pytest.approx(
        average_precision_score(positives, scores), abs=1e-12
    )


def test_average_precision_groups_equal_infinite_scores():
    scores = np.array([np.inf, np.inf, 0.5, -np.inf, -np.inf])
    positives = np.array([1, 0, 1, 0, 1], dtype=bool)
    # thresholds: {inf: P=1/2,R=1/3}, {0.5: P=2/3,R=2/3}, {-inf: P=3/5,R=1}
    expected = (1 / 3) * (1 / 2) + (1 / 3) * (2 / 3) + (1 / 3) * (3 / 5)
    assert average_precision(scores, positives) == pytest.approx(expected)


def test_average_precision_without_positives_is_nan():
    assert math.isnan(average_precision(np.array([0.1, 0.9]), np.array([False, False])))
    assert math.isnan(average_precision(np.array([]), np.array([], dtype=bool)))


def test_average_precision_rejects_nan_scores_and_length_mismatch():
    with pytest.raises(ValueError, match="NaN"):
        average_precision(np.array([0.1, np.nan]), np.array([True, False]))
    with pytest.raises(ValueError, match="length"):
        average_precision(np.array([0.1, 0.2, 0.3]), np.array([True, False]))


def test_per_class_ap_drops_ignored_points_and_matches_sklearn():
    rng = np.random.default_rng(3)
    n, c = 1500, 4
    labels = rng.integers(-1, c, n)
    labels[labels == 3] = 1  # class 3 absent from the ground truth
    probabilities = rng.dirichlet(np.ones(c), n)
    result = per_class_ap(probabilities, labels, [0, 1, 2, 3])
    valid = labels != -1
    for cls in (0, 1, 2):
        expected = average_precision_score(labels[valid] == cls, probabilities[valid, cls])
        assert result[cls] == pytest.approx(expected, abs=1e-6)
    assert math.isnan(result[3])
    # Changing the scores of ignored points changes nothing.
    probabilities_changed = probabilities.copy()
    probabilities_changed[~valid] = rng.dirichlet(np.ones(c), int((~valid).sum()))
    assert per_class_ap(probabilities_changed, labels, [0, 1, 2]) == pytest.approx(
        {k: result[k] for k in (0, 1, 2)}
    )


def test_confusion_matrix_matches_sklearn_and_skips_ignored():
    rng = np.random.default_rng(4)
    labels = rng.integers(-1, 5, 4000)
    pred = rng.integers(0, 5, 4000)
    conf = confusion_matrix(pred, labels, 5)
    valid = labels != -1
    assert conf.dtype == np.int64
    np.testing.assert_array_equal(conf, sk_confusion_matrix(labels[valid], pred[valid], labels=range(5)))
    assert conf.sum() == valid.sum()


def test_confusion_matrix_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match="labels"):
        confusion_matrix(np.array([0, 1]), np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="pred"):
        confusion_matrix(np.array([0, -2]), np.array([0, 1]), 3)


def test_iou_from_confusion_known_values_and_nan_for_empty_union():
    # rows = truth, cols = prediction
    conf = np.array([[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    iou = iou_from_confusion(conf)
    assert iou[0] == pytest.approx(3 / (3 + 1 + 2))
    assert iou[1] == pytest.approx(4 / (4 + 2 + 1))
    assert math.isnan(iou[2])
    assert mean_iou(conf) == pytest.approx((iou[0] + iou[1]) / 2)
    assert mean_iou(conf, [1, 2]) == pytest.approx(iou[1])


def test_mean_iou_leaves_out_classes_absent_from_ground_truth():
    # class 2 never occurs but is predicted once: IoU 0, not part of the mean
    conf = np.array([[5, 0, 1], [0, 4, 0], [0, 0, 0]])
    assert iou_from_confusion(conf)[2] == 0.0
    assert mean_iou(conf, [0, 1, 2]) == pytest.approx((5 / 6 + 1.0) / 2)
    assert math.isnan(mean_iou(conf, [2]))


def _random_scans(rng, num_scans, num_classes):
    scans = []
    for _ in range(num_scans):
        n = int(rng.integers(50, 400))
        labels = rng.integers(-1, num_classes, n)
        logits = rng.normal(size=(n, num_classes))
        logits[np.arange(n), np.clip(labels, 0, None)] += 1.0
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        scans.append((probabilities, labels))
    return scans


def test_accumulator_over_scans_equals_metrics_of_concatenation():
    rng = np.random.default_rng(5)
    scans = _random_scans(rng, 6, 4)
    accumulator = EvalAccumulator()
    for probabilities, labels in scans:
        accumulator.add(probabilities, labels)
    names = ["background", "chair", "table", "sofa"]
    result = accumulator.compute(names, [1, 2, 3])

    probabilities = np.concatenate([p for p, _ in scans]).astype(np.float32)
    labels = np.concatenate([y for _, y in scans])
    valid = labels != -1
    assert result.num_points == int(valid.sum())
    assert set(result.ap) == {"chair", "table", "sofa"}
    for name, cls in zip(names[1:], [1, 2, 3]):
        expected = 100 * average_precision_score(labels[valid] == cls, probabilities[valid, cls])
        assert result.ap[name] == pytest.approx(expected, abs=1e-4)
    assert result.amap == pytest.approx(np.mean(list(result.ap.values())))
    conf = confusion_matrix(probabilities.argmax(1), labels, 4)
    np.testing.assert_array_equal(accumulator.confusion, conf)
    iou = iou_from_confusion(conf)
    assert result.iou == pytest.approx({n: 100 * iou[c] for n, c in zip(names[1:], [1, 2, 3])})
    assert result.miou == pytest.approx(100 * iou[1:].mean())


def test_accumulator_stores_float32_scores_of_kept_classes_only():
    rng = np.random.default_rng(6)
    accumulator = EvalAccumulator(num_classes=5, score_class_ids=[2, 4])
    for probabilities, labels in _random_scans(rng, 3, 5):
        accumulator.add(probabilities, labels)
    assert all(chunk.dtype == np.float32 and chunk.shape[1] == 2 for chunk in accumulator._scores)
    result = accumulator.compute(["two", "four"], [2, 4])
    assert set(result.ap) == {"two", "four"}
    with pytest.raises(ValueError, match="not kept"):
        accumulator.compute(["a", "b", "c", "d", "e"], [1, 2])


def test_accumulator_reports_nan_ap_for_absent_class_and_excludes_it_from_means():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.6, 0.3, 0.1]])
    labels = np.array([0, 1, 1, -1])  # class 2 never occurs; point 2 predicted as 2
    accumulator = EvalAccumulator(num_classes=3)
    accumulator.add(probabilities, labels)
    result = accumulator.compute(["bg", "chair", "lamp"], [1, 2])
    assert math.isnan(result.ap["lamp"])
    # chair scores [0.2, 0.8, 0.2], positives [F, T, T]: (1/2) * 1 + (1/2) * (2/3)
    assert result.ap["chair"] == pytest.approx(100 * (1 / 2 + 1 / 3))
    assert result.amap == pytest.approx(result.ap["chair"])
    assert result.iou["lamp"] == 0.0
    assert result.iou["chair"] == pytest.approx(50.0)
    assert result.miou == pytest.approx(50.0)
    assert result.num_points == 3


def test_accumulator_rejects_class_count_change_and_bad_names():
    accumulator = EvalAccumulator()
    accumulator.add(np.full((2, 3), 1 / 3), np.array([0, 1]))
    with pytest.raises(ValueError, match="expected 3"):
        accumulator.add(np.full((2, 4), 0.25), np.array([0, 1]))
    with pytest.raises(ValueError, match="class_names"):
        accumulator.compute(["a", "b"], [1, 2, 0])


def test_eval_result_to_dict_is_json_safe_and_round_trips():
    result = EvalResult(ap={"chair": 51.5, "lamp": math.nan}, amap=51.5, iou={"chair": 20.0, "lamp": math.nan},
                        miou=20.0, num_points=10)
    data = result.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["ap"]["lamp"] is None
    back = EvalResult.from_dict(json.loads(text))
    assert back.ap["chair"] == 51.5 and math.isnan(back.ap["lamp"]) and back.num_points == 10

