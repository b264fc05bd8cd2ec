"""The splat files' frame and the conversions into it (numpy only: the Blender add-on uses it).

The Scene is Z-up (like Blender). 3DGS tools expect the COLMAP/OpenCV-like frame of the
original trainer's data, +Y down: SuperSplat, PlayCanvas and the Unity and Blender splat
add-ons show such files upright. :data:`SCENE_TO_FILE` rotates the scene frame into it,
(x, y, z) → (x, −z, y), i.e. +90° about X. Training runs in the file frame (cameras and the
initial Gaussians are rotated once), so spherical harmonics never need rotating.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Rotation from the scene frame (Z up) to the file frame (+Y down): (x, y, z) → (x, −z, y).
SCENE_TO_FILE = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
#: The same rotation as a wxyz quaternion (+90° about X).
SCENE_TO_FILE_QUAT = np.array([math.sqrt(0.5), math.sqrt(0.5), 0.0, 0.0])
FRAME = "3dgs: x right, y down, z forward (scene +Z up is -Y)"


def _quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of wxyz quaternions (broadcast)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def init_to_file_frame(init: Any) -> Any:
    """The initial Gaussians rotated from the scene frame into the file frame."""
    from engine.splat.init import GaussianInit  # numpy only

    return GaussianInit(means=np.asarray(init.means, np.float64) @ SCENE_TO_FILE.T, scales=init.scales,
                        quats=_quat_multiply(SCENE_TO_FILE_QUAT, np.asarray(init.quats, np.float64)),
                        colors=init.colors, opacities=init.opacities,
                        normals=np.asarray(init.normals, np.float64) @ SCENE_TO_FILE.T)


def viewmats_to_file_frame(viewmats: np.ndarray) -> np.ndarray:
    """World-to-camera matrices of the scene frame → of the file frame (x_cam = V·R⁻¹·x_file)."""
    inverse = np.eye(4)
    inverse[:3, :3] = SCENE_TO_FILE.T
    return np.asarray(viewmats, np.float64) @ inverse


def cloud_to_scene_frame(means: np.ndarray, quats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions and rotations read from a splat file → the scene frame (for previews)."""
    inverse_quat = SCENE_TO_FILE_QUAT * np.array([1.0, -1.0, -1.0, -1.0])
    return (np.asarray(means, np.float64) @ SCENE_TO_FILE,
            _quat_multiply(inverse_quat, np.asarray(quats, np.float64)))
