"""Optimizer engine: scene analysis, routing, baking, splatting, verification and scheduling.

Light layers (``engine.scene``, ``engine.analyze``, ``engine.route``) import only numpy,
msgpack and the standard library so they can run inside Blender; heavy layers import lazily.
"""

__version__ = "0.1.0"
