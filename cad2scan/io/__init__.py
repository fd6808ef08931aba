"""Readers and writers for meshes, point clouds and datasets (the edge of cad2scan)."""
