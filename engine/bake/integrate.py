"""Lightmap integrator: diffuse lighting (irradiance / π) and ambient occlusion per texel.

What a texel gets
    ``lighting`` (N, 3) float32 is E/π, with E the irradiance (W/m²) arriving at the texel's
    side of the surface from every light, emissive surface and the environment, directly and
    after up to ``bounces`` diffuse reflections. Multiplying it by a surface's albedo gives the
    diffuse radiance it reflects, so it is the same quantity as Cycles' DIFFUSE bake with Direct
    and Indirect on and Color off. An open plane under a constant environment of radiance L gets
    lighting L; under a sun of E W/m² at normal incidence it gets E/π. A texel's own emission
    is not in it (the material adds that when rendering).
    ``ao`` (N,) float32, when ``ao_distance`` > 0, is the fraction of cosine-weighted rays that
    travel ``ao_distance`` (scene units) without hitting anything, back faces included (1 = open,
    0 = enclosed); it reuses each sample's first bounce ray.

Lights (Blender/Cycles 4.x conventions; P in watts, colour multiplies)
    * point light of P W and radius r: a sphere of radiance P/(4π·πr²), i.e. intensity
      I = P/(4π) W/sr as seen from afar: E = I·cosθ/d². r > 0 gives soft shadows (the sphere's
      cone of directions is sampled uniformly); r = 0 is a true point.
    * spot light: a point light of the same I (Blender does not renormalise the power to the
      cone), times smoothstep((cos α − cos(size/2)) / ((1 − cos(size/2))·blend)), α the angle off
      the spot's axis (Cycles 4.x ``spot_attenuation``; blend 0 gives a hard edge).
    * sun of strength S W/m²: irradiance E = S on a surface facing it; ``angle`` (angular
      diameter) > 0 spreads it uniformly over a cone of directions (soft shadows).
    * area light of P W and area A (square, rectangle, disk, ellipse; the transform's scale
      counts): one-sided Lambertian emitter of radiance L = P/(π·A) towards its local −Z.
    Lights are not geometry: rays never hit them, only next-event estimation (NEE) sees them,
    so nothing is counted twice. Every light is sampled once at every path vertex.

Emissive triangles
    A material's ``emission`` is radiance (Cycles' emission strength). Emissive triangles are
    sampled by NEE (a triangle picked by emitted power, a uniform point on it) and also found
    by the cosine-sampled bounce rays; the two are combined with multiple importance sampling
    (power heuristic), so each path counts each emitter once in expectation.

Faces
    A texel is one-sided: it gathers light over the hemisphere of its (interpolated) normal and
    its rays start at ``Texels.origin``. A cosine-sampled direction that points below the
    geometric face is mirrored back above it. A ray that hits the back of a triangle whose
    material is ``double_sided`` sees that side as a surface like the front (flipped normal,
    same albedo, emission from both sides); the back of a single-sided material is black: it
    absorbs the path and emits nothing (like Unity's backface handling, and why a one-sided
    wall seen from behind does not leak light).

Materials
    Bounce albedo = base colour (× its texture, sRGB decoded, sampled bilinearly with repeat at
    the hit's UV0) × (1 − metallic) + base colour × metallic × roughness / 2 (Unity's meta-pass
    approximation of what a metal sends back diffusely), clamped to [0, 1]. Alpha and
    transmission are ignored (surfaces are opaque).

Estimator
    Per sample: NEE at the texel (each light once, one emissive-triangle sample), then a
    cosine-weighted path: emission found (MIS-weighted), environment on escape (radiance
    ``Scene.environment``), and at each diffuse hit NEE again with throughput × albedo, up to
    ``bounces`` reflections, Russian roulette after ``rr_start`` of them (survival probability
    = the throughput's largest channel, at most 0.95).

Sampling
    With ``sampler="sobol"`` (the default) the texel's own vertex draws its 2D samples from
    the tracer's Owen-scrambled Sobol' points ``sobol_2d(seed, texel, sample, pair)``: pair
    ``PAIR_LIGHT + k`` the point on (or direction to) light k, ``PAIR_EMITTER`` the emissive
    triangle NEE, ``PAIR_BOUNCE`` the first bounce direction (and so the AO ray). The
    emitter's pick and point share one 2D point: its first coordinate (all 32 bits) picks the
    triangle through the CDF, and its position inside the picked triangle's CDF interval,
    rescaled to [0, 1) (uniform and independent of the second coordinate), is the point's
    first coordinate; so the pair's stratification spreads over the emitters' union instead
    of being cut up by an independent pick. Each texel's samples 0..2^k−1 of a pair are then
    stratified in every elementary interval, which cuts the noise of direct light (soft
    shadows, area lights, emitters) and of the first bounce many times at equal samples (the
    integrand, not the estimator, changes; it stays unbiased). Deeper vertices (NEE at bounce
    hits, Russian roulette, later directions) draw from the counter-based
    ``random_uniform(seed, texel, sample, dimension)`` with a fixed number of dimensions per
    step; with ``sampler="random"`` every draw does (independent samples, for comparisons).
    Samples are numbered globally (a pass of samples [s0, s1) uses those numbers), so a fixed
    seed gives the same result on every run, thread count and pass split, and CPU and CUDA
    draw the same samples (results agree up to float rounding: the shading math is float64,
    the tracer float32, CUDA uses fast math). Power-of-two sample counts get the full
    stratification; others are still uniform and lower in noise.

The same Python functions are compiled by ``numba.njit`` (CPU, ``prange`` over texels, cached
on disk) and ``numba.cuda.jit(device=True)`` (one thread per texel); numba is imported lazily.

Use::

    triangles = scene_triangles(scene)
    bvh = build_bvh(triangles.corners.astype(np.float32))
    inputs = prepare_bake_inputs(scene, texels, triangles=triangles)
    result = integrate(inputs, bvh, IntegrateSettings(samples=64, bounces=3))

or :func:`bake_lighting` for all four steps.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import ConfigError
from engine.progress import Progress, no_progress

if TYPE_CHECKING:
    from engine.bake.bvh import BVH
    from engine.bake.kernels import CudaBVH
    from engine.bake.texels import Texels
    from engine.scene.model import Light, Material, Scene

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
SAMPLERS = ("sobol", "random")

# Owen-scrambled Sobol' dimension pairs (``sobol_2d``'s ``pair``) of a sample's first vertex.
PAIR_BOUNCE = 0  # the first bounce direction (and the AO ray)
PAIR_EMITTER = 1  # the emissive-triangle pick and the point on it
PAIR_LIGHT = 2  # light k uses pair PAIR_LIGHT + k

# Light table: one float64 row per light, these columns.
LIGHT_POINT, LIGHT_SPOT, LIGHT_SUN, LIGHT_RECT, LIGHT_DISK = 0, 1, 2, 3, 4
C_KIND = 0  # one of LIGHT_*
C_POS = 1  # 1..3 position (world)
C_DIR = 4  # 4..6 unit direction the light points along (its local −Z)
C_U = 7  # 7..9 area: half-extent vector along local X (world, scale included)
C_V = 10  # 10..12 area: half-extent vector along local Y
C_RGB = 13  # 13..15 colour × (I W/sr: point, spot | E W/m²: sun | L W/(m²·sr): area)
C_RADIUS = 16  # point/spot sphere radius
C_COS = 17  # spot: cos(spot_size / 2); sun: 1 − cos(angle / 2)
C_SMOOTH = 18  # spot: 1 / ((1 − cos(size/2))·blend), 0 = hard edge
C_AREA = 19  # area light: A
LIGHT_COLUMNS = 20

#: Triangle flag bits.
FLAG_DOUBLE_SIDED = 1
#: Largest texture side kept for bounce albedo lookups (bigger ones are box-filtered down).
TEXTURE_MAX_SIZE = 256
#: Distance standing for "no limit" in shadow rays towards the sun.
FAR = 1e30


@dataclass(frozen=True)
class IntegrateSettings:
    """How to integrate.

    ``samples`` per texel (with ``time_budget_s``: the most it may reach), ``bounces`` diffuse
    reflections after the texel (0 = direct light only), Russian roulette from bounce
    ``rr_start`` on, ``ao_distance`` in scene units (0 = no AO), ``seed`` of the counter-based
    random numbers, ``time_budget_s`` (None = run all ``samples``; else passes of
    ``pass_samples`` until the next pass would overrun the budget, at least one pass),
    ``clamp_indirect`` (0 = off: else a sample's indirect part is scaled down so its largest
    channel is at most this, like Cycles' Clamp Indirect), ``device`` "cpu", "cuda" or "auto"
    (CUDA when a real GPU is there, see :func:`engine.bake.kernels.select_device`), ``sampler``
    "sobol" (Owen-scrambled Sobol' points for the texel's own light samples and first bounce,
    see the module docstring) or "random" (independent random numbers everywhere: more noise,
    for comparisons).
    """

    samples: int = 64
    bounces: int = 3
    rr_start: int = 2
    ao_distance: float = 0.0
    seed: int = 0
    time_budget_s: float | None = None
    pass_samples: int = 16
    clamp_indirect: float = 0.0
    device: str = "auto"
    sampler: str = "sobol"

    def __post_init__(self) -> None:
        where = "bake settings"
        for name, low in (("samples", 1), ("bounces", 0), ("rr_start", 0), ("pass_samples", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"{name} must be an integer ≥ {low}, got {value!r}", where=where)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be an integer in [0, 2³²), got {self.seed!r}", where=where)
        for name in ("ao_distance", "clamp_indirect"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a finite number ≥ 0, got {value!r}", where=where)
        budget = self.time_budget_s
        if budget is not None and (not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0):
            raise ConfigError(f"time_budget_s must be a positive number or None, got {budget!r}", where=where)
        if self.device not in DEVICES:
            raise ConfigError(f"device is {self.device!r}, expected one of {', '.join(DEVICES)}", where=where)
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler is {self.sampler!r}, expected one of {', '.join(SAMPLERS)}", where=where)


@dataclass(frozen=True, eq=False)
class BakeInputs:
    """Everything the integrator reads, flattened into arrays (triangles in :class:`SceneTriangles`
    order, which is what the tracer's hits return).

    Per triangle T: ``albedo`` (T, 3) float32 linear bounce albedo, ``texture`` (T,) int32 index
    into the texture table or −1, ``uv`` (T, 6) float32 UV0 of the three corners (for texture
    lookups), ``normal`` (T, 3) float32 unit geometric normal (from the winding), ``emission``
    (T, 3) float32 radiance, ``emit_pdf`` (T,) float64 probability of NEE picking the triangle
    divided by its area (0 for non-emitters), ``flags`` (T,) int32 (bit 0: double-sided).
    Emitters E: ``emit_cdf`` (E,) float64 cumulative pick probability (ends at 1),
    ``emit_triangle`` (E,) int32, ``emit_vertices`` (E, 9) float64 world corners.
    Textures: ``texture_data`` float32 flat linear RGB, ``texture_info`` (K, 3) int32 (offset,
    width, height). ``lights`` (L, 20) float64 (columns ``C_*``), ``environment`` (3,) float32
    radiance. Texels N: ``origin``, ``normal``, ``face_normal`` (N, 3) float32. ``epsilon``:
    ray offset at bounce hits, scene units.
    """

    albedo: np.ndarray
    texture: np.ndarray
    uv: np.ndarray
    normal: np.ndarray
    emission: np.ndarray
    emit_pdf: np.ndarray
    flags: np.ndarray
    emit_cdf: np.ndarray
    emit_triangle: np.ndarray
    emit_vertices: np.ndarray
    texture_data: np.ndarray
    texture_info: np.ndarray
    lights: np.ndarray
    environment: np.ndarray
    texel_origin: np.ndarray
    texel_normal: np.ndarray
    texel_face_normal: np.ndarray
    epsilon: float

    @property
    def texel_count(self) -> int:
        return int(self.texel_origin.shape[0])


@dataclass(frozen=True, eq=False)
class IntegrateResult:
    """Per-texel ``lighting`` (N, 3) float32 (E/π) and ``ao`` (N,) float32 or None, with how it went."""

    lighting: np.ndarray
    ao: np.ndarray | None
    samples: int
    passes: int
    seconds: float
    device: str


# ---------------------------------------------------------------------------------------------
# Host side: scene → arrays


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] to linear (IEC 61966-2-1)."""
    v = np.asarray(values, dtype=np.float32)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _texture_rgb(texture: Any, max_size: int = TEXTURE_MAX_SIZE) -> np.ndarray:
    """A texture as linear float32 (H, W, 3), box-filtered down to at most ``max_size`` a side."""
    pixels = texture.pixels
    rgb = pixels.astype(np.float32) / 255.0 if pixels.dtype == np.uint8 else pixels.astype(np.float32)
    channels = rgb.shape[2]
    rgb = rgb[:, :, :1].repeat(3, axis=2) if channels <= 2 else rgb[:, :, :3]
    if texture.colorspace == "srgb":
        rgb = srgb_to_linear(np.clip(rgb, 0.0, 1.0))
    while max(rgb.shape[:2]) > max_size:
        h, w = rgb.shape[:2]
        fy, fx = (2 if h > max_size else 1), (2 if w > max_size else 1)
        h2, w2 = h // fy * fy, w // fx * fx
        rgb = rgb[:h2, :w2].reshape(h2 // fy, fy, w2 // fx, fx, 3).mean(axis=(1, 3))
    return np.ascontiguousarray(rgb, dtype=np.float32)


def bounce_albedo(material: Material) -> tuple[float, float, float]:
    """The diffuse albedo a bounce ray sees (without the texture): see the module docstring."""
    base = np.asarray(material.base_color[:3], np.float64)
    albedo = base * (1.0 - material.metallic) + base * material.metallic * 0.5 * material.roughness
    return tuple(float(v) for v in np.clip(albedo, 0.0, 1.0))  # type: ignore[return-value]


def light_row(light: Light) -> np.ndarray:
    """One light as a row of the light table (see the module docstring for the units)."""
    row = np.zeros(LIGHT_COLUMNS, np.float64)
    m = np.asarray(light.transform, np.float64)
    row[C_POS : C_POS + 3] = m[:3, 3]
    row[C_DIR : C_DIR + 3] = light.direction
    color = np.asarray(light.color, np.float64)
    if light.kind in ("point", "spot"):
        row[C_KIND] = LIGHT_POINT if light.kind == "point" else LIGHT_SPOT
        row[C_RGB : C_RGB + 3] = color * light.power / (4.0 * math.pi)
        row[C_RADIUS] = light.size
        if light.kind == "spot":
            cos_half = math.cos(0.5 * light.spot_size)
            row[C_COS] = cos_half
            width = (1.0 - cos_half) * light.spot_blend
            row[C_SMOOTH] = 1.0 / width if width > 0.0 else 0.0
    elif light.kind == "sun":
        row[C_KIND] = LIGHT_SUN
        row[C_RGB : C_RGB + 3] = color * light.power
        half = 0.5 * light.angle
        row[C_COS] = 2.0 * math.sin(0.5 * half) ** 2  # 1 − cos(half), without cancellation
    else:
        disk = light.shape in ("disk", "ellipse")
        row[C_KIND] = LIGHT_DISK if disk else LIGHT_RECT
        sx = light.size
        sy = light.size_y if light.shape in ("rectangle", "ellipse") else light.size
        row[C_U : C_U + 3] = m[:3, 0] * (0.5 * sx)
        row[C_V : C_V + 3] = m[:3, 1] * (0.5 * sy)
        area = light.area
        row[C_AREA] = area
        row[C_RGB : C_RGB + 3] = color * light.power / (math.pi * area) if area > 0 else 0.0
    return row


def light_table(lights: Any) -> np.ndarray:
    """(L, LIGHT_COLUMNS) float64: the lights that give any light (power and colour above 0)."""
    rows = [light_row(light) for light in lights if light.power > 0 and max(light.color) > 0]
    if not rows:
        return np.zeros((0, LIGHT_COLUMNS), np.float64)
    return np.ascontiguousarray(np.stack(rows), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class SceneTriangles:
    """The triangles the bake traces, in one order shared by the BVH and :class:`BakeInputs`.

    ``corners`` (T, 3, 3) float64 world space, ``material`` (T,) int32 index into
    ``Scene.materials``, ``uv0`` (T, 3, 2) float32 the corners' texture UVs (the object's first
    UV set other than its lightmap UV; zeros when it has none), ``object_index`` (T,) int32 into
    ``Scene.objects``.
    """

    corners: np.ndarray
    material: np.ndarray
    uv0: np.ndarray
    object_index: np.ndarray

    @property
    def count(self) -> int:
        return int(self.corners.shape[0])


def scene_triangles(scene: Scene, *, include_animated: bool = False) -> SceneTriangles:
    """Every triangle of the visible objects, in scene order: what the bake traces.

    Corners are in world space with the front side counter-clockwise: the triangles of objects
    whose transform mirrors (negative determinant) get corners 1 and 2 swapped.

    Animated objects are left out unless ``include_animated`` (like a game engine's static
    lighting: what moves must not cast baked shadows or bounce baked light).
    """
    corners, materials, uvs, owners = [], [], [], []
    for index, obj in enumerate(scene.objects):
        if not obj.visible or obj.n_triangles == 0 or (obj.animated and not include_animated):
            continue
        m = np.asarray(obj.transform, np.float64)
        world = obj.positions.astype(np.float64) @ m[:3, :3].T + m[:3, 3]
        # a mirroring transform turns the winding over (glTF's rule): swap two corners so the
        # winding in world space, from which the integrator takes the front side, stays right
        order = obj.triangles[:, [0, 2, 1]] if np.linalg.det(m[:3, :3]) < 0 else obj.triangles
        corners.append(world[order])
        materials.append(obj.material_indices)
        names = [name for name in obj.uvs if name != obj.lightmap_uv] or list(obj.uvs)
        uv0 = obj.uvs[names[0]] if names else None  # the first UV set that is not the lightmap's
        uvs.append(uv0[order] if uv0 is not None else np.zeros((obj.n_triangles, 3, 2), np.float32))
        owners.append(np.full(obj.n_triangles, index, np.int32))
    if not corners:
        return SceneTriangles(np.zeros((0, 3, 3)), np.zeros(0, np.int32), np.zeros((0, 3, 2), np.float32),
                              np.zeros(0, np.int32))
    return SceneTriangles(
        corners=np.ascontiguousarray(np.concatenate(corners), np.float64),
        material=np.ascontiguousarray(np.concatenate(materials), np.int32),
        uv0=np.ascontiguousarray(np.concatenate(uvs), np.float32),
        object_index=np.concatenate(owners),
    )


def prepare_bake_inputs(scene: Scene, texels: Texels, *, triangles: SceneTriangles | None = None) -> BakeInputs:
    """Flatten ``scene`` (materials, lights, environment) and ``texels`` into :class:`BakeInputs`.

    ``triangles`` (default :func:`scene_triangles`) must be the ones the BVH was built from,
    in the same order: the tracer's hits return indices into them.
    """
    triangles = triangles or scene_triangles(scene)
    corners = triangles.corners
    material_index = triangles.material
    uv0 = triangles.uv0
    n_tri = triangles.count

    # Per material.
    mats = scene.materials
    mat_albedo = np.array([bounce_albedo(m) for m in mats], np.float32).reshape(-1, 3)
    mat_emission = np.array([m.emission for m in mats], np.float32).reshape(-1, 3)
    mat_flags = np.array([FLAG_DOUBLE_SIDED if m.double_sided else 0 for m in mats], np.int32)
    texture_ids: dict[int, int] = {}
    chunks: list[np.ndarray] = []
    info: list[tuple[int, int, int]] = []
    offset = 0
    mat_texture = np.full(len(mats), -1, np.int32)
    for i, m in enumerate(mats):
        tex = m.base_color_texture
        if tex is None:
            continue
        if id(tex) not in texture_ids:
            rgb = _texture_rgb(tex)
            texture_ids[id(tex)] = len(info)
            info.append((offset, rgb.shape[1], rgb.shape[0]))
            chunks.append(rgb.ravel())
            offset += rgb.size
        mat_texture[i] = texture_ids[id(tex)]

    # Per triangle.
    e1 = corners[:, 1] - corners[:, 0]
    e2 = corners[:, 2] - corners[:, 0]
    cross = np.cross(e1, e2)
    length = np.linalg.norm(cross, axis=1) if n_tri else np.zeros(0)
    area = 0.5 * length
    normal = np.zeros((n_tri, 3), np.float64)
    good = length > 0
    normal[good] = cross[good] / length[good, None]
    normal[~good] = (0.0, 0.0, 1.0)
    emission = mat_emission[material_index] if n_tri else np.zeros((0, 3), np.float32)
    flags = mat_flags[material_index] if n_tri else np.zeros(0, np.int32)
    sides = np.where(flags & FLAG_DOUBLE_SIDED, 2.0, 1.0)
    luminance = emission.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])
    power = luminance * area * sides * math.pi
    emitters = np.flatnonzero(power > 0)
    emit_pdf = np.zeros(n_tri, np.float64)
    if emitters.size:
        weights = power[emitters] / power[emitters].sum()
        cdf = np.cumsum(weights)
        cdf[-1] = 1.0
        emit_pdf[emitters] = weights / area[emitters]
    else:
        cdf = np.zeros(0, np.float64)

    # Scene scale for ray offsets at bounce hits.
    if n_tri:
        extent = float(np.max(corners.reshape(-1, 3).max(axis=0) - corners.reshape(-1, 3).min(axis=0)))
        magnitude = float(np.abs(corners).max())
    else:
        extent = magnitude = 1.0
    epsilon = max(1e-5 * extent, 1e-6 * magnitude, 1e-7)

    def f32(a: Any, shape: tuple[int, ...]) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(a, np.float32).reshape(shape))

    return BakeInputs(
        albedo=f32(mat_albedo[material_index] if n_tri else np.zeros((0, 3)), (n_tri, 3)),
        texture=np.ascontiguousarray(mat_texture[material_index] if n_tri else np.zeros(0), np.int32),
        uv=f32(uv0, (n_tri, 6)),
        normal=f32(normal, (n_tri, 3)),
        emission=f32(emission, (n_tri, 3)),
        emit_pdf=np.ascontiguousarray(emit_pdf),
        flags=np.ascontiguousarray(flags, np.int32),
        emit_cdf=np.ascontiguousarray(cdf, np.float64),
        emit_triangle=np.ascontiguousarray(emitters, np.int32),
        emit_vertices=np.ascontiguousarray(corners[emitters].reshape(-1, 9), np.float64),
        texture_data=np.ascontiguousarray(np.concatenate(chunks) if chunks else np.zeros(3), np.float32),
        texture_info=np.ascontiguousarray(np.array(info, np.int32).reshape(-1, 3)),
        lights=light_table(scene.lights),
        environment=f32(scene.environment, (3,)),
        texel_origin=f32(texels.origin, (-1, 3)),
        texel_normal=f32(texels.normal, (-1, 3)),
        texel_face_normal=f32(texels.face_normal, (-1, 3)),
        epsilon=float(epsilon),
    )


# ---------------------------------------------------------------------------------------------
# Device side: written once, compiled per target


def build_integrator(jit: Callable[..., Any], tracer: Any) -> SimpleNamespace:
    """Compile the integrator's device functions with ``jit`` on top of ``tracer``.

    ``tracer`` is what :func:`engine.bake.kernels.build_tracer` returns for the same target;
    ``geo`` below is ``BVH.kernel_arrays()`` (or ``CudaBVH.arrays()``): (nodes, nodes_i, tris,
    tri_index). Returns a namespace whose ``texel_range(geo, i, s0, s1, ...)`` gives texel
    ``i``'s sums over samples [s0, s1): (r, g, b, unoccluded).
    """
    closest_hit = tracer.closest_hit
    any_hit = tracer.any_hit
    rand = tracer.random_uniform
    sobol_2d = tracer.sobol_2d
    sobol_2d_bits = tracer.sobol_2d_bits
    to_world = tracer.to_world
    sample_cosine = tracer.sample_cosine_hemisphere
    sample_triangle = tracer.sample_triangle
    sample_disk = tracer.sample_disk
    sample_rect = tracer.sample_rect
    inv_pi = 1.0 / math.pi
    two_pi = 2.0 * math.pi
    inv_2_32 = 1.0 / 4294967296.0

    @jit
    def trace(geo, ox, oy, oz, dx, dy, dz, tmax):  # pragma: no cover - compiled
        """Closest hit: (triangle or −1, t, u, v), u and v the barycentrics of corners 1 and 2."""
        nodes, nodes_i, tris, tri_index = geo
        t, tri, u, v = closest_hit(ox, oy, oz, dx, dy, dz, 0.0, tmax, nodes, nodes_i, tris, tri_index)
        return tri, t, u, v

    @jit
    def occluded(geo, ox, oy, oz, dx, dy, dz, tmax):  # pragma: no cover - compiled
        nodes, nodes_i, tris, _ = geo
        return any_hit(ox, oy, oz, dx, dy, dz, 0.0, tmax, nodes, nodes_i, tris)

    @jit
    def cone(nx, ny, nz, one_minus_cos_max, u1, u2):  # pragma: no cover - compiled
        """A direction uniform in the cone around n given 1 − cos(half angle) (exact for tiny
        cones, unlike a float32 cos_max); returns it and its cosine to n."""
        m = u1 * one_minus_cos_max
        c = 1.0 - m
        s = math.sqrt(max(0.0, m * (2.0 - m)))
        phi = two_pi * u2
        dx, dy, dz = to_world(nx, ny, nz, s * math.cos(phi), s * math.sin(phi), c)
        return dx, dy, dz, c

    @jit
    def cosine(nx, ny, nz, u1, u2):  # pragma: no cover - compiled
        """A cosine-weighted direction around n; returns it and its cosine."""
        dx, dy, dz = sample_cosine(nx, ny, nz, u1, u2)
        return dx, dy, dz, max(0.0, dx * nx + dy * ny + dz * nz)

    @jit
    def texture_rgb(data, info, k, s, t):  # pragma: no cover - compiled
        """Bilinear, repeating lookup of texture ``k`` at UV (s, t) (V up)."""
        base = info[k, 0]
        w = info[k, 1]
        h = info[k, 2]
        x = s * w - 0.5
        y = (1.0 - t) * h - 0.5
        fx0 = math.floor(x)
        fy0 = math.floor(y)
        ax = x - fx0
        ay = y - fy0
        x0 = int(fx0) % w
        y0 = int(fy0) % h
        x1 = (x0 + 1) % w
        y1 = (y0 + 1) % h
        r = 0.0
        g = 0.0
        b = 0.0
        for corner in range(4):
            xx = x1 if corner & 1 else x0
            yy = y1 if corner & 2 else y0
            wgt = (ax if corner & 1 else 1.0 - ax) * (ay if corner & 2 else 1.0 - ay)
            at = base + (yy * w + xx) * 3
            r += wgt * data[at]
            g += wgt * data[at + 1]
            b += wgt * data[at + 2]
        return r, g, b

    @jit
    def direct(geo, scene, eps, ox, oy, oz, nx, ny, nz, seed, index, sample, dim, lds):  # pragma: no cover - compiled
        """Irradiance (W/m²) at origin o on the side of n from lights and emitters (NEE); returns it and dim.

        With ``lds`` the 2D samples come from Owen-scrambled Sobol' pairs (no dimension of
        ``rand`` is used), else from ``rand`` dimensions from ``dim`` on."""
        (_, _, _, normal, emission, emit_pdf, flags, emit_cdf, emit_triangle, emit_vertices, _, _, lights) = scene
        er = 0.0
        eg = 0.0
        eb = 0.0
        for k in range(lights.shape[0]):
            kind = int(lights[k, C_KIND])
            if lds:
                u1, u2 = sobol_2d(seed, index, sample, PAIR_LIGHT + k)
            else:
                u1 = rand(seed, index, sample, dim)
                u2 = rand(seed, index, sample, dim + 1)
                dim += 2
            weight = 0.0
            wx = 0.0
            wy = 0.0
            wz = 0.0
            tmax = FAR
            if kind == LIGHT_SUN:
                ax = -lights[k, C_DIR]
                ay = -lights[k, C_DIR + 1]
                az = -lights[k, C_DIR + 2]
                if lights[k, C_COS] > 0.0:
                    wx, wy, wz, _ = cone(ax, ay, az, lights[k, C_COS], u1, u2)
                else:
                    wx, wy, wz = ax, ay, az
                weight = 1.0
            elif kind <= LIGHT_SPOT:  # point or spot
                vx = lights[k, C_POS] - ox
                vy = lights[k, C_POS + 1] - oy
                vz = lights[k, C_POS + 2] - oz
                d2 = vx * vx + vy * vy + vz * vz
                if d2 <= 0.0:
                    continue
                d = math.sqrt(d2)
                cx = vx / d
                cy = vy / d
                cz = vz / d
                atten = 1.0
                if kind == LIGHT_SPOT:
                    ca = -(lights[k, C_DIR] * cx + lights[k, C_DIR + 1] * cy + lights[k, C_DIR + 2] * cz)
                    smooth = lights[k, C_SMOOTH]
                    if smooth > 0.0:
                        x = min(1.0, max(0.0, (ca - lights[k, C_COS]) * smooth))
                        atten = x * x * (3.0 - 2.0 * x)
                    else:
                        atten = 1.0 if ca > lights[k, C_COS] else 0.0
                    if atten <= 0.0:
                        continue
                r = lights[k, C_RADIUS]
                if r > 0.0 and d > r * 1.000001:
                    s2 = r * r / d2
                    cos_max = math.sqrt(1.0 - s2)
                    wx, wy, wz, ca = cone(cx, cy, cz, s2 / (1.0 + cos_max), u1, u2)
                    sin2 = max(0.0, 1.0 - ca * ca)
                    tmax = d * ca - math.sqrt(max(0.0, r * r - d2 * sin2))
                    weight = atten * 2.0 / (d2 * (1.0 + cos_max))  # L·Ω / I of the sphere
                else:
                    wx, wy, wz = cx, cy, cz
                    tmax = d
                    weight = atten / d2
            else:
                if kind == LIGHT_RECT:
                    lx, ly = sample_rect(u1, u2)
                else:
                    lx, ly = sample_disk(u1, u2)
                vx = lights[k, C_POS] + lx * lights[k, C_U] + ly * lights[k, C_V] - ox
                vy = lights[k, C_POS + 1] + lx * lights[k, C_U + 1] + ly * lights[k, C_V + 1] - oy
                vz = lights[k, C_POS + 2] + lx * lights[k, C_U + 2] + ly * lights[k, C_V + 2] - oz
                d2 = vx * vx + vy * vy + vz * vz
                if d2 <= 0.0:
                    continue
                d = math.sqrt(d2)
                wx = vx / d
                wy = vy / d
                wz = vz / d
                cos_l = -(lights[k, C_DIR] * wx + lights[k, C_DIR + 1] * wy + lights[k, C_DIR + 2] * wz)
                if cos_l <= 0.0:
                    continue
                tmax = d
                weight = cos_l * lights[k, C_AREA] / d2
            cos_s = nx * wx + ny * wy + nz * wz
            if cos_s <= 0.0 or weight <= 0.0:
                continue
            if occluded(geo, ox, oy, oz, wx, wy, wz, tmax * (1.0 - 1e-6)):
                continue
            f = weight * cos_s
            er += f * lights[k, C_RGB]
            eg += f * lights[k, C_RGB + 1]
            eb += f * lights[k, C_RGB + 2]

        n_emit = emit_cdf.shape[0]
        if n_emit > 0:
            if lds:  # one 2D point: the pick by its first coordinate (32 bits), whose rest is reused
                xb, yb = sobol_2d_bits(seed, index, sample, PAIR_EMITTER)
                u0 = xb * inv_2_32
                u2 = yb * inv_2_32
            else:
                u0 = rand(seed, index, sample, dim)
                u1 = rand(seed, index, sample, dim + 1)
                u2 = rand(seed, index, sample, dim + 2)
                dim += 3
            lo = 0
            hi = n_emit - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if emit_cdf[mid] <= u0:
                    lo = mid + 1
                else:
                    hi = mid
            if lds:  # u0 is uniform within the picked triangle's CDF interval: rescale it to [0, 1)
                below = emit_cdf[lo - 1] if lo > 0 else 0.0
                u1 = min(max((u0 - below) / (emit_cdf[lo] - below), 0.0), 1.0)
            tri = emit_triangle[lo]
            b1, b2 = sample_triangle(u1, u2)
            b0 = 1.0 - b1 - b2
            vx = b0 * emit_vertices[lo, 0] + b1 * emit_vertices[lo, 3] + b2 * emit_vertices[lo, 6] - ox
            vy = b0 * emit_vertices[lo, 1] + b1 * emit_vertices[lo, 4] + b2 * emit_vertices[lo, 7] - oy
            vz = b0 * emit_vertices[lo, 2] + b1 * emit_vertices[lo, 5] + b2 * emit_vertices[lo, 8] - oz
            d2 = vx * vx + vy * vy + vz * vz
            if d2 > 0.0:
                d = math.sqrt(d2)
                wx = vx / d
                wy = vy / d
                wz = vz / d
                cos_s = nx * wx + ny * wy + nz * wz
                cos_l = -(normal[tri, 0] * wx + normal[tri, 1] * wy + normal[tri, 2] * wz)
                if flags[tri] & FLAG_DOUBLE_SIDED:
                    cos_l = abs(cos_l)
                if cos_s > 0.0 and cos_l > 0.0:
                    pdf_light = emit_pdf[tri] * d2 / cos_l
                    pdf_bsdf = cos_s * inv_pi
                    mis = pdf_light * pdf_light / (pdf_light * pdf_light + pdf_bsdf * pdf_bsdf)
                    tmax = d * (1.0 - 1e-4) - eps
                    if tmax <= 0.0 or not occluded(geo, ox, oy, oz, wx, wy, wz, tmax):
                        f = cos_s * mis / pdf_light
                        er += f * emission[tri, 0]
                        eg += f * emission[tri, 1]
                        eb += f * emission[tri, 2]
        return er, eg, eb, dim

    @jit
    def texel_sample(geo, scene, params, i, s, seed, ox, oy, oz, nx, ny, nz, fx, fy, fz):  # pragma: no cover
        """One sample of texel ``i``: (lighting r, g, b, unoccluded 0/1)."""
        albedo, texture, uv, normal, emission, emit_pdf, flags, _, _, _, texture_data, texture_info, _ = scene
        env_r, env_g, env_b, bounces, rr_start, ao_distance, clamp, eps, lds = params
        er, eg, eb, dim = direct(geo, scene, eps, ox, oy, oz, nx, ny, nz, seed, i, s, 0, lds != 0)
        lr = er * inv_pi
        lg = eg * inv_pi
        lb = eb * inv_pi
        ir = 0.0  # the indirect part (bounce ≥ 1), clamped on its own
        ig = 0.0
        ib = 0.0
        if lds != 0:
            u1, u2 = sobol_2d(seed, i, s, PAIR_BOUNCE)
        else:
            u1 = rand(seed, i, s, dim)
            u2 = rand(seed, i, s, dim + 1)
            dim += 2
        dx, dy, dz, c = cosine(nx, ny, nz, u1, u2)
        below = dx * fx + dy * fy + dz * fz
        if below <= 0.0:  # under the geometric face: mirror it back above
            dx -= 2.0 * below * fx
            dy -= 2.0 * below * fy
            dz -= 2.0 * below * fz
        pdf_prev = c * inv_pi
        open_ray = 1.0
        br = 1.0
        bg = 1.0
        bb = 1.0
        px = ox
        py = oy
        pz = oz
        for depth in range(bounces + 1):
            tri, t, hu, hv = trace(geo, px, py, pz, dx, dy, dz, FAR)
            if depth == 0 and ao_distance > 0.0 and tri >= 0 and t < ao_distance:
                open_ray = 0.0
            if tri < 0:
                if depth == 0:
                    lr += env_r
                    lg += env_g
                    lb += env_b
                else:
                    ir += br * env_r
                    ig += bg * env_g
                    ib += bb * env_b
                break
            gx = normal[tri, 0]
            gy = normal[tri, 1]
            gz = normal[tri, 2]
            cos_h = -(gx * dx + gy * dy + gz * dz)
            if cos_h < 0.0:  # the back of the triangle
                if not flags[tri] & FLAG_DOUBLE_SIDED:
                    break
                gx = -gx
                gy = -gy
                gz = -gz
                cos_h = -cos_h
            if emission[tri, 0] > 0.0 or emission[tri, 1] > 0.0 or emission[tri, 2] > 0.0:
                mis = 1.0
                if emit_pdf[tri] > 0.0 and cos_h > 0.0:
                    pdf_light = emit_pdf[tri] * t * t / cos_h
                    mis = pdf_prev * pdf_prev / (pdf_prev * pdf_prev + pdf_light * pdf_light)
                if depth == 0:
                    lr += mis * emission[tri, 0]
                    lg += mis * emission[tri, 1]
                    lb += mis * emission[tri, 2]
                else:
                    ir += mis * br * emission[tri, 0]
                    ig += mis * bg * emission[tri, 1]
                    ib += mis * bb * emission[tri, 2]
            if depth == bounces:
                break
            ar = albedo[tri, 0]
            ag = albedo[tri, 1]
            ab = albedo[tri, 2]
            k = texture[tri]
            if k >= 0:
                w0 = 1.0 - hu - hv
                ts = w0 * uv[tri, 0] + hu * uv[tri, 2] + hv * uv[tri, 4]
                tt = w0 * uv[tri, 1] + hu * uv[tri, 3] + hv * uv[tri, 5]
                tr, tg, tb = texture_rgb(texture_data, texture_info, k, ts, tt)
                ar *= tr
                ag *= tg
                ab *= tb
            br *= ar
            bg *= ag
            bb *= ab
            peak = max(br, max(bg, bb))
            if peak <= 0.0:
                break
            px = px + t * dx + eps * gx
            py = py + t * dy + eps * gy
            pz = pz + t * dz + eps * gz
            er, eg, eb, dim = direct(geo, scene, eps, px, py, pz, gx, gy, gz, seed, i, s, dim, False)
            ir += br * er * inv_pi
            ig += bg * eg * inv_pi
            ib += bb * eb * inv_pi
            if depth + 1 >= rr_start:
                q = min(0.95, peak)
                if rand(seed, i, s, dim) >= q:
                    break
                br /= q
                bg /= q
                bb /= q
            u1 = rand(seed, i, s, dim + 1)
            u2 = rand(seed, i, s, dim + 2)
            dim += 3
            dx, dy, dz, c = cosine(gx, gy, gz, u1, u2)
            pdf_prev = c * inv_pi
        if clamp > 0.0:
            top = max(ir, max(ig, ib))
            if top > clamp:
                scale = clamp / top
                ir *= scale
                ig *= scale
                ib *= scale
        return lr + ir, lg + ig, lb + ib, open_ray

    @jit
    def texel_range(geo, texels, scene, params, i, s0, s1, seed):  # pragma: no cover - compiled
        """Texel ``i``'s sums over samples [s0, s1): (r, g, b, unoccluded rays)."""
        texel_origin, texel_normal, texel_face = texels
        ox = texel_origin[i, 0]
        oy = texel_origin[i, 1]
        oz = texel_origin[i, 2]
        nx = texel_normal[i, 0]
        ny = texel_normal[i, 1]
        nz = texel_normal[i, 2]
        fx = texel_face[i, 0]
        fy = texel_face[i, 1]
        fz = texel_face[i, 2]
        sr = 0.0
        sg = 0.0
        sb = 0.0
        sa = 0.0
        for s in range(s0, s1):
            r, g, b, a = texel_sample(geo, scene, params, i, s, seed, ox, oy, oz, nx, ny, nz, fx, fy, fz)
            sr += r
            sg += g
            sb += b
            sa += a
        return sr, sg, sb, sa

    return SimpleNamespace(texel_range=texel_range, texel_sample=texel_sample, direct=direct, cosine=cosine,
                           cone=cone, texture_rgb=texture_rgb)


def kernel_tuples(inputs: BakeInputs, settings: IntegrateSettings) -> tuple[tuple[Any, ...], ...]:
    """The kernels' bundled arguments: (texels, scene, params) tuples (see :func:`build_integrator`)."""
    env = inputs.environment
    texels = (inputs.texel_origin, inputs.texel_normal, inputs.texel_face_normal)
    scene = (
        inputs.albedo, inputs.texture, inputs.uv, inputs.normal, inputs.emission, inputs.emit_pdf, inputs.flags,
        inputs.emit_cdf, inputs.emit_triangle, inputs.emit_vertices, inputs.texture_data, inputs.texture_info,
        inputs.lights,
    )
    params = (
        float(env[0]), float(env[1]), float(env[2]), int(settings.bounces), int(settings.rr_start),
        float(settings.ao_distance), float(settings.clamp_indirect), float(inputs.epsilon),
        1 if settings.sampler == "sobol" else 0,
    )
    return texels, scene, params


# ---------------------------------------------------------------------------------------------
# Targets

_cpu_builds = itertools.count()


@functools.cache
def cpu_program() -> SimpleNamespace:
    """The integrator compiled for the CPU: ``run_pass(geo, texels, scene, params, s0, s1, seed, sums)``
    adds each texel's sums over samples [s0, s1) into ``sums`` (N, 4) float64, texels in parallel.

    Cached on disk like the tracer: each dispatcher gets a deterministic UUID so that numba's
    cache key (which pickles the closure's dispatchers) is the same in every process.
    """
    import numba
    from numba import prange

    from engine.bake.kernels import CPU_FASTMATH, cpu_tracer

    prefix = f"engine.bake.integrate.cpu.{next(_cpu_builds)}"

    def cpu_jit(fn: Callable[..., Any]) -> Any:
        dispatcher = numba.njit(fn, cache=True, fastmath=dict(CPU_FASTMATH), error_model="numpy")
        dispatcher._set_uuid(f"{prefix}:{fn.__qualname__}")
        return dispatcher

    ns = build_integrator(cpu_jit, cpu_tracer())
    texel_range = ns.texel_range

    def run_pass(geo, texels, scene, params, s0, s1, seed, sums):  # type: ignore[no-untyped-def] # pragma: no cover
        for i in prange(sums.shape[0]):
            r, g, b, a = texel_range(geo, texels, scene, params, i, s0, s1, seed)
            sums[i, 0] += r
            sums[i, 1] += g
            sums[i, 2] += b
            sums[i, 3] += a

    ns.run_pass = numba.njit(run_pass, parallel=True, cache=True, fastmath=dict(CPU_FASTMATH), error_model="numpy")
    ns.run_pass._set_uuid(f"{prefix}:run_pass")
    return ns


@functools.cache
def cuda_program() -> SimpleNamespace:
    """The integrator compiled for CUDA (one thread per texel), same ``run_pass`` contract as
    :func:`cpu_program`, launched as ``run_pass[blocks, threads](...)`` on device arrays."""
    global _cuda
    from numba import cuda

    from engine.bake.kernels import cuda_tracer

    _cuda = cuda  # a module global, so that numba's CUDA simulator can swap in its fake module
    ns = build_integrator(functools.partial(cuda.jit, device=True, fastmath=True), cuda_tracer())
    texel_range = ns.texel_range

    @cuda.jit(fastmath=True)
    def run_pass(geo, texels, scene, params, s0, s1, seed, sums):  # type: ignore[no-untyped-def] # pragma: no cover
        i = _cuda.grid(1)
        if i < sums.shape[0]:
            r, g, b, a = texel_range(geo, texels, scene, params, i, s0, s1, seed)
            sums[i, 0] += r
            sums[i, 1] += g
            sums[i, 2] += b
            sums[i, 3] += a

    ns.run_pass = run_pass
    return ns


CUDA_THREADS = 64
_cuda: Any = None  # numba.cuda once cuda_program() ran


def _resolve_device(requested: str) -> str:
    from engine.bake.kernels import select_device

    return select_device(requested)


def integrate(
    inputs: BakeInputs,
    bvh: BVH | CudaBVH | tuple[np.ndarray, ...],
    settings: IntegrateSettings | None = None,
    *,
    progress: Progress = no_progress,
) -> IntegrateResult:
    """Integrate every texel of ``inputs`` in the scene traced through ``bvh``.

    ``bvh`` is built over the same triangles as ``inputs`` (:attr:`SceneTriangles.corners`):
    a :class:`~engine.bake.bvh.BVH`, its ``kernel_arrays()``, or a
    :class:`~engine.bake.kernels.CudaBVH` (already uploaded). Runs ``settings.samples``
    samples per texel in passes of ``pass_samples``; with a ``time_budget_s`` it stops before a
    pass that would overrun the budget (which counts the integration only, not the one-off
    compilation), after at least one pass.
    """
    from engine.bake.kernels import STACK_SIZE, CudaBVH

    settings = settings or IntegrateSettings()
    device = _resolve_device(settings.device)
    if isinstance(bvh, tuple):
        host_arrays = bvh
        depth = 0  # plain arrays: the caller checked the depth (BVH.depth())
    else:
        host_bvh = bvh.bvh if isinstance(bvh, CudaBVH) else bvh
        host_arrays = host_bvh.kernel_arrays()
        depth = host_bvh.depth()
    if depth >= STACK_SIZE:
        raise ConfigError(f"BVH depth {depth} reaches the traversal stack size {STACK_SIZE}", where="integrate",
                          hint="rebuild the BVH with a larger leaf_size")
    n = inputs.texel_count
    texels, scene, params = kernel_tuples(inputs, settings)
    seed = int(settings.seed)
    compile_start = time.perf_counter()

    if device == "cuda":
        from numba import cuda

        program = cuda_program()
        if isinstance(bvh, CudaBVH):
            geo = bvh.arrays()
        else:
            geo = tuple(cuda.to_device(a) for a in host_arrays)
        dev_texels = tuple(cuda.to_device(a) for a in texels)
        dev_scene = tuple(cuda.to_device(a) for a in scene)
        sums_dev = cuda.to_device(np.zeros((n, 4), np.float64))
        blocks = max(1, (n + CUDA_THREADS - 1) // CUDA_THREADS)

        def run(s0: int, s1: int) -> None:
            program.run_pass[blocks, CUDA_THREADS](geo, dev_texels, dev_scene, params, s0, s1, seed, sums_dev)
            cuda.synchronize()

        def warm_up() -> None:
            none = cuda.to_device(np.zeros((0, 4), np.float64))
            program.run_pass[1, CUDA_THREADS](geo, dev_texels, dev_scene, params, 0, 0, seed, none)
            cuda.synchronize()
    else:
        program = cpu_program()
        geo = tuple(host_arrays)
        sums = np.zeros((n, 4), np.float64)

        def run(s0: int, s1: int) -> None:
            program.run_pass(geo, texels, scene, params, s0, s1, seed, sums)

        def warm_up() -> None:
            program.run_pass(geo, texels, scene, params, 0, 0, seed, np.zeros((0, 4)))

    warm_up()
    log.debug("integrator ready on %s in %.2f s", device, time.perf_counter() - compile_start)

    start = time.perf_counter()
    target = settings.samples
    step = settings.pass_samples
    done = passes = 0
    per_sample = 0.0
    budget = settings.time_budget_s
    while done < target:
        count = min(step, target - done)
        if budget is not None and passes and time.perf_counter() - start + per_sample * count > budget:
            break
        began = time.perf_counter()
        run(done, done + count)
        per_sample = (time.perf_counter() - began) / count
        done += count
        passes += 1
        fraction = done / target
        if budget is not None:
            fraction = max(fraction, min(1.0, (time.perf_counter() - start) / budget))
        progress("integrate", fraction, f"{done}/{target} samples per texel")
    seconds = time.perf_counter() - start
    if done < target:
        progress("integrate", 1.0, f"{done} samples per texel (time budget of {budget:g} s spent)")
    if device == "cuda":
        sums = sums_dev.copy_to_host()
    mean = sums / max(done, 1)
    lighting = np.ascontiguousarray(mean[:, :3], dtype=np.float32)
    ao = np.ascontiguousarray(mean[:, 3], dtype=np.float32) if settings.ao_distance > 0 else None
    log.info("integrated %d texels × %d samples on %s in %.2f s (%d passes)", n, done, device, seconds, passes)
    return IntegrateResult(lighting=lighting, ao=ao, samples=done, passes=passes, seconds=seconds, device=device)


def bake_lighting(
    scene: Scene,
    texels: Texels,
    settings: IntegrateSettings | None = None,
    *,
    progress: Progress = no_progress,
) -> IntegrateResult:
    """Everything in one call: :func:`scene_triangles`, the BVH, :func:`prepare_bake_inputs`, :func:`integrate`."""
    from engine.bake.bvh import build_bvh

    triangles = scene_triangles(scene)
    bvh = build_bvh(triangles.corners.astype(np.float32))
    inputs = prepare_bake_inputs(scene, texels, triangles=triangles)
    return integrate(inputs, bvh, settings, progress=progress)
