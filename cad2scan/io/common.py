"""Small pieces shared by the file readers in :mod:`cad2scan.io`."""

from __future__ import annotations

from pathlib import Path

from cad2scan.errors import DataFormatError


def read_file_bytes(path: Path) -> bytes:
    """The whole content of ``path``; DataFormatError ("file not found", or "cannot read
    file (reason)") instead of a bare OSError, so every reader reports the path."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(path, "file not found") from None
    except OSError as exc:
        raise DataFormatError(path, f"cannot read file ({exc.strerror or exc})") from None
