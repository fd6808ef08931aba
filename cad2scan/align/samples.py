"""Training samples: CAD models (+ an unlabelled scan) -> labelled point segments.

Two recipes:

* ``pda`` (the paper's physical data alignment): one model of every target class (Q) plus
  ``negatives_per_sample`` models of non-target classes, each scaled to its real-world size,
  randomly rotated/scaled/cropped, then mixed into one unlabelled scan standing on its floor.
  One segment per scan.
* ``single`` (the paper's baseline): the same Q + negatives models, size-matched only (no
  rotation, scaling, cropping or scene), each model its own segment.

A segment is a dict of arrays: ``coord (P,3) float32`` metres, ``label (P,) int64`` class
index (-1 for scene points), ``is_synthetic (P,) bool``, ``model_id (P,) int64``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cad2scan.align.mixing import mix_models_into_scene
from cad2scan.align.transforms import augment_model, scale_to_size_prior
from cad2scan.classes import CategorySet, SizePriors
from cad2scan.errors import UnknownClassError


def crop_scene(scene: dict, window: float, rng: np.random.Generator) -> dict:
    """The points of ``scene`` inside a ``window`` x ``window`` m xy square around a random point.

    scene: ``coord (S,3)`` float32 and ``floor_z``; a scan smaller than the window is kept whole.
    """
    coord = scene["coord"]
    if len(coord) == 0 or np.all(np.ptp(coord[:, :2], axis=0) <= window):
        return scene
    centre = coord[rng.integers(len(coord)), :2]
    inside = np.all(np.abs(coord[:, :2] - centre) <= window / 2, axis=1)
    return {**scene, "coord": coord[inside]}


@dataclass
class SampleBuilder:
    """Draws models from a bank and builds the segments of one training sample.

    bank: {cad class: list of (P,3) normalised model points}.
    """

    bank: dict[str, list[np.ndarray]]
    categories: CategorySet
    priors: SizePriors
    mode: str  # "pda" | "single"
    augment: object  # ModelAugmentConfig
    mix: object  # MixConfig
    negatives_per_sample: int = 1
    scene_crop: float = 0.0  # metres; > 0: mix into a random square xy window of the scan

    def __post_init__(self) -> None:
        self.targets: list[tuple[int, list[str]]] = []
        for index, target in enumerate(self.categories.classes):
            cad = [name for name in target.cad if self.bank.get(name)]
            if not cad:
                raise UnknownClassError(
                    f"target class {target.name!r} has no CAD models (looked for {list(target.cad)} among "
                    f"{', '.join(sorted(self.bank))})"
                )
            self.targets.append((index, cad))
        self.negatives = [n for n in self.categories.negative_cad_classes(sorted(self.bank)) if self.bank.get(n)]
        if self.negatives_per_sample > 0 and not self.negatives:
            raise UnknownClassError("no negative CAD classes available: add non-target classes to the CAD folder")

    def draw_models(self, rng: np.random.Generator) -> list[tuple[str, np.ndarray, int]]:
        """Q target models + negatives: ``[(cad class, points (P,3), class index)]``."""
        chosen = []
        for index, cad_names in self.targets:
            cad = cad_names[rng.integers(len(cad_names))]
            chosen.append((cad, self.bank[cad][rng.integers(len(self.bank[cad]))], index))
        for _ in range(self.negatives_per_sample):
            cad = self.negatives[rng.integers(len(self.negatives))]
            chosen.append((cad, self.bank[cad][rng.integers(len(self.bank[cad]))], self.categories.background_index))
        return chosen

    def build(self, scene: dict | None, rng: np.random.Generator) -> list[dict]:
        """Segments of one sample. ``scene`` (pda only): cached scan with ``coord``, ``floor_z``."""
        models = self.draw_models(rng)
        if self.mode == "single":
            segments = []
            for model_id, (cad, points, label) in enumerate(models):
                placed = scale_to_size_prior(points, self.priors.size_of(cad)).astype(np.float32)
                count = len(placed)
                segments.append({
                    "coord": placed,
                    "label": np.full(count, label, dtype=np.int64),
                    "is_synthetic": np.ones(count, dtype=bool),
                    "model_id": np.full(count, model_id, dtype=np.int64),
                })
            return segments
        if scene is None:
            raise ValueError("the pda recipe needs an unlabelled scene to mix models into")
        if self.scene_crop > 0:
            scene = crop_scene(scene, self.scene_crop, rng)
        augmented = [(augment_model(points, self.priors.size_of(cad), self.augment, rng), label)
                     for cad, points, label in models]
        mixed = mix_models_into_scene(scene["coord"], augmented, rng, self.mix, floor_z=scene.get("floor_z"))
        return [{key: mixed[key] for key in ("coord", "label", "is_synthetic", "model_id")}]
