"""Training samples: CAD models (+ an unlabelled scan) -> labelled point segments.

Three recipes (``mode``):

* ``pda`` (the paper's physical data alignment): one model of every target class (Q) plus
  ``negatives_per_sample`` models of non-target classes, each scaled to its real-world size,
  randomly rotated/scaled/cropped, then mixed into one unlabelled scan standing on its floor.
  One segment per scan.
* ``single`` (the paper's baseline): the same Q + negatives models, size-matched only (no
  rotation, scaling, cropping or scene), each model its own segment.
* ``models_only`` (the paper's Table 5 "negaMo"): the Q + negatives models with the full PDA
  augmentation, laid side by side on a floor at z = 0 with no scan
  (``cad2scan.align.mixing.place_models_alone``). One segment per sample, no scene needed.

and two sources of background examples (``negatives``):

* ``models``: the negative CAD models above, labelled background.
* ``scene`` (Table 5 "negaSc", ``pda`` only): no negative model is drawn; the scan points of
  the mixed sample are labelled background and enter the loss instead.

A segment is a dict of arrays: ``coord (P,3) float32`` metres, ``label (P,) int64`` class
index (-1 for scene points that carry no label), ``is_synthetic (P,) bool``,
``model_id (P,) int64`` (-1 for scene points); with ``negatives="scene"`` also
``loss_mask (P,) bool``: which points enter the loss (all of them; it replaces
``is_synthetic & label >= 0`` in ``cad2scan.train.batch.collate_segments``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cad2scan.align.labelled import crop_window_mask
from cad2scan.align.mixing import mix_models_into_scene, place_models_alone
from cad2scan.align.transforms import augment_model, scale_to_size_prior
from cad2scan.classes import CategorySet, SizePriors
from cad2scan.errors import ConfigError, UnknownClassError

MODES = ("pda", "single", "models_only")
NEGATIVE_SOURCES = ("models", "scene")
_SEGMENT_KEYS = ("coord", "label", "is_synthetic", "model_id")


def crop_scene(scene: dict, window: float, rng: np.random.Generator) -> dict:
    """The points of ``scene`` inside a ``window`` x ``window`` m xy square around a random point.

    scene: ``coord (S,3)`` float32 and ``floor_z``; a scan smaller than the window is kept whole.
    """
    inside = crop_window_mask(scene["coord"], window, rng)
    return scene if inside is None else {**scene, "coord": scene["coord"][inside]}


@dataclass
class SampleBuilder:
    """Draws models from a bank and builds the segments of one training sample.

    bank: {cad class: list of (P,3) normalised model points}.
    mode: "pda" | "single" | "models_only" (``align.mode``).
    negatives: "models" | "scene" (``align.negatives``); "scene" needs mode "pda" and ignores
    ``negatives_per_sample`` (no negative model is drawn).
    """

    bank: dict[str, list[np.ndarray]]
    categories: CategorySet
    priors: SizePriors
    mode: str  # "pda" | "single" | "models_only"
    augment: object  # ModelAugmentConfig
    mix: object  # MixConfig
    negatives_per_sample: int = 1
    scene_crop: float = 0.0  # metres; > 0: mix into a random square xy window of the scan
    negatives: str = "models"  # "models": negative CAD models | "scene": scan points are background

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"config key align.mode: must be one of {MODES}, got {self.mode!r}")
        if self.negatives not in NEGATIVE_SOURCES:
            raise ConfigError(f"config key align.negatives: must be one of {NEGATIVE_SOURCES}, got {self.negatives!r}")
        if self.negatives == "scene" and self.mode != "pda":
            raise ConfigError(f"config key align.negatives: 'scene' labels the scan points background, so it needs "
                              f"align.mode 'pda' (got {self.mode!r}, which has no scan)")
        self.targets: list[tuple[int, list[str]]] = []
        for index, target in enumerate(self.categories.classes):
            cad = [name for name in target.cad if self.bank.get(name)]
            if not cad:
                raise UnknownClassError(
                    f"target class {target.name!r} has no CAD models (looked for {list(target.cad)} among "
                    f"{', '.join(sorted(self.bank))})"
                )
            self.targets.append((index, cad))
        self.negative_classes = [n for n in self.categories.negative_cad_classes(sorted(self.bank)) if self.bank.get(n)]
        if self.negative_models_per_sample > 0 and not self.negative_classes:
            raise UnknownClassError("no negative CAD classes available: add non-target classes to the CAD folder")

    @property
    def negative_models_per_sample(self) -> int:
        """Negative CAD models drawn per sample (0 when the scene supplies the background)."""
        return 0 if self.negatives == "scene" else self.negatives_per_sample

    def draw_models(self, rng: np.random.Generator) -> list[tuple[str, np.ndarray, int]]:
        """Q target models + negatives: ``[(cad class, points (P,3), class index)]``."""
        chosen = []
        for index, cad_names in self.targets:
            cad = cad_names[rng.integers(len(cad_names))]
            chosen.append((cad, self.bank[cad][rng.integers(len(self.bank[cad]))], index))
        for _ in range(self.negative_models_per_sample):
            cad = self.negative_classes[rng.integers(len(self.negative_classes))]
            chosen.append((cad, self.bank[cad][rng.integers(len(self.bank[cad]))], self.categories.background_index))
        return chosen

    def _augmented(self, models, rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
        return [(augment_model(points, self.priors.size_of(cad), self.augment, rng), label)
                for cad, points, label in models]

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
        if self.mode == "models_only":
            laid = place_models_alone(self._augmented(models, rng), rng)
            return [{key: laid[key] for key in _SEGMENT_KEYS}]
        if scene is None:
            raise ValueError("the pda recipe needs an unlabelled scene to mix models into")
        if self.scene_crop > 0:
            scene = crop_scene(scene, self.scene_crop, rng)
        mixed = mix_models_into_scene(scene["coord"], self._augmented(models, rng), rng, self.mix,
                                      floor_z=scene.get("floor_z"), model_classes=[cad for cad, _, _ in models])
        segment = {key: mixed[key] for key in _SEGMENT_KEYS}
        if self.negatives == "scene":
            segment["label"] = np.where(segment["is_synthetic"], segment["label"],
                                        self.categories.background_index).astype(np.int64)
            segment["loss_mask"] = np.ones(len(segment["label"]), dtype=bool)
        return [segment]
