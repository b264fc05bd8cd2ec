"""Camera rig for splat training: where the views are, and the one place camera conventions change.

Conventions
    The Scene is right-handed and Z-up like Blender. A *Blender camera* (``c2w_blender``,
    camera-to-world, the Scene's and the add-on's convention) looks down its local -Z axis with
    +Y up and +X right. An *OpenCV camera* (gsplat's ``viewmats``) looks down +Z with +Y down and
    +X right, so the two camera frames differ by a half turn about the camera's X axis:
    ``c2w_opencv = c2w_blender @ diag(1, -1, -1, 1)``. gsplat takes world-to-camera matrices,
    ``viewmat = inverse(c2w_opencv)``. Every conversion between the two goes through
    :func:`blender_c2w_to_opencv_viewmat` / :func:`opencv_viewmat_to_blender_c2w`.

    Intrinsics ``K = [[f, 0, cx], [0, f, cy], [0, 0, 1]]`` in pixels, square pixels, principal
    point at the image centre ``cx = width / 2, cy = height / 2``; image coordinates run from
    the top-left corner with ``v`` down, and pixel (row i, column j) has its centre at
    ``(j + 0.5, i + 0.5)`` (gsplat's rasterizer and :func:`pixel_rays` agree on this). The
    field of view ``fov_x`` is horizontal: ``f = width / (2 tan(fov_x / 2))``.

Rig kinds (:func:`plan_rig`)
    ``object``: cameras on a sphere around the bounds' centre, on a Fibonacci lattice (equal
    area per camera, deterministic; ``seed`` only turns the lattice about Z), all looking at the
    centre, far enough that the bounding sphere's image is a centred circle whose radius is
    ``FIT_MARGIN`` (90 %) of half the image's shorter side. With ``upper_hemisphere`` the
    lattice covers only the cap of directions whose camera stays above
    ``bottom + GROUND_CLEARANCE · radius`` (objects standing on the ground).
    ``interior``: cameras inside the bounds shrunk by ``INTERIOR_MARGIN`` of each extent from
    every wall, at jittered grid positions (one random cell of a grid proportional to the
    extents per camera), looking along the Fibonacci directions of the whole sphere (each
    direction once, randomly assigned to positions), so every direction is seen.
    ``auto``: ``interior`` when the caller says the scene is an enclosure (``enclosed=True``,
    e.g. from the analysis: a closed room seen from inside), otherwise ``object``. The bounds
    alone cannot tell a room from a box-shaped object, so the rule is explicit.

Split
    View ``i`` is held out for testing when ``i % test_every == 0`` (the 3DGS paper's "llff
    hold"); at least one view is held out and at least one trains.

Everything here is numpy; the trainer turns the float32 ``viewmats`` / ``Ks`` into tensors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import ConfigError

log = logging.getLogger(__name__)

KINDS = ("object", "interior")
PLAN_KINDS = ("auto", *KINDS)
#: Blender camera frame → OpenCV camera frame (a half turn about the camera's X axis); its own inverse.
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
BLENDER_TO_OPENCV.flags.writeable = False
#: The bounding sphere's image radius as a fraction of half the image's shorter side (object rigs).
FIT_MARGIN = 0.9
#: Upper-hemisphere object rigs keep cameras this many bounding radii above the bounds' bottom.
GROUND_CLEARANCE = 0.05
#: Interior rigs keep cameras this fraction of each extent away from the walls.
INTERIOR_MARGIN = 0.15
#: An object's bounds "stand on the ground" (auto upper hemisphere) when their bottom is within
#: this fraction of the bounding diameter of z = 0.
GROUND_TOLERANCE = 0.01
MIN_SIZE, MAX_SIZE = 16, 4096
MIN_FOV_DEG, MAX_FOV_DEG = 1.0, 170.0
MAX_VIEWS = 100_000
DICT_VERSION = 1
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


# ---------------------------------------------------------------------------------------------
# Conventions


def blender_c2w_to_opencv_viewmat(c2w: np.ndarray) -> np.ndarray:
    """Blender camera-to-world (…, 4, 4) → OpenCV world-to-camera (…, 4, 4) float64 (gsplat's viewmats)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    _check_matrices(c2w, "c2w")
    return np.linalg.inv(c2w @ BLENDER_TO_OPENCV)


def opencv_viewmat_to_blender_c2w(viewmat: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera (…, 4, 4) → Blender camera-to-world (…, 4, 4) float64; inverse of the above."""
    viewmat = np.asarray(viewmat, dtype=np.float64)
    _check_matrices(viewmat, "viewmat")
    return np.linalg.inv(viewmat) @ BLENDER_TO_OPENCV


def focal_from_fov(width: int, fov_x: float) -> float:
    """Focal length in pixels of an image ``width`` pixels wide with horizontal field of view ``fov_x`` (radians)."""
    return 0.5 * float(width) / math.tan(0.5 * float(fov_x))


def intrinsics(width: int, height: int, fov_x_rad: float) -> np.ndarray:
    """Pinhole K (3, 3) float64: square pixels, horizontal FOV ``fov_x_rad``, principal point at the centre."""
    f = focal_from_fov(width, fov_x_rad)
    return np.array([[f, 0.0, 0.5 * width], [0.0, f, 0.5 * height], [0.0, 0.0, 1.0]])


def look_at(eye: Any, target: Any, up: Any = (0.0, 0.0, 1.0)) -> np.ndarray:
    """Blender-convention camera-to-world (…, 4, 4) at ``eye`` looking at ``target`` with ``up`` as the image's up.

    ``eye`` and ``target`` broadcast over leading dimensions. Where the view direction is
    parallel to ``up`` (looking straight down or up), the world axis least aligned with the view
    direction stands in for ``up``.
    """
    eye = np.asarray(eye, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    eye, target = np.broadcast_arrays(eye, target)
    forward = target - eye
    length = np.linalg.norm(forward, axis=-1, keepdims=True)
    if not np.all(length > 0) or not np.all(np.isfinite(length)):
        raise ConfigError("look_at needs an eye and a target that differ and are finite", where="camera rig")
    forward = forward / length
    up = np.broadcast_to(up / np.linalg.norm(up), forward.shape)
    right = np.cross(forward, up)
    right_norm = np.linalg.norm(right, axis=-1, keepdims=True)
    parallel = right_norm[..., 0] < 1e-6
    if np.any(parallel):
        fallback = np.eye(3)[np.argmin(np.abs(forward), axis=-1)]
        right = np.where(parallel[..., None], np.cross(forward, fallback), right)
        right_norm = np.linalg.norm(right, axis=-1, keepdims=True)
    right = right / right_norm
    image_up = np.cross(right, forward)
    c2w = np.zeros((*forward.shape[:-1], 4, 4))
    c2w[..., :3, 0] = right
    c2w[..., :3, 1] = image_up
    c2w[..., :3, 2] = -forward
    c2w[..., :3, 3] = eye
    c2w[..., 3, 3] = 1.0
    return c2w


def pixel_rays(
    c2w_blender: np.ndarray, K: np.ndarray, width: int, height: int  # noqa: N803 - the intrinsic matrix
) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays through the pixel centres: ``origins``, unit ``directions`` (…, H·W, 3) float64.

    Pixel (row i, column j) is element ``i · width + j``; its ray passes through image point
    ``(j + 0.5, i + 0.5)``, so a point on it projects there with the matching viewmat and K.
    ``c2w_blender`` is (4, 4) or (C, 4, 4); ``K`` (3, 3) or (C, 3, 3).
    """
    c2w = np.asarray(c2w_blender, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)  # noqa: N806
    _check_matrices(c2w, "c2w")
    u = np.arange(width, dtype=np.float64) + 0.5
    v = np.arange(height, dtype=np.float64) + 0.5
    uu, vv = np.meshgrid(u, v)  # (H, W): row i, column j
    uu, vv = uu.ravel(), vv.ravel()
    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy = K[..., 0, 2, None], K[..., 1, 2, None]
    # OpenCV camera direction (x right, y down, z forward) → Blender camera frame (y up, -z forward).
    x = (uu - cx) / fx
    y = (vv - cy) / fy
    x, y = np.broadcast_arrays(x, y)
    local = np.stack([x, -y, -np.ones_like(x)], axis=-1)  # (…, H·W, 3)
    rotation = c2w[..., :3, :3]
    directions = np.einsum("...ij,...nj->...ni", rotation, local)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    origins = np.broadcast_to(c2w[..., None, :3, 3], directions.shape).copy()
    return origins, directions


def camera_rays(rig: CameraRig, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The rays of view ``index`` of ``rig`` (see :func:`pixel_rays`)."""
    return pixel_rays(rig.c2w_blender[index], rig.K, rig.width, rig.height)


def fibonacci_directions(count: int, *, z_min: float = -1.0, phase: float = 0.0) -> np.ndarray:
    """``count`` unit vectors (count, 3) spread evenly over the cap z ≥ ``z_min`` (the whole sphere at -1).

    Fibonacci lattice: equal-area bands in z (from the top down), successive points turned by
    the golden angle; ``phase`` turns the whole lattice about Z.
    """
    i = np.arange(count, dtype=np.float64) + 0.5
    z = 1.0 - i / count * (1.0 - z_min)
    rho = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    phi = phase + GOLDEN_ANGLE * np.arange(count)
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=-1)


# ---------------------------------------------------------------------------------------------
# The rig


@dataclass(frozen=True, eq=False)
class CameraRig:
    """A set of pinhole views sharing one image size and FOV, split into train and test views.

    ``c2w_blender`` (C, 4, 4) float64 Blender-convention camera-to-world matrices (scene units);
    ``fov_x`` horizontal field of view in radians; ``train`` / ``test`` sorted view indices
    (disjoint); ``kind`` "object" or "interior"; ``bounds_min`` / ``bounds_max`` the scene
    bounds the rig was planned for (None when unknown). Arrays are stored read-only.
    """

    width: int
    height: int
    fov_x: float
    c2w_blender: np.ndarray
    names: tuple[str, ...]
    train: tuple[int, ...]
    test: tuple[int, ...]
    kind: str = "object"
    bounds_min: tuple[float, float, float] | None = None
    bounds_max: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        where = "camera rig"
        set_ = object.__setattr__
        set_(self, "width", _image_size(self.width, "width"))
        set_(self, "height", _image_size(self.height, "height"))
        set_(self, "fov_x", _fov_rad(self.fov_x, "fov_x"))
        try:
            c2w = np.array(self.c2w_blender, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"c2w_blender is not numeric ({exc})", where=where) from None
        if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or c2w.shape[0] < 1:
            raise ConfigError(f"c2w_blender has shape {c2w.shape}, expected (C, 4, 4) with C ≥ 1", where=where)
        if not np.isfinite(c2w).all():
            raise ConfigError("c2w_blender holds NaN or Inf", where=where)
        c2w.flags.writeable = False
        set_(self, "c2w_blender", c2w)
        count = c2w.shape[0]
        names = tuple(str(n) for n in self.names)
        if len(names) != count or len(set(names)) != count:
            raise ConfigError(f"names must be {count} unique strings, one per view (got {len(names)})", where=where)
        set_(self, "names", names)
        train, test = _indices(self.train, count, "train"), _indices(self.test, count, "test")
        if set(train) & set(test):
            raise ConfigError(f"views {sorted(set(train) & set(test))} are both train and test views", where=where)
        set_(self, "train", train)
        set_(self, "test", test)
        if self.kind not in KINDS:
            raise ConfigError(f"kind is {self.kind!r}, expected one of {', '.join(KINDS)}", where=where)
        for attr in ("bounds_min", "bounds_max"):
            value = getattr(self, attr)
            if value is not None:
                array = np.asarray(value, dtype=np.float64)
                if array.shape != (3,) or not np.isfinite(array).all():
                    raise ConfigError(f"{attr} must be 3 finite numbers, got {value!r}", where=where)
                set_(self, attr, tuple(float(x) for x in array))

    @property
    def count(self) -> int:
        """Number of views."""
        return int(self.c2w_blender.shape[0])

    @property
    def focal(self) -> float:
        """Focal length in pixels (square pixels)."""
        return focal_from_fov(self.width, self.fov_x)

    @property
    def fov_y(self) -> float:
        """Vertical field of view in radians."""
        return 2.0 * math.atan(0.5 * self.height / self.focal)

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the standard name of the intrinsic matrix
        """Intrinsics (3, 3) float64 shared by every view."""
        return intrinsics(self.width, self.height, self.fov_x)

    @property
    def positions(self) -> np.ndarray:
        """Camera centres (C, 3) float64, world."""
        return self.c2w_blender[:, :3, 3].copy()

    @property
    def forwards(self) -> np.ndarray:
        """Unit view directions (C, 3) float64, world (each camera's -Z axis)."""
        axis = -self.c2w_blender[:, :3, 2]
        return axis / np.linalg.norm(axis, axis=-1, keepdims=True)

    @property
    def viewmats(self) -> np.ndarray:
        """OpenCV world-to-camera matrices (C, 4, 4) float32: gsplat's ``viewmats``."""
        return blender_c2w_to_opencv_viewmat(self.c2w_blender).astype(np.float32)

    @property
    def Ks(self) -> np.ndarray:  # noqa: N802 - gsplat's name
        """Intrinsics (C, 3, 3) float32: gsplat's ``Ks``."""
        return np.repeat(self.K[None].astype(np.float32), self.count, axis=0)

    def cameras(self, *, near: float | None = None, far: float | None = None) -> tuple[Any, ...]:
        """The views as :class:`engine.scene.Camera` objects (for the add-on's view renderer).

        ``near`` / ``far`` default to clip distances derived from the bounds (when known) so
        that the whole scene lies between them, else to the Camera's defaults.
        """
        from engine.scene import Camera

        clip: dict[str, float] = {}
        if self.bounds_min is not None and self.bounds_max is not None:
            lo, hi = np.asarray(self.bounds_min), np.asarray(self.bounds_max)
            radius = max(0.5 * float(np.linalg.norm(hi - lo)), 1e-9)
            reach = float(np.linalg.norm(self.positions - 0.5 * (lo + hi), axis=1).max()) + radius
            clip = {"near": radius * 1e-3, "far": 2.0 * reach}
        if near is not None:
            clip["near"] = float(near)
        if far is not None:
            clip["far"] = float(far)
        f = self.focal
        return tuple(
            Camera(name, self.width, self.height, f, f, 0.5 * self.width, 0.5 * self.height, self.c2w_blender[i], **clip)
            for i, name in enumerate(self.names)
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (``cameras.json``); :meth:`from_dict` reads it back.

        ``c2w_blender`` is authoritative; ``K`` and ``viewmats_opencv`` are written for readers
        that want gsplat's convention and are ignored on reading.
        """
        return {
            "version": DICT_VERSION,
            "convention": (
                "c2w_blender: camera-to-world, camera looks down local -Z with +Y up (Blender), world Z-up "
                "right-handed, scene units; viewmats_opencv: world-to-camera, camera looks down +Z with +Y "
                "down (OpenCV/gsplat); K in pixels from the top-left corner, pixel centres at +0.5"
            ),
            "kind": self.kind,
            "width": self.width,
            "height": self.height,
            "fov_x": self.fov_x,
            "K": self.K.tolist(),
            "names": list(self.names),
            "train": list(self.train),
            "test": list(self.test),
            "bounds_min": list(self.bounds_min) if self.bounds_min is not None else None,
            "bounds_max": list(self.bounds_max) if self.bounds_max is not None else None,
            "c2w_blender": self.c2w_blender.tolist(),
            "viewmats_opencv": blender_c2w_to_opencv_viewmat(self.c2w_blender).tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CameraRig:
        """A rig from :meth:`to_dict`'s output; bad or missing fields raise ConfigError."""
        where = "cameras.json"
        if not isinstance(data, Mapping):
            raise ConfigError(f"expected a JSON object, got {type(data).__name__}", where=where)
        if data.get("version") != DICT_VERSION:
            raise ConfigError(f"version is {data.get('version')!r}, expected {DICT_VERSION}", where=where)
        required = ("kind", "width", "height", "fov_x", "names", "train", "test", "c2w_blender")
        missing = [key for key in required if key not in data]
        if missing:
            raise ConfigError(f"missing field(s): {', '.join(missing)}", where=where)
        return cls(
            width=data["width"],
            height=data["height"],
            fov_x=data["fov_x"],
            c2w_blender=data["c2w_blender"],
            names=tuple(data["names"]),
            train=tuple(data["train"]),
            test=tuple(data["test"]),
            kind=data["kind"],
            bounds_min=data.get("bounds_min"),
            bounds_max=data.get("bounds_max"),
        )


# ---------------------------------------------------------------------------------------------
# Planning


def check_bounds(bounds_min: Any, bounds_max: Any, *, where: str = "camera rig") -> tuple[np.ndarray, np.ndarray]:
    """Bounds as two float64 (3,) arrays; ConfigError when non-finite, inverted or of zero size."""
    try:
        lo = np.asarray(bounds_min, dtype=np.float64).reshape(3)
        hi = np.asarray(bounds_max, dtype=np.float64).reshape(3)
    except (TypeError, ValueError):
        raise ConfigError(
            f"bounds must be two points of 3 numbers, got {bounds_min!r} and {bounds_max!r}", where=where
        ) from None
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ConfigError(f"bounds {lo.tolist()} .. {hi.tolist()} are not finite", where=where,
                          hint="the scene has NaN/Inf coordinates or no geometry")
    if (hi < lo).any() or not np.linalg.norm(hi - lo) > 0:
        raise ConfigError(f"bounds {lo.tolist()} .. {hi.tolist()} are empty", where=where,
                          hint="the scene needs geometry with a non-zero size")
    return lo, hi


def split_views(count: int, test_every: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(train, test) indices: view i is a test view when i % test_every == 0; both non-empty."""
    test = tuple(range(0, count, test_every))
    train = tuple(i for i in range(count) if i % test_every)
    return train, test


def plan_rig(
    bounds_min: Any,
    bounds_max: Any,
    *,
    kind: str = "auto",
    views: int = 64,
    width: int = 128,
    height: int | None = None,
    fov_deg: float = 40.0,
    test_every: int = 8,
    seed: int = 0,
    upper_hemisphere: bool | None = None,
    enclosed: bool = False,
) -> CameraRig:
    """Plan ``views`` cameras for a scene with these bounds (scene units); see the module docstring.

    ``kind`` "object", "interior" or "auto" (interior when ``enclosed``). ``height`` defaults to
    ``width``. ``upper_hemisphere`` (object rigs) None means: when the bounds' bottom lies at
    z ≈ 0 (within ``GROUND_TOLERANCE`` of the diameter), i.e. the object stands on the ground plane.
    """
    where = "camera rig"
    lo, hi = check_bounds(bounds_min, bounds_max, where=where)
    if kind not in PLAN_KINDS:
        raise ConfigError(f"kind is {kind!r}, expected one of {', '.join(PLAN_KINDS)}", where=where)
    views = _integer(views, "views", 2, MAX_VIEWS)
    width = _image_size(width, "width")
    height = width if height is None else _image_size(height, "height")
    if not (isinstance(fov_deg, (int, float)) and MIN_FOV_DEG < fov_deg < MAX_FOV_DEG):
        raise ConfigError(f"fov_deg = {fov_deg!r} is outside ({MIN_FOV_DEG}, {MAX_FOV_DEG}) degrees", where=where)
    test_every = _integer(test_every, "test_every", 2, None)
    if kind == "auto":
        kind = "interior" if enclosed else "object"
    fov_x = math.radians(float(fov_deg))
    rng = np.random.default_rng(seed)

    if kind == "object":
        c2w = _object_cameras(lo, hi, views, width, height, fov_x, rng, upper_hemisphere)
    else:
        c2w = _interior_cameras(lo, hi, views, rng)
    train, test = split_views(views, test_every)
    rig = CameraRig(
        width=width,
        height=height,
        fov_x=fov_x,
        c2w_blender=c2w,
        names=tuple(f"view_{i:04d}" for i in range(views)),
        train=train,
        test=test,
        kind=kind,
        bounds_min=tuple(lo.tolist()),
        bounds_max=tuple(hi.tolist()),
    )
    log.info("camera rig: %s, %d views (%d train, %d test), %dx%d, fov %.1f°", kind, views, len(train),
             len(test), width, height, fov_deg)
    return rig


def object_distance(radius: float, width: int, height: int, fov_x: float) -> float:
    """Distance at which a sphere of ``radius`` on the optical axis fills ``FIT_MARGIN`` of half the shorter side."""
    half_short = 0.5 * min(width, height)
    tan_fit = FIT_MARGIN * half_short / focal_from_fov(width, fov_x)  # tan of the sphere's angular radius
    return radius / math.sin(math.atan(tan_fit))


def _object_cameras(
    lo: np.ndarray, hi: np.ndarray, views: int, width: int, height: int, fov_x: float,
    rng: np.random.Generator, upper_hemisphere: bool | None,
) -> np.ndarray:
    center = 0.5 * (lo + hi)
    radius = 0.5 * float(np.linalg.norm(hi - lo))
    distance = object_distance(radius, width, height, fov_x)
    if upper_hemisphere is None:
        upper_hemisphere = abs(float(lo[2])) <= GROUND_TOLERANCE * 2.0 * radius
    z_min = -1.0
    if upper_hemisphere:
        floor = lo[2] + GROUND_CLEARANCE * radius
        z_min = float(np.clip((floor - center[2]) / distance, -1.0, 0.9))
    directions = fibonacci_directions(views, z_min=z_min, phase=float(rng.uniform(0.0, 2.0 * math.pi)))
    return look_at(center + distance * directions, center)


def _interior_cameras(lo: np.ndarray, hi: np.ndarray, views: int, rng: np.random.Generator) -> np.ndarray:
    extent = hi - lo
    inner_lo = lo + INTERIOR_MARGIN * extent
    inner_extent = (1.0 - 2.0 * INTERIOR_MARGIN) * extent
    # A grid with cells about as wide on every (non-flat) axis and at least `views` cells.
    active = inner_extent > 1e-9 * float(extent.max())
    dims = int(active.sum())
    cell = float(np.prod(inner_extent[active]) / views) ** (1.0 / dims)
    counts = np.where(active, np.maximum(1, np.floor(inner_extent / cell)), 1).astype(np.int64)
    while int(np.prod(counts)) < views:  # rounding down may leave too few cells: grow the coarsest axis
        coarse = np.argmax(np.where(active, inner_extent / counts, -1.0))
        counts[coarse] += 1
    chosen = rng.permutation(int(np.prod(counts)))[:views]
    cells = np.stack(np.unravel_index(chosen, tuple(counts)), axis=-1)
    positions = inner_lo + (cells + rng.random((views, 3))) / counts * inner_extent
    directions = fibonacci_directions(views, phase=float(rng.uniform(0.0, 2.0 * math.pi)))
    return look_at(positions, positions + directions[rng.permutation(views)])


# ---------------------------------------------------------------------------------------------
# Validation helpers


def _check_matrices(matrices: np.ndarray, what: str) -> None:
    if matrices.shape[-2:] != (4, 4) or matrices.ndim not in (2, 3):
        raise ConfigError(f"{what} has shape {matrices.shape}, expected (4, 4) or (C, 4, 4)", where="camera rig")


def _integer(value: Any, what: str, lo: int, hi: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{what} must be an integer, got {value!r}", where="camera rig")
    if value < lo or (hi is not None and value > hi):
        span = f"{lo}..{hi}" if hi is not None else f"at least {lo}"
        raise ConfigError(f"{what} = {value} is out of range ({span})", where="camera rig")
    return int(value)


def _image_size(value: Any, what: str) -> int:
    return _integer(value, what, MIN_SIZE, MAX_SIZE)


def _fov_rad(value: Any, what: str) -> float:
    try:
        fov = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number (radians), got {value!r}", where="camera rig") from None
    if not math.radians(MIN_FOV_DEG) < fov < math.radians(MAX_FOV_DEG):
        raise ConfigError(
            f"{what} = {math.degrees(fov) if math.isfinite(fov) else fov:.3g}° is outside ({MIN_FOV_DEG}°, {MAX_FOV_DEG}°)",
            where="camera rig",
        )
    return fov


def _indices(values: Sequence[Any], count: int, what: str) -> tuple[int, ...]:
    try:
        indices = sorted(int(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be view indices, got {values!r}", where="camera rig") from None
    if not indices:
        raise ConfigError(f"{what} holds no views; a rig needs at least one train and one test view",
                          where="camera rig")
    if indices[0] < 0 or indices[-1] >= count or len(set(indices)) != len(indices):
        raise ConfigError(f"{what} indices {indices} must be unique and within 0..{count - 1}", where="camera rig")
    return tuple(indices)
