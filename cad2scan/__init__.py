"""cad2scan: find object categories in real 3D scans from labelled CAD models.

Nothing runs at import time: no downloads, no thread changes, no file access.
"""

__version__ = "0.1.0"
