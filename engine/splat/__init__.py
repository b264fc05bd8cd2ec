"""Gaussian splatting: camera rig, Gaussian initialisation from the mesh, rasterizers, trainer, PLY and compressed IO."""
