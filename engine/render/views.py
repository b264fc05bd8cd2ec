"""Reference views path-traced with the bake's ray tracer and integrator: primary rays from a camera
instead of texels.

Cameras (OpenCV, as gsplat takes them)
    ``viewmats`` (C, 4, 4) world-to-camera with the camera looking down its +Z, +X right, +Y
    down; ``Ks`` (C, 3, 3) intrinsics in pixels; pixel (x, y) covers [x, x + 1) × [y, y + 1),
    its centre is at x + 0.5. The world is the Scene's (right-handed, Z-up, scene units).

What a view gets
    Every pixel sends ``aa`` primary rays: the pixel centre when ``aa`` is 1, else ``aa``
    points of the R2 low-discrepancy sequence shifted by a per-pixel random offset (the
    tracer's counter-based ``random_uniform``), i.e. a box filter. Each ray's visible hit
    becomes a "texel" for :func:`engine.bake.integrate.integrate`, which returns E/π there
    (``samples`` lighting samples, ``bounces`` diffuse bounces after the visible point, the
    bake's lights, emitters, environment and Russian roulette); the ray's radiance is
    ``emission + albedo × E/π`` (a Lambertian surface). ``samples × aa`` paths per pixel.
    ``rgba`` is linear radiance with **premultiplied** alpha: rgb is the mean over all of a
    pixel's rays with misses counting 0, alpha the fraction of rays that hit a surface, so the
    background is (0, 0, 0, 0) and ``rgb + (1 − alpha) × background`` composites. This is what
    a splat rasterizer renders against a black background; :func:`to_straight` gives straight
    alpha (PNG's convention). ``depth`` is camera-space z (distance along the optical axis, as
    gsplat's depth), averaged over the rays that hit, ``inf`` where none did.

Surfaces, as the integrator sees them
    The visible point's front side is the one its triangle winds counter-clockwise around, or
    clockwise for mirrored objects (negative determinant; glTF's rule, which the bake's texels
    follow too, while the integrator's bounce rays take the plain winding: see
    ``_front_normals``). A ray that meets the back of a ``double_sided`` material sees that
    side like the front (flipped normals);
    the back of a single-sided material is black and opaque (``backfaces="black"``, the bake's
    rule, so that a one-sided wall seen from behind does not leak light) or is skipped
    (``backfaces="cull"``, what glTF viewers do). The shading normal is the object's normals
    interpolated (the face normal when it has none). Albedo is the integrator's bounce albedo
    (base colour with its metallic approximation) times the base-colour texture at the hit's
    UV0, looked up like the integrator does (bilinear, repeat, V up, sRGB decoded) but from a
    mip chain of the full-size texture (up to :data:`TEXTURE_MAX_SIZE`), its level picked
    from the ray's footprint, so textures far away do not alias. Alpha: MASK materials let
    rays through where base alpha × texture alpha < cutoff, BLEND ones with probability
    1 − alpha (a stochastic cut that averages out over the pixel's rays); OPAQUE ignore alpha.
    The integrator itself treats every surface as opaque (shadows and bounces of alpha-cut
    cards are the whole card, as in the bake). Lights are not geometry: the camera never sees
    a light itself, only what it lights (Cycles shows area lights to the camera). Misses are
    transparent, not the environment colour: composite over ``Scene.environment`` to see it.
    Animated objects are left out unless ``include_animated`` (like the bake).

Determinism
    Rays are processed in chunks of whole image rows (at most :data:`CHUNK_RAYS` primary rays
    each); the integrator's seed is derived from ``seed`` and the chunk's first row, so a given
    input and seed give the same image on every run, thread count and device (CPU and CUDA
    agree up to float rounding). All of numba is reached through :mod:`engine.bake`, imported
    when :func:`render_views` runs.

Use::

    result = render_views(scene, viewmats, Ks, 128, 128, samples=16, bounces=2, aa=4)
    save_png("view0.png", result.rgba[0])
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import ConfigError, InputError
from engine.progress import Progress, no_progress

if TYPE_CHECKING:
    from engine.bake.bvh import BVH
    from engine.bake.integrate import BakeInputs, SceneTriangles
    from engine.bake.kernels import CudaBVH
    from engine.scene.model import Scene, Texture

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
BACKFACES = ("black", "cull")
#: Primary rays per chunk (whole image rows): bounds memory (about 0.6 GB a chunk) and still fills a GPU.
CHUNK_RAYS = 1 << 20
#: Alpha-cut (or culled) surfaces a primary ray may pass through before it counts as a miss.
MAX_LAYERS = 16
#: Largest texture side kept for primary hits (bigger ones are box-filtered down first).
TEXTURE_MAX_SIZE = 4096
#: Footprints of grazing hits are stretched by 1 / max(|cos|, this) at most (no anisotropy).
GRAZING_COS = 0.25
#: R2 sequence (Roberts): the sub-pixel pattern for aa > 1.
R2 = (0.7548776662466927, 0.5698402909980532)
LIMIT_SIZE = 16384
LIMIT_AA = 1024

_ALPHA_OPAQUE, _ALPHA_MASK, _ALPHA_BLEND = 0, 1, 2


@dataclass(frozen=True, eq=False)
class RenderResult:
    """Rendered views: ``rgba`` (C, H, W, 4) float32 linear radiance, premultiplied alpha
    (see the module docstring), ``depth`` (C, H, W) float32 camera z (inf: background),
    ``seconds`` wall time of the whole call, ``device`` "cpu" or "cuda", ``samples`` lighting
    samples per primary ray, ``aa`` primary rays per pixel, ``rays`` primary rays traced
    (pass-throughs of alpha-cut surfaces included), ``paths`` lighting paths integrated."""

    rgba: np.ndarray
    depth: np.ndarray
    seconds: float
    device: str
    samples: int
    aa: int
    rays: int
    paths: int

    @property
    def alpha(self) -> np.ndarray:
        """(C, H, W) coverage: the fraction of each pixel's rays that hit a surface."""
        return self.rgba[..., 3]

    @property
    def premultiplied(self) -> np.ndarray:
        """``rgba`` itself (premultiplied alpha)."""
        return self.rgba

    @property
    def straight(self) -> np.ndarray:
        """``rgba`` with straight alpha: rgb / alpha where alpha > 0, 0 elsewhere."""
        return to_straight(self.rgba)


# ---------------------------------------------------------------------------------------------
# Alpha conventions and 8-bit images


def to_straight(rgba: np.ndarray) -> np.ndarray:
    """Premultiplied → straight alpha (float32; rgb is 0 where alpha is 0)."""
    rgba = np.asarray(rgba, np.float32)
    alpha = rgba[..., 3:4]
    rgb = np.divide(rgba[..., :3], alpha, out=np.zeros_like(rgba[..., :3]), where=alpha > 0)
    return np.concatenate([rgb, alpha], axis=-1)


def to_premultiplied(rgba: np.ndarray) -> np.ndarray:
    """Straight → premultiplied alpha (float32)."""
    rgba = np.asarray(rgba, np.float32)
    return np.concatenate([rgba[..., :3] * rgba[..., 3:4], rgba[..., 3:4]], axis=-1)


def composite(rgba: np.ndarray, background: Any = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Premultiplied ``rgba`` over a constant linear ``background`` colour: opaque rgb (…, 3) float32."""
    rgba = np.asarray(rgba, np.float32)
    back = np.asarray(background, np.float32).reshape(3)
    return rgba[..., :3] + (1.0 - rgba[..., 3:4]) * back


def to_srgb8(rgba: np.ndarray, exposure: float = 1.0, *, premultiplied: bool = True) -> np.ndarray:
    """Linear float RGB(A) → 8-bit: rgb × ``exposure``, sRGB-encoded; alpha stays linear.

    The output has straight alpha (PNG's convention): a ``premultiplied`` input (what
    :func:`render_views` gives) is divided by its alpha first. Values are clipped to [0, 1].
    """
    image = np.asarray(rgba, np.float32)
    if image.ndim < 1 or image.shape[-1] not in (3, 4):
        raise ConfigError(f"image has shape {image.shape}, expected (..., 3) or (..., 4)", where="to_srgb8: rgba")
    if not isinstance(exposure, (int, float)) or not math.isfinite(exposure) or exposure <= 0:
        raise ConfigError(f"exposure must be a positive finite number, got {exposure!r}", where="to_srgb8: exposure")
    from engine.bake.output import srgb_encode

    image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
    if image.shape[-1] == 4 and premultiplied:
        image = to_straight(image)
    rgb = srgb_encode(image[..., :3] * np.float32(exposure))
    channels = [rgb]
    if image.shape[-1] == 4:
        channels.append(np.clip(image[..., 3:4], 0.0, 1.0))
    return np.rint(np.concatenate(channels, axis=-1) * 255.0).astype(np.uint8)


def save_png(path: str | Path, rgba: np.ndarray, exposure: float = 1.0, *, premultiplied: bool = True) -> Path:
    """Write one linear (H, W, 3 or 4) image as an 8-bit sRGB PNG (straight alpha); see :func:`to_srgb8`."""
    image = np.asarray(rgba)
    if image.ndim != 3:
        raise ConfigError(f"image has shape {image.shape}, expected one (H, W, 3 or 4) image",
                          where="save_png: rgba", hint="save views one by one: rgba[i]")
    pixels = to_srgb8(image, exposure, premultiplied=premultiplied)
    from PIL import Image

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(pixels), mode="RGBA" if pixels.shape[2] == 4 else "RGB").save(
            path, format="PNG")
    except OSError as exc:
        raise InputError(f"cannot write the PNG ({exc.strerror or exc})", where=str(path)) from None
    return path


def load_png(path: str | Path, *, premultiplied: bool = True) -> np.ndarray:
    """Read an 8-bit sRGB PNG (or any image Pillow reads) as linear float32 (H, W, 4).

    The inverse of :func:`save_png` up to 8-bit rounding: rgb sRGB-decoded, alpha linear (1
    where the file has none), premultiplied unless ``premultiplied`` is False.
    """
    from engine.bake.output import srgb_decode
    from engine.scene.images import load_image

    texture = load_image(path)
    pixels = texture.pixels.astype(np.float32) / 255.0
    channels = pixels.shape[2]
    rgb = pixels[:, :, :1].repeat(3, axis=2) if channels <= 2 else pixels[:, :, :3]
    alpha = pixels[:, :, -1:] if channels in (2, 4) else np.ones_like(pixels[:, :, :1])
    image = np.concatenate([srgb_decode(rgb).astype(np.float32), alpha], axis=2)
    return to_premultiplied(image) if premultiplied else image


# ---------------------------------------------------------------------------------------------
# Input checks


def _host_array(value: Any, name: str) -> np.ndarray:
    """An array-like (numpy, nested lists, a CPU torch tensor) as float64."""
    if hasattr(value, "detach"):  # a torch tensor: duck-typed, torch is not imported here
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot read {name} as numbers ({exc})", where=f"render_views: {name}") from None


def _check_cameras(viewmats: Any, Ks: Any, width: Any, height: Any) -> tuple[np.ndarray, np.ndarray, int, int]:  # noqa: N803
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= LIMIT_SIZE:
            raise ConfigError(f"{name} must be an integer in 1..{LIMIT_SIZE}, got {value!r}",
                              where=f"render_views: {name}")
    v = _host_array(viewmats, "viewmats")
    k = _host_array(Ks, "Ks")
    if v.ndim == 2:
        v = v[None]
    if k.ndim == 2:
        k = k[None]
    if v.ndim != 3 or v.shape[1:] != (4, 4) or v.shape[0] == 0:
        raise ConfigError(f"viewmats has shape {v.shape}, expected (C, 4, 4) world-to-camera matrices",
                          where="render_views: viewmats")
    if k.ndim != 3 or k.shape[1:] != (3, 3) or k.shape[0] == 0:
        raise ConfigError(f"Ks has shape {k.shape}, expected (C, 3, 3) intrinsics", where="render_views: Ks")
    if k.shape[0] != v.shape[0]:
        raise ConfigError(f"Ks has {k.shape[0]} cameras but viewmats has {v.shape[0]}", where="render_views: Ks")
    for name, a in (("viewmats", v), ("Ks", k)):
        bad = ~np.isfinite(a).reshape(len(a), -1).all(axis=1)
        if bad.any():
            raise ConfigError(f"{name}[{int(np.argmax(bad))}] holds NaN or Inf", where=f"render_views: {name}")
    rotation = v[:, :3, :3]
    error = np.abs(rotation @ rotation.transpose(0, 2, 1) - np.eye(3)).reshape(len(v), -1).max(axis=1)
    bottom = np.abs(v[:, 3] - (0.0, 0.0, 0.0, 1.0)).max(axis=1)
    bad = (error > 1e-3) | (bottom > 1e-6) | (np.linalg.det(rotation) < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ConfigError(f"viewmats[{i}] is not a rigid world-to-camera transform (rotation, translation, "
                          "bottom row 0 0 0 1)", where="render_views: viewmats",
                          hint="pass OpenCV world-to-camera matrices without scale or mirroring")
    fine = (k[:, 0, 0] > 0) & (k[:, 1, 1] > 0) & (np.abs(k[:, 2] - (0.0, 0.0, 1.0)).max(axis=1) < 1e-9) \
        & (np.abs(k[:, 1, 0]) < 1e-12)
    if not fine.all():
        i = int(np.argmin(fine))
        raise ConfigError(f"Ks[{i}] is not a pinhole intrinsic matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]] "
                          "with fx, fy > 0", where="render_views: Ks")
    return np.ascontiguousarray(v), np.ascontiguousarray(k), int(width), int(height)


def _check_settings(samples: Any, bounces: Any, aa: Any, seed: Any, device: Any, backfaces: Any) -> None:
    def integer(name: str, value: Any, low: int, high: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise ConfigError(f"{name} must be an integer in {low}..{high}, got {value!r}",
                              where=f"render_views: {name}")

    integer("samples", samples, 1, 1 << 20)
    integer("bounces", bounces, 0, 64)
    integer("aa", aa, 1, LIMIT_AA)
    integer("seed", seed, 0, 2**32 - 1)
    if device not in DEVICES:
        raise ConfigError(f"device is {device!r}, expected one of {', '.join(DEVICES)}", where="render_views: device")
    if backfaces not in BACKFACES:
        raise ConfigError(f"backfaces is {backfaces!r}, expected one of {', '.join(BACKFACES)}",
                          where="render_views: backfaces")


# ---------------------------------------------------------------------------------------------
# Camera rays


def _subpixel_offsets(aa: int, seed: int, pixel: np.ndarray) -> np.ndarray:
    """(P, aa, 2) offsets in [0, 1)² of each pixel's rays: the centre for aa = 1, else R2 points
    shifted by a per-pixel random offset (Cranley–Patterson rotation)."""
    if aa == 1:
        return np.full((pixel.shape[0], 1, 2), 0.5)
    from engine.bake.kernels import random_uniform_cpu

    j = np.arange(aa, dtype=np.float64)[:, None]
    pattern = np.mod(0.5 + j * np.array(R2), 1.0)  # (aa, 2)
    shift = np.stack([random_uniform_cpu(seed, pixel, 0, d) for d in (0, 1)], axis=1).astype(np.float64)
    return np.mod(pattern[None] + shift[:, None], 1.0)


def _pixel_rays(viewmats: np.ndarray, Ks: np.ndarray, width: int, rows: np.ndarray, height: int,  # noqa: N803
                aa: int, seed: int) -> SimpleNamespace:
    """Primary rays of global image rows ``rows`` (row r is row r % H of view r // H), ordered
    (row, x, sub-ray): ``origin``, unit ``direction`` (R, 3) float32, ``zscale`` (R,) (camera
    z per unit of distance), ``spread`` (R,) (footprint of one ray per unit of distance)."""
    view = rows // height
    y = (rows % height).astype(np.float64)
    x = np.arange(width, dtype=np.float64)
    pixel = ((view[:, None] * height + (rows % height)[:, None]) * width + np.arange(width)[None, :]).ravel()
    offsets = _subpixel_offsets(aa, seed, pixel.astype(np.int64)).reshape(len(rows), width, aa, 2)
    px = x[None, :, None] + offsets[..., 0]
    py = y[:, None, None] + offsets[..., 1]
    k_inv = np.linalg.inv(Ks[view])  # (n, 3, 3)
    pixels = np.stack([px, py, np.ones_like(px)], axis=-1).reshape(len(rows), width * aa, 3)
    d_cam = pixels @ k_inv.transpose(0, 2, 1)  # K⁻¹ (px, py, 1) per ray
    rotation = viewmats[view, :3, :3]  # world → camera
    translation = viewmats[view, :3, 3]
    centre = -np.einsum("nji,nj->ni", rotation, translation)  # −Rᵀ t
    d_world = d_cam @ rotation  # Rᵀ d_cam
    length = np.sqrt(np.einsum("nri,nri->nr", d_world, d_world))
    direction = d_world / length[..., None]
    zscale = d_cam[..., 2] / length
    focal = np.sqrt(Ks[view, 0, 0] * Ks[view, 1, 1])
    spread = np.broadcast_to((1.0 / (focal * math.sqrt(aa)))[:, None], zscale.shape)
    origin = np.broadcast_to(centre[:, None, :], direction.shape)
    return SimpleNamespace(
        origin=np.ascontiguousarray(origin.reshape(-1, 3), np.float32),
        direction=np.ascontiguousarray(direction.reshape(-1, 3), np.float32),
        zscale=np.ascontiguousarray(zscale.reshape(-1)),
        spread=np.ascontiguousarray(spread.reshape(-1)),
    )


# ---------------------------------------------------------------------------------------------
# The scene as primary rays see it


def _texture_rgba(texture: Texture, max_size: int = TEXTURE_MAX_SIZE) -> list[np.ndarray]:
    """A texture as a mip chain of linear float32 (h, w, 4) images (rgb sRGB-decoded like the
    integrator's ``_texture_rgb``, alpha linear), level 0 at most ``max_size`` a side."""
    from engine.bake.integrate import srgb_to_linear

    pixels = texture.pixels
    data = pixels.astype(np.float32) / 255.0 if pixels.dtype == np.uint8 else pixels.astype(np.float32)
    channels = data.shape[2]
    rgb = data[:, :, :1].repeat(3, axis=2) if channels <= 2 else data[:, :, :3]
    if texture.colorspace == "srgb":
        rgb = srgb_to_linear(np.clip(rgb, 0.0, 1.0))
    alpha = data[:, :, -1:] if channels in (2, 4) else np.ones_like(data[:, :, :1])
    image = np.concatenate([rgb, alpha], axis=2).astype(np.float32)

    def halve(img: np.ndarray, limit: int) -> np.ndarray:
        h, w = img.shape[:2]
        fy, fx = (2 if h > limit else 1), (2 if w > limit else 1)
        h2, w2 = h // fy * fy, w // fx * fx
        return img[:h2, :w2].reshape(h2 // fy, fy, w2 // fx, fx, 4).mean(axis=(1, 3))

    while max(image.shape[:2]) > max_size:
        image = halve(image, max_size)
    levels = [np.ascontiguousarray(image)]
    while max(levels[-1].shape[:2]) > 1:
        levels.append(np.ascontiguousarray(halve(levels[-1], 1)))
    return levels


def _bilinear(image: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Bilinear, repeating lookup at UV (s, t), V up: the integrator's ``texture_rgb`` convention."""
    h, w = image.shape[:2]
    x = s * w - 0.5
    y = (1.0 - t) * h - 0.5
    fx, fy = np.floor(x), np.floor(y)
    ax, ay = (x - fx)[:, None], (y - fy)[:, None]
    x0 = np.mod(fx.astype(np.int64), w)
    y0 = np.mod(fy.astype(np.int64), h)
    x1, y1 = (x0 + 1) % w, (y0 + 1) % h
    return ((1 - ax) * (1 - ay) * image[y0, x0] + ax * (1 - ay) * image[y0, x1]
            + (1 - ax) * ay * image[y1, x0] + ax * ay * image[y1, x1])


@dataclass(frozen=True, eq=False)
class _Surfaces:
    """What primary hits read: the bake's arrays plus what only the camera needs.

    ``front`` (T, 3) float32 unit normals on the front side (see :func:`_front_normals`);
    ``v0``, ``e1``, ``e2`` (T, 3) float64 first corner and edges (hit = v0 + u·e1 + v·e2);
    ``n0``, ``n1``, ``n2`` (T, 3) float32 world vertex normals of the corners, oriented to the
    side of the winding normal (the face normal where the object has none); ``tex_id`` (T,) int32 into ``mips`` (−1: untextured); ``uv_density`` (T,) float64
    sqrt(UV area / world area); ``alpha_mode`` (T,) int8, ``alpha_base`` and ``alpha_cutoff``
    (T,) float64 from the material; ``diagonal`` of the scene bounds.
    """

    triangles: SceneTriangles
    inputs: BakeInputs
    front: np.ndarray
    v0: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    n0: np.ndarray
    n1: np.ndarray
    n2: np.ndarray
    tex_id: np.ndarray
    mips: list[list[np.ndarray]]
    uv_density: np.ndarray
    alpha_mode: np.ndarray
    alpha_base: np.ndarray
    alpha_cutoff: np.ndarray
    diagonal: float


def _traced_objects(scene: Scene, include_animated: bool) -> list[Any]:
    """The objects whose triangles ``scene_triangles`` returns, in its order."""
    return [obj for obj in scene.objects
            if obj.visible and obj.n_triangles and not (obj.animated and not include_animated)]


def _front_normals(scene: Scene, winding: np.ndarray, include_animated: bool) -> np.ndarray:
    """(T, 3) float32 unit normals on each triangle's front side: its world winding normal,
    reversed for mirrored objects (negative determinant: front faces then wind clockwise, glTF's
    rule, as the bake's texels take it). ``winding`` is the integrator's per-triangle normal."""
    intended = []
    for obj in _traced_objects(scene, include_animated):
        m = np.asarray(obj.transform, np.float64)[:3, :3]
        corners = (obj.positions.astype(np.float64) @ m.T)[obj.triangles]
        normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        intended.append(-normal if np.linalg.det(m) < 0 else normal)
    if not intended or sum(len(n) for n in intended) != winding.shape[0]:  # pragma: no cover - filter changed
        log.warning("object triangles do not line up with the traced triangles; fronts follow the winding")
        return np.ascontiguousarray(winding, np.float32)
    flip = _dot(np.concatenate(intended), winding.astype(np.float64)) < 0
    return np.ascontiguousarray(np.where(flip[:, None], -winding, winding), np.float32)


def _corner_normals(scene: Scene, triangles: SceneTriangles, face: np.ndarray, include_animated: bool) -> np.ndarray:
    """World vertex normals of every triangle corner (the face normal where an object has none),
    each triangle's three flipped together to the side of its winding normal ``face``."""
    parts = []
    for obj in _traced_objects(scene, include_animated):
        if obj.normals is None:
            parts.append(np.zeros((obj.n_triangles, 3, 3)))
            continue
        m = np.asarray(obj.transform, np.float64)[:3, :3]
        try:
            world = obj.normals.astype(np.float64) @ np.linalg.inv(m)  # (M⁻ᵀ n)ᵀ
        except np.linalg.LinAlgError:
            parts.append(np.zeros((obj.n_triangles, 3, 3)))
            continue
        parts.append(world[obj.triangles])
    corners = np.concatenate(parts) if parts else np.zeros((0, 3, 3))
    if corners.shape[0] != triangles.count:  # pragma: no cover - scene_triangles changed its filter
        log.warning("vertex normals do not line up with the traced triangles; using face normals")
        corners = np.zeros((triangles.count, 3, 3))
    length = np.linalg.norm(corners, axis=2, keepdims=True)
    good = np.isfinite(length) & (length > 1e-12)
    corners = np.where(good, corners / np.where(good, length, 1.0), face[:, None, :])
    side = np.einsum("tcj,tj->t", corners, face)
    corners[side < 0] *= -1.0  # mirrored objects, normals pointing against the winding
    return corners


def _prepare(scene: Scene, triangles: SceneTriangles) -> tuple[BakeInputs, SimpleNamespace]:
    from engine.bake.integrate import prepare_bake_inputs

    none = np.zeros((0, 3), np.float32)
    inputs = prepare_bake_inputs(scene, SimpleNamespace(origin=none, normal=none, face_normal=none),  # type: ignore[arg-type]
                                 triangles=triangles)
    mats = scene.materials
    texture_of: dict[int, int] = {}
    mips: list[list[np.ndarray]] = []
    mat_tex = np.full(len(mats), -1, np.int32)
    for i, m in enumerate(mats):
        tex = m.base_color_texture
        if tex is None:
            continue
        if id(tex) not in texture_of:
            texture_of[id(tex)] = len(mips)
            mips.append(_texture_rgba(tex))
        mat_tex[i] = texture_of[id(tex)]
    mode = np.array([{"MASK": _ALPHA_MASK, "BLEND": _ALPHA_BLEND}.get(m.alpha_mode, _ALPHA_OPAQUE) for m in mats],
                    np.int8)
    return inputs, SimpleNamespace(
        mips=mips, tex=mat_tex, mode=mode,
        base=np.array([m.base_color[3] for m in mats], np.float64),
        cutoff=np.array([m.alpha_cutoff for m in mats], np.float64),
    )


def _surfaces(scene: Scene, triangles: SceneTriangles, include_animated: bool) -> _Surfaces:
    inputs, materials = _prepare(scene, triangles)
    corners = triangles.corners
    front = _front_normals(scene, inputs.normal, include_animated)
    material = triangles.material
    world_area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    uv = triangles.uv0.astype(np.float64)
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    uv_area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    density = np.sqrt(np.divide(uv_area, world_area, out=np.zeros_like(uv_area), where=world_area > 0))
    points = corners.reshape(-1, 3)
    diagonal = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0))) if len(points) else 0.0
    normals = _corner_normals(scene, triangles, front.astype(np.float64), include_animated).astype(np.float32)

    def rows(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a)

    return _Surfaces(
        triangles=triangles, inputs=inputs, front=front, v0=rows(corners[:, 0]), e1=rows(corners[:, 1] - corners[:, 0]),
        e2=rows(corners[:, 2] - corners[:, 0]), n0=rows(normals[:, 0]), n1=rows(normals[:, 1]), n2=rows(normals[:, 2]),
        tex_id=materials.tex[material], mips=materials.mips, uv_density=density,
        alpha_mode=materials.mode[material], alpha_base=materials.base[material],
        alpha_cutoff=materials.cutoff[material], diagonal=diagonal,
    )


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def _texture_at(surf: _Surfaces, tri: np.ndarray, u: np.ndarray, v: np.ndarray, footprint: np.ndarray,
                cos: np.ndarray) -> np.ndarray:
    """Texture RGBA (N, 4) float32 at hits (1 where untextured), trilinear between the two mip
    levels that match the hit's footprint (world size of a ray's share of a pixel)."""
    out = np.ones((tri.shape[0], 4), np.float32)
    tex_all = surf.tex_id[tri]
    textured = np.flatnonzero(tex_all >= 0)
    if not textured.size:
        return out
    tri, tex = tri[textured], tex_all[textured]
    u, v = u[textured].astype(np.float64), v[textured].astype(np.float64)
    uv = surf.triangles.uv0[tri].astype(np.float64)
    w0 = 1.0 - u - v
    s = w0 * uv[:, 0, 0] + u * uv[:, 1, 0] + v * uv[:, 2, 0]
    t = w0 * uv[:, 0, 1] + u * uv[:, 1, 1] + v * uv[:, 2, 1]
    stretch = footprint[textured] / np.maximum(np.abs(cos[textured]), GRAZING_COS)
    for k in np.unique(tex):
        levels = surf.mips[int(k)]
        pick = np.flatnonzero(tex == k)
        h, w = levels[0].shape[:2]
        texels = stretch[pick] * surf.uv_density[tri[pick]] * math.sqrt(w * h)
        lod = np.clip(np.log2(np.maximum(texels, 1e-30)), 0.0, len(levels) - 1)
        base = np.floor(lod).astype(np.int64)
        frac = (lod - base)[:, None]
        for level in np.unique(base):
            chosen = base == level
            at = pick[chosen]
            value = _bilinear(levels[level], s[at], t[at])
            if level + 1 < len(levels):
                f = frac[chosen]
                value = (1.0 - f) * value + f * _bilinear(levels[level + 1], s[at], t[at])
            out[textured[at]] = value
    return out


def _visible_hits(surf: _Surfaces, rays: SimpleNamespace, gpu_bvh: BVH | CudaBVH, device: str, seed: int,
                  ray_index: np.ndarray, backfaces: str) -> tuple[np.ndarray, ...]:
    """Closest hits that stop the ray: alpha-cut holes (and culled back faces) are passed
    through by tracing on from just beyond them. Returns (tri, t, u, v, rays traced)."""
    from engine.bake.integrate import FLAG_DOUBLE_SIDED
    from engine.bake.kernels import random_uniform_cpu, trace_closest

    n = rays.origin.shape[0]
    tri = np.full(n, -1, np.int32)
    dist = np.full(n, np.inf, np.float32)
    bu = np.zeros(n, np.float32)
    bv = np.zeros(n, np.float32)
    active = np.arange(n)
    tmin = np.zeros(n, np.float32)
    traced = 0
    cut = surf.alpha_mode != _ALPHA_OPAQUE
    may_pass = bool(cut.any()) or backfaces == "cull"
    eps = surf.inputs.epsilon
    for layer in range(MAX_LAYERS):
        t, k, u, v = trace_closest(rays.origin[active], rays.direction[active], np.inf, gpu_bvh, tmin[active],
                                   device=device)
        traced += active.size
        hit = k >= 0
        through = np.zeros(active.size, bool)
        if may_pass and hit.any():
            h = np.flatnonzero(hit)
            kh = k[h]
            if backfaces == "cull":
                normal = surf.front[kh]
                back = np.einsum("ij,ij->i", normal, rays.direction[active[h]]) > 0
                single = (surf.inputs.flags[kh] & FLAG_DOUBLE_SIDED) == 0
                through[h[back & single]] = True
            tested = np.flatnonzero(cut[kh] & ~through[h])
            if tested.size:
                g = h[tested]
                kg = k[g]
                cos = _dot(surf.front[kg], rays.direction[active[g]])
                rgba = _texture_at(surf, kg, u[g], v[g], t[g] * rays.spread[active[g]], cos)
                alpha = surf.alpha_base[kg] * rgba[:, 3]
                mask = surf.alpha_mode[kg] == _ALPHA_MASK
                coin = random_uniform_cpu(seed, ray_index[active[g]], layer + 1, 2)
                hole = np.where(mask, alpha < surf.alpha_cutoff[kg], coin >= alpha)
                through[g[hole]] = True
        stop = ~through
        done = active[stop]
        tri[done], dist[done], bu[done], bv[done] = k[stop], t[stop], u[stop], v[stop]
        if not through.any():
            break
        passed = active[through]
        tmin[passed] = t[through] + np.maximum(np.float32(eps), t[through] * np.float32(1e-5))
        active = passed
    else:
        log.debug("%d rays passed %d alpha-cut layers and count as misses", active.size, MAX_LAYERS)
    return tri, dist, bu, bv, traced


def _shade_points(surf: _Surfaces, rays: SimpleNamespace, tri: np.ndarray, t: np.ndarray, u: np.ndarray,
                  v: np.ndarray) -> SimpleNamespace:
    """Attributes of the hits ``tri >= 0``: integrator origin, normals, albedo, emission, black."""
    from engine.bake.integrate import FLAG_DOUBLE_SIDED
    from engine.bake.texels import OFFSET_SCENE, OFFSET_TEXEL

    inputs = surf.inputs
    u64, v64 = u.astype(np.float64)[:, None], v.astype(np.float64)[:, None]
    position = surf.v0[tri] + u64 * surf.e1[tri] + v64 * surf.e2[tri]
    face = surf.front[tri]  # float32, a copy
    cos = -_dot(face, rays.direction)
    back = cos < 0
    black = back & ((inputs.flags[tri] & FLAG_DOUBLE_SIDED) == 0)  # the back of a single-sided surface
    sign = np.where(back, np.float32(-1.0), np.float32(1.0))[:, None]
    face *= sign
    u32, v32 = u[:, None], v[:, None]
    shading = ((1.0 - u32 - v32) * surf.n0[tri] + u32 * surf.n1[tri] + v32 * surf.n2[tri]) * sign
    length = np.sqrt(_dot(shading, shading))
    usable = (length > 1e-6) & (_dot(shading, face) > 0.0)  # else the face normal
    shading = np.where(usable[:, None], shading / np.maximum(length, 1e-12)[:, None], face)
    footprint = t.astype(np.float64) * rays.spread
    albedo = inputs.albedo[tri] * _texture_at(surf, tri, u, v, footprint, cos)[:, :3]
    emission = inputs.emission[tri]
    albedo[black] = 0.0  # absorbs, emits nothing
    emission[black] = 0.0
    offset = np.maximum(OFFSET_SCENE * surf.diagonal, OFFSET_TEXEL * footprint)
    return SimpleNamespace(origin=position + face * offset[:, None], normal=shading, face_normal=face,
                           albedo=albedo, emission=emission)


# ---------------------------------------------------------------------------------------------
# The renderer


def _chunk_seed(seed: int, first_row: int) -> int:
    """The integrator's seed for the chunk that starts at global row ``first_row``."""
    x = (seed * 0x9E3779B1 + (first_row + 1) * 0x85EBCA77) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    return int(x ^ (x >> 15))


def render_views(
    scene: Scene,
    viewmats: Any,
    Ks: Any,  # noqa: N803  (gsplat's name)
    width: int,
    height: int,
    *,
    samples: int = 16,
    bounces: int = 2,
    aa: int = 4,
    seed: int = 0,
    device: str = "auto",
    backfaces: str = "black",
    include_animated: bool = False,
    progress: Progress = no_progress,
    bvh: BVH | CudaBVH | None = None,
) -> RenderResult:
    """Path-trace ``scene`` from C OpenCV cameras (see the module docstring).

    ``viewmats`` (C, 4, 4) world-to-camera, ``Ks`` (C, 3, 3), images ``width`` × ``height``;
    ``aa`` primary rays per pixel, ``samples`` lighting samples per primary ray, ``bounces``
    diffuse bounces after the visible point; ``device`` "auto", "cpu" or "cuda" (see
    :func:`engine.bake.kernels.select_device`); ``bvh`` (optional) built over
    ``scene_triangles(scene, include_animated=...)``'s corners, a host BVH or one already on
    the GPU. Raises :class:`~engine.errors.ConfigError` for bad arguments and
    :class:`~engine.errors.InputError` when there is nothing to see.
    """
    started = time.perf_counter()
    viewmats, Ks, width, height = _check_cameras(viewmats, Ks, width, height)  # noqa: N806
    _check_settings(samples, bounces, aa, seed, device, backfaces)
    samples, bounces, aa, seed = int(samples), int(bounces), int(aa), int(seed)

    from engine.bake.bvh import build_bvh
    from engine.bake.integrate import IntegrateSettings, integrate, scene_triangles
    from engine.bake.kernels import CudaBVH, explain_device

    where = scene.source or f"scene '{scene.name}'"
    triangles = scene_triangles(scene, include_animated=include_animated)
    if triangles.count == 0:
        raise InputError("the scene has no visible triangles to render" + ("" if include_animated else
                         " (animated objects are left out)"), where=where,
                         hint="make an object visible, or pass include_animated=True for moving ones")
    resolved, why = explain_device(device)
    log.info("render device: %s (%s)", resolved, why)
    progress("render", 0.0, f"{len(viewmats)} views of {width}×{height} on {resolved}")
    if bvh is None:
        host_bvh = build_bvh(np.asarray(triangles.corners, np.float32))
        trace_bvh: BVH | CudaBVH = host_bvh
    else:
        host_bvh = bvh.bvh if isinstance(bvh, CudaBVH) else bvh
        if host_bvh.n_input != triangles.count:
            raise ConfigError(f"bvh was built over {host_bvh.n_input} triangles but the scene has {triangles.count}",
                              where="render_views: bvh", hint="build it from scene_triangles(scene).corners")
        trace_bvh = bvh
    if host_bvh.n_triangles == 0:
        raise InputError("every triangle of the scene is degenerate: nothing to render", where=where)
    if resolved == "cuda" and not isinstance(trace_bvh, CudaBVH):
        trace_bvh = CudaBVH(host_bvh)  # uploaded once for every trace and integrate call
    if not scene.lights and not any(m.is_emissive for m in scene.materials) and max(scene.environment) <= 0:
        log.warning("%s has no lights, no emission and a black environment: the views will be black", where)
    surf = _surfaces(scene, triangles, include_animated)

    n_views = len(viewmats)
    total_rows = n_views * height
    rows_per_chunk = max(1, CHUNK_RAYS // (width * aa))
    n_chunks = -(-total_rows // rows_per_chunk)
    rgba = np.zeros((total_rows, width, 4), np.float32)
    depth = np.full((total_rows, width), np.inf, np.float32)
    traced = paths = 0
    for chunk in range(n_chunks):
        r0 = chunk * rows_per_chunk
        rows = np.arange(r0, min(total_rows, r0 + rows_per_chunk))
        rays = _pixel_rays(viewmats, Ks, width, rows, height, aa, seed)
        n_rays = rays.origin.shape[0]
        ray_index = (r0 * width * aa + np.arange(n_rays)).astype(np.int64)
        tri, t, u, v, count = _visible_hits(surf, rays, trace_bvh, resolved, seed, ray_index, backfaces)
        traced += count
        hit = np.flatnonzero(tri >= 0)
        radiance = np.zeros((n_rays, 3))
        if hit.size:
            sub = SimpleNamespace(direction=rays.direction[hit], spread=rays.spread[hit])
            points = _shade_points(surf, sub, tri[hit], t[hit], u[hit], v[hit])
            radiance[hit] = points.emission
            lit = np.flatnonzero(points.albedo.max(axis=1) > 0)
            if lit.size:
                inputs = dataclasses.replace(
                    surf.inputs,
                    texel_origin=np.ascontiguousarray(points.origin[lit], np.float32),
                    texel_normal=np.ascontiguousarray(points.normal[lit], np.float32),
                    texel_face_normal=np.ascontiguousarray(points.face_normal[lit], np.float32),
                )

                def report(stage: str, fraction: float, message: str, chunk: int = chunk) -> None:
                    progress("render", (chunk + fraction) / n_chunks, f"chunk {chunk + 1}/{n_chunks}: {message}")

                settings = IntegrateSettings(samples=samples, bounces=bounces, seed=_chunk_seed(seed, r0),
                                             device=resolved)
                lighting = integrate(inputs, trace_bvh, settings, progress=report).lighting
                radiance[hit[lit]] += points.albedo[lit] * lighting
                paths += lit.size * samples
        shape = (len(rows), width, aa)
        covered = (tri >= 0).reshape(shape)
        rgba[rows, :, :3] = radiance.reshape(*shape, 3).sum(axis=2) / aa
        rgba[rows, :, 3] = covered.sum(axis=2) / aa
        z = np.where(tri >= 0, t * rays.zscale, 0.0).reshape(shape).sum(axis=2)
        hits_per_pixel = covered.sum(axis=2)
        depth[rows] = np.where(hits_per_pixel > 0, z / np.maximum(hits_per_pixel, 1), np.inf)
        progress("render", (chunk + 1) / n_chunks, f"chunk {chunk + 1}/{n_chunks} done")

    rgba = rgba.reshape(n_views, height, width, 4)
    depth = depth.reshape(n_views, height, width)
    coverage = rgba[..., 3].reshape(n_views, -1).max(axis=1)
    if not coverage.any():
        raise InputError(f"none of the {n_views} cameras sees any of the scene's {triangles.count} triangles",
                         where=where, hint="point the cameras at the scene (viewmats are world-to-camera, "
                         "OpenCV: +Z forward, +Y down)")
    empty = np.flatnonzero(coverage == 0)
    if empty.size:
        log.warning("%d of %d views see nothing (views %s)", empty.size, n_views, empty[:10].tolist())
    seconds = time.perf_counter() - started
    log.info("rendered %d views of %d×%d (%d rays/pixel, %d samples/ray) on %s in %.2f s",
             n_views, width, height, aa, samples, resolved, seconds)
    return RenderResult(rgba=rgba, depth=depth, seconds=seconds, device=resolved, samples=samples, aa=aa,
                        rays=int(traced), paths=int(paths))
