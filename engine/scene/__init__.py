"""Scene model, importers/exporter (glTF, OBJ) and the wire codec.

Importing this package loads only numpy and the standard library; file parsers and image
codecs are imported when a file is read.
"""

from engine.scene.model import (
    DEFAULT_MATERIAL,
    Camera,
    Light,
    Material,
    MeshObject,
    Scene,
    Texture,
)

__all__ = [
    "DEFAULT_MATERIAL",
    "Camera",
    "Light",
    "Material",
    "MeshObject",
    "Scene",
    "Texture",
    "export_gltf",
    "load_scene",
]


def load_scene(path, *, unit=None):
    """Read a .gltf, .glb or .obj file into a Scene (see engine.scene.io.load_scene)."""
    from engine.scene.io import load_scene as _load

    return _load(path, unit=unit)


def export_gltf(scene, path):
    """Write a Scene as .glb or .gltf (see engine.scene.gltf.export_gltf)."""
    from engine.scene.gltf import export_gltf as _export

    return _export(scene, path)
