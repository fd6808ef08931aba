"""Writing predictions: an ``.npz`` of probabilities, or a PLY coloured by predicted class."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cad2scan.errors import Cad2ScanError
from cad2scan.io.atomic import atomic_open
from cad2scan.io.ply import write_ply

# Distinct colours for up to 20 classes; the last class (background) is drawn grey.
_PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
    [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180],
    [0, 0, 128], [128, 128, 128],
], dtype=np.uint8)
BACKGROUND_COLOR = np.array([170, 170, 170], dtype=np.uint8)


def class_colors(num_classes: int) -> np.ndarray:
    """(C, 3) uint8 colours; the last (background) class is grey."""
    colors = np.array([_PALETTE[i % (len(_PALETTE) - 1)] for i in range(num_classes)], dtype=np.uint8)
    colors[-1] = BACKGROUND_COLOR
    return colors


def write_prediction_npz(path: str | Path, probabilities: np.ndarray, class_names: list[str]) -> None:
    """``probabilities (N,C) float32``, ``classes (C,)`` names, ``labels (N,)`` argmax, atomically."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    with atomic_open(path, "wb") as handle:
        np.savez(handle, probabilities=probabilities, classes=np.array(class_names),
                 labels=probabilities.argmax(axis=1).astype(np.int64))


def write_prediction_ply(path: str | Path, coord: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    """The scan's points coloured by predicted class, plus a ``label`` property (class index)."""
    write_ply(path, np.asarray(coord, dtype=np.float32), colors=class_colors(num_classes)[labels],
              properties={"label": np.asarray(labels, dtype=np.uint16)})


def write_predictions(path: str | Path, coord: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> None:
    """Dispatch on the extension: ``.npz`` or ``.ply``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        write_prediction_npz(path, probabilities, class_names)
    elif suffix == ".ply":
        write_prediction_ply(path, coord, probabilities.argmax(axis=1), len(class_names))
    else:
        raise Cad2ScanError(f"{path}: output must end in .npz or .ply")
