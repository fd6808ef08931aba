"""The chance reference: per-class AP of random scores = the class's share of the evaluated points."""

import math

import numpy as np
import pytest

from cad2scan.classes import load_category_set
from cad2scan.eval.evaluate import nan_mean, positive_rates
from cad2scan.eval.metrics import average_precision


def _scene(path, labels):
    labels = np.asarray(labels, dtype=np.int64)
    np.savez(path, coord=np.zeros((len(labels), 3), np.float32), label=labels, floor_z=np.float64(0.0))
    return path


def test_positive_rates_count_points_over_scans_and_skip_unannotated(tmp_path):
    categories = load_category_set("scannet11")
    # NYU40: 5 chair, 7 table, 1 wall (background), 0 unannotated (ignored)
    files = [_scene(tmp_path / "a.npz", [5, 5, 7, 1, 0, 0]), _scene(tmp_path / "b.npz", [5, 1, 1, 1])]
    rates = positive_rates(files, categories)
    assert rates["chair"] == pytest.approx(100 * 3 / 8)
    assert rates["table"] == pytest.approx(100 * 1 / 8)
    assert math.isnan(rates["bed"])  # no point: no AP either
    assert nan_mean(list(rates.values())) == pytest.approx((37.5 + 12.5) / 2)


def test_a_random_scorer_scores_about_the_positive_rate():
    rng = np.random.default_rng(0)
    positives = rng.random(200_000) < 0.07
    assert 100 * average_precision(rng.random(positives.size), positives) == pytest.approx(7.0, abs=0.3)
