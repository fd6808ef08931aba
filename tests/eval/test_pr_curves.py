"""Precision-recall curves: consistent with AP, downsampled with exact end points, stored in results JSON."""

import json
import math

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve as sk_precision_recall_curve

from cad2scan.eval.metrics import (EvalAccumulator, EvalResult, average_precision, downsample_curve,
                                   precision_recall_curve, step_area)
from cad2scan.eval.tables import write_results_json


def _random_case(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 4000))
    positives = rng.random(n) < rng.uniform(0.05, 0.9)
    positives[0] = True
    return rng.random(n) + 0.3 * positives, positives


def _tie_case(seed, decimals):
    rng = np.random.default_rng(500 + seed)
    positives = rng.random(3000) < 0.3
    positives[-1] = True
    scores = np.round(rng.random(3000) * 0.7 + 0.3 * positives * rng.random(3000), decimals)
    assert len(np.unique(scores)) < 300  # really tie-heavy
    return scores, positives


@pytest.mark.parametrize("seed", range(6))
def test_step_area_under_the_curve_equals_ap_on_random_scores(seed):
    scores, positives = _random_case(seed)
    precision, recall = precision_recall_curve(scores, positives)
    assert step_area(precision, recall) == pytest.approx(average_precision(scores, positives), abs=1e-6)
    # and the curve itself is sklearn's (which lists it from the lowest threshold, plus (R=0, P=1))
    sk_precision, sk_recall, _ = sk_precision_recall_curve(positives, scores)
    np.testing.assert_allclose(precision, sk_precision[:-1][::-1], atol=1e-12)
    np.testing.assert_allclose(recall, sk_recall[:-1][::-1], atol=1e-12)


@pytest.mark.parametrize("decimals", [1, 2])
@pytest.mark.parametrize("seed", range(4))
def test_step_area_under_the_curve_equals_ap_with_many_ties(seed, decimals):
    scores, positives = _tie_case(seed, decimals)
    precision, recall = precision_recall_curve(scores, positives)
    assert precision.size == len(np.unique(scores))  # one point per distinct score
    assert step_area(precision, recall) == pytest.approx(average_precision(scores, positives), abs=1e-6)


def test_curve_ends_at_full_recall_with_the_positive_rate_and_recall_never_decreases():
    scores, positives = _random_case(11)
    precision, recall = precision_recall_curve(scores, positives)
    assert recall[-1] == 1.0 and precision[-1] == pytest.approx(positives.mean())
    assert np.all(np.diff(recall) >= 0)


def test_curve_of_a_class_without_positives_is_empty_and_its_area_nan():
    precision, recall = precision_recall_curve(np.array([0.2, 0.9]), np.array([False, False]))
    assert precision.size == recall.size == 0
    assert math.isnan(step_area(precision, recall))


def test_downsampled_curve_has_at_most_max_points_and_keeps_the_exact_end_points():
    scores, positives = _random_case(3)
    precision, recall = precision_recall_curve(scores, positives)
    assert precision.size > 1000
    small_p, small_r = downsample_curve(precision, recall, 200)
    assert 100 < small_p.size <= 200
    assert (small_p[0], small_r[0]) == (precision[0], recall[0])
    assert (small_p[-1], small_r[-1]) == (precision[-1], recall[-1])
    assert np.all(np.diff(small_r) >= 0)
    # every kept point is a point of the full curve
    kept = {(p, r) for p, r in zip(precision, recall)}
    assert all((p, r) in kept for p, r in zip(small_p, small_r))
    # short curves are returned unchanged
    short_p, short_r = downsample_curve(precision[:50], recall[:50], 200)
    np.testing.assert_array_equal(short_p, precision[:50])


def test_accumulator_result_carries_downsampled_curves_of_present_classes_only():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 6000)
    labels[labels == 1] = 2  # class 1 absent
    probabilities = rng.random((6000, 3))
    probabilities[np.arange(6000), labels] += 0.5
    accumulator = EvalAccumulator()
    accumulator.add(probabilities[:2500], labels[:2500])
    accumulator.add(probabilities[2500:], labels[2500:])
    result = accumulator.compute(["a", "b", "c"], [0, 1])
    assert set(result.pr_curves) == {"a"}
    curve = result.pr_curves["a"]
    assert len(curve["precision"]) == len(curve["recall"]) <= 200
    full_p, full_r = precision_recall_curve(probabilities[:, 0], labels == 0)
    assert curve["recall"][-1] == full_r[-1] and curve["precision"][0] == full_p[0]
    assert result.ap["a"] == pytest.approx(100 * step_area(full_p, full_r), abs=1e-9)


def test_results_json_stores_curves_under_pr_curves_and_keeps_the_method_keys(tmp_path):
    curves = {"chair": {"precision": [1.0, 0.5], "recall": [0.5, 1.0]}}
    with_curves = EvalResult(ap={"chair": 75.0, "bed": math.nan}, amap=75.0, iou={"chair": 1.0, "bed": math.nan},
                             miou=1.0, num_points=10, pr_curves=curves)
    without = EvalResult(ap={"chair": 5.0, "bed": math.nan}, amap=5.0, iou={"chair": 1.0, "bed": math.nan},
                         miou=1.0, num_points=10)
    path = tmp_path / "results.json"
    write_results_json(path, {"ours": with_curves, "old": without}, meta={"seed": 1})
    document = json.loads(path.read_text())
    assert set(document) == {"methods", "pr_curves", "meta"}
    assert set(document["methods"]["ours"]) == {"AmAP", "AP", "mIoU"}
    assert document["pr_curves"] == {"ours": curves}
    assert step_area(**{k: np.array(v) for k, v in document["pr_curves"]["ours"]["chair"].items()}) == 0.75


def test_eval_result_dict_round_trip_keeps_curves_given_to_from_dict():
    result = EvalResult(ap={"chair": 50.0}, amap=50.0, iou={"chair": 1.0}, miou=1.0, num_points=3)
    data = result.to_dict()
    assert "pr_curves" not in data  # metrics.jsonl stays small
    data["pr_curves"] = {"chair": {"precision": [1.0], "recall": [1.0]}}
    assert EvalResult.from_dict(data).pr_curves == data["pr_curves"]
