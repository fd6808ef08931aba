"""Self-contained HTML viewer of scans, predictions and training samples (``cad2scan view``)."""
