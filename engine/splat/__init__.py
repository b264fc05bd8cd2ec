"""Gaussian splatting: camera rig, Gaussian initialisation from the mesh, rasterizers, trainer, PLY and compressed IO.

Importing the package asks OpenMP (loaded with torch) to sleep rather than spin while it waits
(``OMP_WAIT_POLICY=PASSIVE``, unless already set): on a busy or small machine spinning threads
made the CPU rasterizer 5–20× slower. It must be set before torch loads, hence here.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
