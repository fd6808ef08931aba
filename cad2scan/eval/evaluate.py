"""Run a network over labelled scans and score its point-wise probabilities."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from cad2scan.classes import CategorySet
from cad2scan.eval.metrics import EvalAccumulator, EvalResult
from cad2scan.predict import predict_probabilities
from cad2scan.prepare import load_scene


def evaluate_scenes(net: torch.nn.Module, scene_files: list[str | Path], categories: CategorySet,
                    voxel_size: float, device: torch.device | str = "cpu", progress: bool = True) -> EvalResult:
    """Per-class AP, AmAP and IoU over cached labelled scenes (scene label ids in ``label``).

    The result also holds each present class's precision-recall curve (``pr_curves``, at
    most ``PR_CURVE_POINTS`` points; its step-wise area before downsampling is the AP).
    """
    accumulator = EvalAccumulator()
    for path in tqdm(scene_files, desc="evaluating", unit="scan", disable=not progress, dynamic_ncols=True):
        scene = load_scene(path)
        probabilities = predict_probabilities(net, scene["coord"], voxel_size, device)
        accumulator.add(probabilities, categories.map_scene_labels(scene["label"]))
    return accumulator.compute(categories.names, list(range(len(categories.classes))))
