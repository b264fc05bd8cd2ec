"""A tiny splat result folder made directly (no training): Gaussians, rig, reference views rendered from them.

Used by the protocol tests and ``bench/trust.py``. The references are the honest Gaussians' own renders (8-bit),
so an honest result passes the default thresholds, and a result whose colours were perturbed does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from engine.splat.frames import FRAME, viewmats_to_file_frame
from engine.splat.ply import GaussianCloud, write_ply
from engine.splat.rig import plan_rig
from engine.trust.verify import render_splat


def make_cloud(count: int = 2000, seed: int = 0) -> GaussianCloud:
    """Opaque-ish coloured Gaussians filling a unit ball."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(count, 3)) * 0.35
    colors = rng.random((count, 3))
    return GaussianCloud.from_rgb(means, colors, np.full((count, 3), 0.06), np.full(count, 0.7))


def perturbed(cloud: GaussianCloud, amount: float = 0.5, seed: int = 1) -> GaussianCloud:
    """The same Gaussians with their colours shifted (a cheating or broken producer)."""
    rng = np.random.default_rng(seed)
    shift = rng.normal(size=cloud.sh_dc.shape).astype(np.float32) * amount / 0.28209479
    return GaussianCloud(cloud.means, cloud.scales_log, cloud.quats, cloud.opacity_logit, cloud.sh_dc + shift,
                         cloud.sh_rest)


def write_result(folder: Path, cloud: GaussianCloud, *, size: int = 48, views: int = 8, test_every: int = 2,
                 reference_cloud: GaussianCloud | None = None, scene: str = "trust-test") -> Path:
    """A result folder as `optimizer splat` writes it (the files verification reads); references from
    ``reference_cloud`` (default: ``cloud`` itself)."""
    folder.mkdir(parents=True, exist_ok=True)
    rig = plan_rig(np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0]), kind="object", views=views, width=size,
                   fov_deg=40.0, test_every=test_every, seed=0)
    cameras = rig.to_dict()
    cameras["frame"] = FRAME
    cameras["viewmats_file_frame"] = viewmats_to_file_frame(rig.viewmats).tolist()
    (folder / "cameras.json").write_text(json.dumps(cameras))
    reference_dir = folder / "reference-source"
    reference_dir.mkdir(exist_ok=True)
    write_ply(reference_dir / "splat.ply", reference_cloud or cloud)
    rendered = render_splat(reference_dir, rig, rig.test)
    (folder / "references").mkdir(exist_ok=True)
    for view, image in rendered.items():
        rgba = np.concatenate([image, np.ones_like(image[..., :1])], axis=-1)
        Image.fromarray((np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8)).save(
            folder / "references" / f"test_{view}.png")
    write_ply(folder / "splat.ply", cloud)
    (folder / "splat.json").write_text(json.dumps({"scene": scene}))
    return folder
