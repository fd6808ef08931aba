"""Checkpoints: weights in safetensors, with the resolved config and class list inside.

Loading never unpickles anything: safetensors holds only tensors and string metadata. A
checkpoint is self-describing, so ``predict`` and ``evaluate`` need nothing but the file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from cad2scan.config import RunConfig, config_from_dict, config_to_dict
from cad2scan.errors import CheckpointError, Cad2ScanError
from cad2scan.io.atomic import atomic_write_bytes
from cad2scan.model.net import RTLNet

FORMAT = "cad2scan-checkpoint-1"
log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    net: RTLNet
    config: RunConfig
    class_names: list[str]
    metadata: dict


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
    atomic_write_bytes(path, save(state, metadata=metadata))


def read_checkpoint_metadata(path: str | Path) -> dict:
    """The string metadata of a checkpoint (raises CheckpointError when unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with open(path, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            if header_size <= 0 or header_size > 100 * 2**20:
                raise CheckpointError(f"{path}: not a safetensors checkpoint (bad header size)")
            header = json.loads(handle.read(header_size))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({error})") from None
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cad2scan checkpoint (format {metadata.get('format')!r})")
    return metadata


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    class_names: list[str] | None = None) -> LoadedModel:
    """Rebuild the network from a checkpoint and load its weights.

    With ``class_names`` different from the checkpoint's, the anchor head is rebuilt for
    the new classes (backbone and hull weights are kept) and a message says so.
    """
    path = Path(path)
    metadata = read_checkpoint_metadata(path)
    try:
        config = config_from_dict(yaml.safe_load(metadata["config"]), f"{path} (embedded config)")
        saved_names = json.loads(metadata["class_names"])
        state = load_file(str(path), device="cpu")
    except (SafetensorError, KeyError, ValueError, yaml.YAMLError) as error:
        raise CheckpointError(f"{path}: damaged checkpoint ({error})") from None
    except Cad2ScanError as error:
        raise CheckpointError(f"{path}: {error}") from None
    names = list(class_names) if class_names is not None else saved_names
    net = RTLNet(config.model, len(names))
    if names != saved_names:
        log.warning("%s: classes %s differ from the checkpoint's %s: the anchor head is re-initialised",
                    path, names, saved_names)
        state = {k: v for k, v in state.items() if not k.startswith("anchors.")}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise CheckpointError(f"{path}: weights do not fit the network ({str(error).splitlines()[0]})") from None
    if names != saved_names:
        missing = [k for k in missing if not k.startswith("anchors.")]
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the network (missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]})")
    net.to(device)
    return LoadedModel(net, config, names, metadata)
