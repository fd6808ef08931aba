"""Run a network over labelled scans and score its point-wise probabilities."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cad2scan.classes import CategorySet
from cad2scan.eval.metrics import EvalAccumulator, EvalResult
from cad2scan.predict import predict_probabilities
from cad2scan.prepare import load_scene


def evaluate_scenes(net: torch.nn.Module, scene_files: list[str | Path], categories: CategorySet,
                    voxel_size: float, device: torch.device | str = "cpu", progress: bool = True,
                    on_scene: Callable[[dict, np.ndarray], None] | None = None) -> EvalResult:
    """Per-class AP, AmAP and IoU over cached labelled scenes (scene label ids in ``label``).

    The result also holds each present class's precision-recall curve (``pr_curves``, at
    most ``PR_CURVE_POINTS`` points; its step-wise area before downsampling is the AP).
    ``on_scene(scene, probabilities (N, C) float32)`` is called after each scan is
    predicted (e.g. to write its predictions without predicting it again).
    """
    accumulator = EvalAccumulator()
    for path in tqdm(scene_files, desc="evaluating", unit="scan", disable=not progress, dynamic_ncols=True):
        scene = load_scene(path)
        probabilities = predict_probabilities(net, scene["coord"], voxel_size, device)
        accumulator.add(probabilities, categories.map_scene_labels(scene["label"]))
        if on_scene is not None:
            on_scene(scene, probabilities)
    return accumulator.compute(categories.names, list(range(len(categories.classes))))


def positive_rates(scene_files: list[Path], categories: CategorySet) -> dict[str, float]:
    """Per target class, its share of the evaluated (non-ignored) points, in percent: the
    expected AP of a random score (``nan`` for a class without points)."""
    counts = np.zeros(categories.num_classes, dtype=np.int64)
    total = 0
    for path in scene_files:
        labels = categories.map_scene_labels(load_scene(path)["label"])
        labels = labels[labels >= 0]
        total += labels.size
        counts += np.bincount(labels, minlength=categories.num_classes)
    return {name: (100.0 * counts[i] / total if total and counts[i] else math.nan)
            for i, name in enumerate(categories.target_names)}


def nan_mean(values: list[float]) -> float:
    """Mean of the finite values (``nan`` when there is none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan
