"""Checkpoints: weights in safetensors, with the resolved config and class list inside.

Loading never unpickles anything: safetensors holds only tensors and string metadata. A
checkpoint is self-describing, so ``predict`` and ``evaluate`` need nothing but the file.
A SHA-256 digest of the metadata and every tensor (``sha256`` in the metadata) is checked on
load, so a flipped byte anywhere in the file is reported instead of silently loaded.
The resumable state of a run (optimizer, LR scheduler, GradScaler, RNG, step) is kept
beside such a file by :mod:`cad2scan.train.state`, also without pickle.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from cad2scan.config import RunConfig, config_from_dict, config_to_dict, parse_yaml
from cad2scan.errors import CheckpointError, Cad2ScanError
from cad2scan.io.atomic import atomic_write_bytes
from cad2scan.model.net import RTLNet

FORMAT = "cad2scan-checkpoint-1"
_MAX_HEADER_BYTES = 100 * 2**20
_DIGESTED_KEYS = ("format", "config", "class_names", "extra")
log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    net: RTLNet
    config: RunConfig
    class_names: list[str]
    metadata: dict


def checkpoint_digest(state: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """SHA-256 (hex) of the digested metadata strings and every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for key in _DIGESTED_KEYS:
        digest.update(f"{key}={len(metadata.get(key, ''))}:".encode())
        digest.update(metadata.get(key, "").encode("utf-8"))
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"|{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | Path, net: torch.nn.Module, config: RunConfig, class_names: list[str],
                    extra: dict | None = None) -> None:
    """Write ``net``'s weights + config + class names atomically to ``path`` (.safetensors)."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "config": yaml.safe_dump(config_to_dict(config), sort_keys=False),
        "class_names": json.dumps(list(class_names)),
        "extra": json.dumps(extra or {}),
    }
    metadata["sha256"] = checkpoint_digest(state, metadata)
    atomic_write_bytes(path, save(state, metadata=metadata))


def read_checkpoint_metadata(path: str | Path) -> dict:
    """The string metadata of a checkpoint (raises CheckpointError when unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with open(path, "rb") as handle:
            size_bytes = handle.read(8)
            header_size = int.from_bytes(size_bytes, "little")
            if len(size_bytes) < 8 or header_size <= 0 or header_size > _MAX_HEADER_BYTES:
                raise CheckpointError(f"{path}: not a safetensors checkpoint (bad header size)")
            header_bytes = handle.read(header_size)
            if len(header_bytes) < header_size:
                raise CheckpointError(f"{path}: truncated checkpoint (header cut short)")
            header = json.loads(header_bytes)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({error})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise CheckpointError(f"{path}: not a cad2scan checkpoint (format {found!r}, expected {FORMAT!r})")
    return metadata


def read_checkpoint_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The verified weights (on the CPU) and string metadata of a checkpoint.

    Raises CheckpointError (message starting with the path) for a missing, damaged or
    tampered file (SHA-256 digest mismatch).
    """
    path = Path(path)
    metadata = read_checkpoint_metadata(path)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: damaged checkpoint ({error})") from None
    expected = metadata.get("sha256")
    if expected is None:
        raise CheckpointError(f"{path}: checkpoint has no sha256 digest (damaged, or written by an older "
                              f"cad2scan: re-save it)")
    if checkpoint_digest(state, metadata) != expected:
        raise CheckpointError(f"{path}: checksum mismatch: the file was modified or damaged after it was written")
    return state, metadata


def load_weights(path: str | Path, net: torch.nn.Module) -> dict:
    """Load a checkpoint's verified weights into an existing ``net`` (strict); returns the metadata."""
    state, metadata = read_checkpoint_tensors(path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = " ".join(line.strip() for line in str(error).splitlines()[:3])
        raise CheckpointError(f"{path}: weights do not fit the network ({detail})") from None
    return metadata


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    class_names: list[str] | None = None) -> LoadedModel:
    """Rebuild the network from a checkpoint and load its weights.

    With ``class_names`` different from the checkpoint's, the anchor head is rebuilt for
    the new classes (backbone and hull weights are kept) and a warning says so.
    Raises CheckpointError (message starting with the path) for a missing, damaged or
    tampered file, or weights that do not fit the network.
    """
    path = Path(path)
    state, metadata = read_checkpoint_tensors(path)
    try:
        config = config_from_dict(parse_yaml(metadata["config"], f"{path} (embedded config)"),
                                  f"{path} (embedded config)")
        saved_names = json.loads(metadata["class_names"])
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{path}: damaged checkpoint metadata ({error!r})") from None
    except Cad2ScanError as error:
        raise CheckpointError(f"{path}: {error}") from None
    if not (isinstance(saved_names, list) and saved_names and all(isinstance(n, str) for n in saved_names)):
        raise CheckpointError(f"{path}: damaged checkpoint metadata (class_names {saved_names!r})")
    names = list(class_names) if class_names is not None else saved_names
    try:
        net = RTLNet(config.model, len(names), names)
    except (Cad2ScanError, ValueError) as error:  # e.g. a backbone this version does not know
        raise CheckpointError(f"{path}: cannot build the network of this checkpoint ({error})") from None
    if names != saved_names:
        log.warning("%s: classes %s differ from the checkpoint's %s: the anchor head is re-initialised",
                    path, names, saved_names)
        state = {k: v for k, v in state.items() if not k.startswith("anchors.")}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        detail = " ".join(line.strip() for line in str(error).splitlines()[1:3]) or str(error)
        raise CheckpointError(f"{path}: weights do not fit the network ({detail})") from None
    if names != saved_names:
        missing = [k for k in missing if not k.startswith("anchors.")]
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the network (missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]})")
    net.to(device)
    return LoadedModel(net, config, names, metadata)
