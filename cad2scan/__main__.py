"""``python -m cad2scan ...`` (also what ``torchrun -m cad2scan train ...`` runs on every rank).

Before torch loads, OpenMP is told to sleep rather than spin while waiting at its barriers
(``OMP_WAIT_POLICY=PASSIVE`` unless the environment says otherwise): with spinning threads,
training on a CPU that other processes also use slows down catastrophically (measured on
2 busy cores: 102 s instead of 2.4 s for the same two steps with 2 threads).
"""

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cad2scan.cli import main  # noqa: E402  (after the OpenMP setting, before torch loads)

if __name__ == "__main__":
    sys.exit(main())
