"""Errors raised at the edges of cad2scan (readers, config, CLI).

Every error names what was wrong and where (a file path or a config key), so a user
never has to read a traceback from deep inside numpy to find the problem.
"""

from __future__ import annotations

from pathlib import Path


class Cad2ScanError(Exception):
    """Base class for every error cad2scan raises on purpose."""


class DataFormatError(Cad2ScanError):
    """A data file is malformed: wrong header, truncated body, NaNs, bad counts...

    The message always starts with the file path.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class EmptyScanError(DataFormatError):
    """A scan or mesh that has no points (or no faces, for a mesh) after reading."""


class ConfigError(Cad2ScanError):
    """A config file or value is invalid (unknown key, wrong type, out of range)."""


class UnknownClassError(Cad2ScanError):
    """A class name or label id that is not in the active category set."""


class CheckpointError(Cad2ScanError):
    """A checkpoint is missing, tampered with, or does not match the model."""
