"""Test-wide settings: OpenMP threads sleep rather than spin (set before torch loads)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
