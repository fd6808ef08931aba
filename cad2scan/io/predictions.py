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
    """(C, 3) uint8 colours; the last (background) class is grey, targets cycle the palette."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    colors = np.array([_PALETTE[i % (len(_PALETTE) - 1)] for i in range(num_classes)], dtype=np.uint8)
    colors[-1] = BACKGROUND_COLOR
    return colors


def _checked_probabilities(probabilities: np.ndarray, class_names: list[str]) -> np.ndarray:
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(class_names):
        raise ValueError(f"probabilities must be (N, {len(class_names)}) for classes {list(class_names)}, "
                         f"got shape {probabilities.shape}")
    return probabilities


def write_prediction_npz(path: str | Path, probabilities: np.ndarray, class_names: list[str]) -> None:
    """``probabilities (N,C) float32``, ``classes (C,)`` names, ``labels (N,)`` int64 argmax, atomically.

    Readable with ``numpy.load(path)`` (no pickles).
    """
    probabilities = _checked_probabilities(probabilities, class_names)
    with atomic_open(path, "wb") as handle:
        np.savez(handle, probabilities=probabilities, classes=np.array(list(class_names), dtype=str),
                 labels=probabilities.argmax(axis=1).astype(np.int64))


def write_prediction_ply(path: str | Path, coord: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    """The scan's points coloured by predicted class, plus a ``label`` property (class index).

    coord: (N, 3) float, metres. labels: (N,) int class indices in 0..num_classes-1.
    """
    labels = np.asarray(labels)
    coord = np.asarray(coord, dtype=np.float32)
    if labels.shape != (len(coord),):
        raise ValueError(f"labels must be ({len(coord)},) like coord, got shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    write_ply(path, coord, colors=class_colors(num_classes)[labels],
              properties={"label": labels.astype(np.uint16)})


def write_predictions(path: str | Path, coord: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> None:
    """Dispatch on the extension: ``.npz`` (probabilities) or ``.ply`` (coloured points).

    coord: (N, 3) float, metres. probabilities: (N, C) float, C = len(class_names).
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (".npz", ".ply"):
        raise Cad2ScanError(f"{path}: output must end in .npz or .ply, not {suffix or 'no extension'!r}")
    probabilities = _checked_probabilities(probabilities, class_names)
    if len(np.asarray(coord)) != len(probabilities):
        raise ValueError(f"coord has {len(np.asarray(coord))} points but probabilities has {len(probabilities)} rows")
    if suffix == ".npz":
        write_prediction_npz(path, probabilities, class_names)
    else:
        write_prediction_ply(path, coord, probabilities.argmax(axis=1), len(class_names))
