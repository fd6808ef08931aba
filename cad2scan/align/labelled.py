"""Training samples from LABELLED scans (the supervised objectives), augmented like scans usually are.

A labelled sample is one segment: the scan (or a random ``scene_crop`` x ``scene_crop`` m
xy window of it), rotated by a random angle about z, flipped along x and/or y at random,
scaled by a random factor in [``scale_low``, ``scale_high``] about its xy centre, and moved
so that its xy centre is at the origin. Its scene label ids become class indices through
the category set (non-target labels -> background, or -1 for sets with
``unlisted_labels: ignore``; unannotated -> -1), and every point with a class >= 0 is in the
loss (``loss_mask``). The builder has the same ``build(scene, rng) -> [segment]`` shape as
:class:`cad2scan.align.samples.SampleBuilder`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cad2scan.classes import CategorySet


def crop_window_mask(coord: np.ndarray, window: float, rng: np.random.Generator) -> np.ndarray | None:
    """(N,) bool: the points inside a ``window`` x ``window`` m xy square centred on a random point.

    coord: (N, 3) float, metres. Returns None (keep everything, no random draw) when the scan
    fits in the window or is empty.
    """
    if len(coord) == 0 or np.all(np.ptp(coord[:, :2], axis=0) <= window):
        return None
    centre = coord[rng.integers(len(coord)), :2]
    return np.all(np.abs(coord[:, :2] - centre) <= window / 2, axis=1)


def augment_scan(coord: np.ndarray, rng: np.random.Generator, scale_low: float = 0.9,
                 scale_high: float = 1.1) -> np.ndarray:
    """Random z-rotation, random x / y flips and a random uniform scale, about the xy centre.

    coord: (N, 3) float, metres, z up. Returns (N, 3) float32 with the xy centre (midpoint of
    the bounding box) at the origin; z keeps its origin (the floor stays where it was, scaled).
    """
    coord = np.asarray(coord, dtype=np.float64)
    if len(coord) == 0:
        return coord.astype(np.float32)
    centre = (coord[:, :2].min(axis=0) + coord[:, :2].max(axis=0)) / 2
    xy = coord[:, :2] - centre
    angle = rng.uniform(0.0, 2.0 * np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    xy = xy @ np.array([[cos, sin], [-sin, cos]])
    flips = np.where(rng.random(2) < 0.5, -1.0, 1.0)
    scale = rng.uniform(scale_low, scale_high)
    out = np.empty_like(coord)
    out[:, :2] = xy * flips * scale
    out[:, 2] = coord[:, 2] * scale
    return out.astype(np.float32)


@dataclass
class LabelledSampleBuilder:
    """Builds the one segment of a training sample from a labelled scan.

    categories: maps the scan's label ids (``scene["label"]``) to class indices.
    scene_crop: metres; > 0 keeps a random square xy window of the scan (``align.scene_crop``).
    """

    categories: CategorySet
    scene_crop: float = 0.0
    scale_low: float = 0.9
    scale_high: float = 1.1
    _lut: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._lut = self.categories.scene_label_lut()

    def class_labels(self, scene_labels: np.ndarray) -> np.ndarray:
        """(N,) scene label ids -> (N,) int64 class indices, -1 = not in the loss."""
        scene_labels = np.asarray(scene_labels, dtype=np.int64)
        out = np.full(scene_labels.shape, -1, dtype=np.int64)
        valid = (scene_labels >= 0) & (scene_labels < len(self._lut))
        out[valid] = self._lut[scene_labels[valid]]
        return out

    def build(self, scene: dict, rng: np.random.Generator) -> list[dict]:
        """The segment of one sample.

        scene: cached labelled scan, ``coord (N,3) float32`` metres and ``label (N,)`` scene
        label ids (-1 = none). Returns ``[{coord (P,3) float32, label (P,) int64 class index
        or -1, is_synthetic (P,) bool (all False), model_id (P,) int64 (all -1),
        loss_mask (P,) bool (label >= 0)}]``.
        """
        if scene is None:
            raise ValueError("a labelled sample needs a labelled scan")
        coord = np.asarray(scene["coord"])
        label = self.class_labels(scene["label"])
        if self.scene_crop > 0:
            inside = crop_window_mask(coord, self.scene_crop, rng)
            if inside is not None:
                coord, label = coord[inside], label[inside]
        coord = augment_scan(coord, rng, self.scale_low, self.scale_high)
        count = len(coord)
        return [{
            "coord": coord,
            "label": label,
            "is_synthetic": np.zeros(count, dtype=bool),
            "model_id": np.full(count, -1, dtype=np.int64),
            "loss_mask": label >= 0,
        }]
