"""Shared fixtures: small scenes built in code."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.scene import Material, MeshObject


def unit_box(name: str = "box", **kwargs: object) -> MeshObject:
    """A closed axis-aligned unit cube [0, 1]³ with 8 shared vertices and outward triangles."""
    positions = np.array(
        [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], np.float32
    )
    triangles = np.array(
        [[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
         [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]], np.int32
    )
    return MeshObject(name, positions, triangles, **kwargs)  # type: ignore[arg-type]


def grid_mesh(n: int) -> tuple[np.ndarray, np.ndarray]:
    """An n × n vertex grid over the unit square at z = 0: 2·(n−1)² triangles."""
    g = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2)
    positions = np.c_[g / (n - 1), np.zeros(len(g))].astype(np.float32)
    i = (np.arange(n - 1)[:, None] * n + np.arange(n - 1)[None, :]).ravel()
    triangles = np.concatenate([np.c_[i, i + n, i + 1], np.c_[i + 1, i + n, i + n + 1]]).astype(np.int32)
    return positions, triangles


@pytest.fixture
def leaf_material() -> Material:
    from engine.scene import Texture

    rgba = np.full((8, 8, 4), 255, np.uint8)
    rgba[:, :4, 3] = 0  # half the card is a hole
    return Material("leaf", base_color_texture=Texture("leaf", rgba), alpha_mode="MASK", alpha_cutoff=0.5)


EXTERNAL = Path(__file__).resolve().parent / "external"


def khronos_validate(path: Path) -> dict[str, Any]:
    """The Khronos glTF validator's JSON report on ``path`` (npm package in tests/external)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (Node.js) is not on PATH; it runs the Khronos glTF validator")
    if not (EXTERNAL / "node_modules" / "gltf-validator").is_dir():
        pytest.fail("the Khronos glTF validator is not installed: run `npm ci --prefix tests/external`")
    result = subprocess.run([node, str(EXTERNAL / "gltf_validate.mjs"), str(path)], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
