"""Benchmark: our lightmap baker against Cycles' DIFFUSE bake, on the same UVs (the Cornell box).

What is compared
    The classic Cornell box (``engine.scene.samples``: OBJ in millimetres, Y up, emissive
    ceiling light ``Ke 17 12 4``) is imported with Blender's own OBJ importer (scale 0.001, so
    the Blender scene is in metres and our snapshot's ``meters_per_unit`` is 1; Y up → Z up).
    The importer maps ``Ke`` to the Principled BSDF's emission (colour × strength = 17, 12, 4
    W/(m²·sr)); the script checks that it arrived. Every material is made diffuse only:
    roughness 1, metallic 0, Specular IOR Level 0 (so the Principled BSDF has no specular lobe
    and is a Lambertian diffuse of the base colour), no coat, sheen or transmission; the world
    is black. Every mesh object is baked, the light's quad included.

    Ours: ``snapshot_scene`` → ``bake_scene`` (CPU, denoise off, padding 2, ``bounces``);
    ``apply_bake`` puts our lightmap UVs on the Blender meshes as the "Lightmap" UV map, and
    ``restore_materials`` puts the original (diffuse) materials back for Cycles.

    Cycles: ``bpy.ops.object.bake(type="DIFFUSE", pass_filter={"DIRECT", "INDIRECT"})`` of all
    mesh objects in one call, into one float image per atlas, through the "Lightmap" UV map
    (the active UV layer) and an Image Texture node that is the active node of every material
    (per-atlas copies of the materials, so an atlas' objects bake into its image). CPU, 2
    threads, adaptive sampling, denoising, clamping and the light threshold off, fixed seed,
    ``samples`` = N, max bounces = diffuse bounces = ours' ``bounces`` (glossy, transmission,
    volume and transparent bounces 0). Cycles counts bounces like ours: 0 is direct light only
    (next-event estimation plus the MIS-weighted emitter hit of the first scattered ray), and
    ``diffuse_bounces`` = N adds light that reflected off up to N surfaces before reaching the
    texel; a one-bounce mismatch shows as several per cent here (see --check-bounces).

Units
    Cycles' DIFFUSE pass without COLOR is the diffuse lighting divided by the albedo, E/π for a
    Lambertian surface (E the irradiance in W/m²): the same quantity as our lightmaps. The
    script checks it on a plane under a sun of strength S at angle θ (hard shadows, no bounces):
    both give S·cosθ/π (the ``units`` section of the output).

Compared texels
    Our texel mask ∩ the pixels Cycles baked, eroded by 2 texels (chart borders and the
    conservative raster's edge texels are skipped), minus the ceiling texels behind the light
    quad: the quad hangs 0.1 mm below the ceiling and our ray origins, offset by 5 % of a texel
    (≈ 0.35 mm at the default density), start below the quad and see the room, while Cycles'
    see the quad's emitting back (those texels are hidden by the quad in any render; they are
    counted in the output). "Lit" = the Cycles reference's luminance above 1 % of its 99th
    percentile. Cycles jitters each sample's position within the texel (its bake
    anti-aliasing; ``filter_width`` does not change bakes), ours samples the texel centre:
    where lighting jumps inside a texel (the blocks' footprints on the floor) the two differ by
    definition; the output counts the lit texels that are black in ours. Our texels' lighting
    is evaluated at their ray origins, 5 % of a texel off the surface: that makes ours about
    0.1 % brighter than Cycles at the default density (0.3 % at 40 texels/m).

Metrics
    * Accuracy: the mean relative error |ours − ref| / ref of the luminance, per texel, over
      lit texels, ours at the reference sample count against Cycles at the reference sample
      count (goal ≤ 5 %). Both maps are still noisy there, so the output also gives the part
      of that figure per-texel noise alone explains (from each renderer's measured noise), the
      same error after a 3×3 box filter of both maps, the signed bias (ratio of sums), per
      channel and per object, and with --check-bounces the bias of ours baked with one bounce
      less and one more (what a bounce mismatch looks like).
    * Noise: the RMS, over lit texels, of (run − reference) / (Cycles reference) in luminance,
      run = a renderer at N samples (seed 0), reference = the same renderer at the reference
      sample count with another seed (1), so that it measures the run's noise, not the small
      systematic difference between the renderers (which the accuracy figure reports). The
      reference's own noise is removed: for independent samples E[(X_N − X_ref)²] =
      σ²(1/N + 1/N_ref), so the run's noise is the RMS difference × √(N_ref / (N + N_ref)).
    * Equal-noise time: per renderer, time against noise on a log-log scale (piecewise linear
      between measured points, a power-law fit outside them); at each noise level Cycles
      reached, the time ours needs for the same noise divided by Cycles' time (goal ≤ 1/3).
      The headline is at Cycles' largest sweep sample count (its lowest noise, where fixed
      costs weigh least: Cycles spends about 0.4 CPU-s per bake call on scene sync and setup,
      which flatters ours at low sample counts; the median over all levels is printed too).
      Our time is the integrate stage of ``bake.json`` (the rest of our bake, UV layout,
      texels, BVH, post and writing, is reported beside it and in a second ratio); Cycles'
      is the bake call. Wall and CPU seconds (all threads of the process, ``time.process_time``)
      are both measured: on a machine shared with other work, wall times include waiting for
      the cores and CPU times do not, so the CPU ratio is the one to trust there (the load
      average is printed).

Modes
    Full: our default texel density for the atlas (≈ 41,000 texels at 512²), references at
    1024 samples, sweep 16–256 samples (ours also 512): about 10 minutes on the 2-core
    development machine while it was shared with other work. ``--quick``: 60 texels/m
    (≈ 7,800 texels), references at 256, sweep 8–64 (ours also 128): under a minute; its
    accuracy is noise-bound and its time ratio flattered by fixed costs, so quote the full run.

    .venv/bin/python bench/bench_cycles.py [--atlas 512] [--quick] [--json] [--check-bounces]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bpy

from blender_addon.apply_bake import UV_NAME, apply_bake, restore_materials
from blender_addon.snapshot import snapshot_scene
from engine.bake.output import read_exr
from engine.bake.pipeline import BakeSettings, bake_scene, read_corner_uvs
from engine.bake.texels import rasterize_texels
from engine.bake.uv import lightmap_layout
from engine.scene.model import Scene
from engine.scene.samples import write_cornell_box

GOALS = {"mean_relative_error": 0.05, "time_ratio_equal_noise": 1.0 / 3.0}
LUMINANCE = np.array([0.2126, 0.7152, 0.0722], np.float64)
THREADS = 2
ERODE = 2
LIT_FRACTION = 0.01


# ---------------------------------------------------------------------------------------------
# Blender scenes


def reset_blender() -> None:
    """An empty Blender file (no objects, no world)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)


def black_world() -> None:
    """A world that emits nothing (the Background node, if any, at strength 0)."""
    world = bpy.data.worlds.new("Black")
    world.color = (0.0, 0.0, 0.0)
    tree = world.node_tree
    if tree is not None:
        for node in tree.nodes:
            if node.type == "BACKGROUND":
                node.inputs["Color"].default_value = (0.0, 0.0, 0.0, 1.0)
                node.inputs["Strength"].default_value = 0.0
    bpy.context.scene.world = world


def make_diffuse_only(materials: Sequence[Any]) -> None:
    """Principled BSDFs with only their Lambertian diffuse lobe (and emission) left."""
    settings = {"Roughness": 1.0, "Metallic": 0.0, "Specular IOR Level": 0.0, "Coat Weight": 0.0,
                "Sheen Weight": 0.0, "Transmission Weight": 0.0, "Subsurface Weight": 0.0}
    for material in materials:
        tree = material.node_tree
        shaders = [n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"] if tree is not None else []
        if not shaders:
            raise RuntimeError(f"material {material.name!r} has no Principled BSDF to make diffuse")
        for shader in shaders:
            for name, value in settings.items():
                shader.inputs[name].default_value = value


def build_cornell_box(folder: Path) -> list[Any]:
    """Import the Cornell box OBJ into an empty file (metres, Z up), diffuse only, black world."""
    reset_blender()
    path = write_cornell_box(folder)
    bpy.ops.wm.obj_import(filepath=str(path), global_scale=0.001, forward_axis="NEGATIVE_Z", up_axis="Y")
    objects = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    if len(objects) != 8:
        raise RuntimeError(f"the OBJ import gave {len(objects)} mesh objects, expected 8")
    light = bpy.data.materials.get("light")
    shader = next(n for n in light.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    emission = np.array(shader.inputs["Emission Color"].default_value[:3]) * shader.inputs["Emission Strength"].default_value
    if not np.allclose(emission, (17.0, 12.0, 4.0), rtol=1e-5):  # Ke did not arrive: set it ourselves
        shader.inputs["Emission Color"].default_value = (1.0, 12.0 / 17.0, 4.0 / 17.0, 1.0)
        shader.inputs["Emission Strength"].default_value = 17.0
    make_diffuse_only(list(bpy.data.materials))
    black_world()
    return objects


def build_sun_plane(strength: float, angle_deg: float) -> list[Any]:
    """A 1 m plane facing +Z (albedo 0.8) under a hard sun of ``strength`` W/m² tilted ``angle_deg`` off the normal."""
    reset_blender()
    bpy.ops.mesh.primitive_plane_add(size=1.0)
    plane = bpy.context.active_object
    plane.name = "Plane"
    material = bpy.data.materials.new("Grey")
    material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.8, 0.8, 0.8, 1.0)
    plane.data.materials.append(material)
    make_diffuse_only([material])
    sun = bpy.data.lights.new("Sun", "SUN")
    sun.energy = strength
    sun.angle = 0.0
    lamp = bpy.data.objects.new("Sun", sun)
    lamp.rotation_euler = (math.radians(angle_deg), 0.0, 0.0)  # shines along its local −Z
    bpy.context.scene.collection.objects.link(lamp)
    black_world()
    return [plane]


# ---------------------------------------------------------------------------------------------
# The two bakers on one set of UVs


@dataclasses.dataclass
class Compared:
    """One bake of either renderer: per-atlas (S, S, 3) float32 images (row 0 = V top), the
    measured stage's wall and CPU seconds (ours: the integrate stage; Cycles: the bake call),
    and for ours the rest of the bake (``rest_s``, ``rest_cpu_s``) and its summary figures."""

    images: list[np.ndarray]
    seconds: float
    cpu_seconds: float
    samples: int
    seed: int
    detail: dict[str, float] = dataclasses.field(default_factory=dict)


class BakeBench:
    """Our baker and Cycles on the objects of the open Blender scene, through the same lightmap UVs.

    Construction snapshots the scene, makes the layout with one warm-up bake of ours (which also
    loads the compiled integrator), applies its UVs to the Blender meshes, restores their
    materials and sets up Cycles' bake targets.
    """

    def __init__(self, objects: Sequence[Any], work: Path, *, atlas_size: int, bounces: int,
                 texels_per_metre: float | None = None) -> None:
        self.objects = list(objects)
        self.work = work
        self.bounces = bounces
        self.scene: Scene = snapshot_scene(bpy.context)
        self.settings = BakeSettings(texels_per_metre=texels_per_metre, atlas_size=atlas_size, padding=2,
                                     bounces=bounces, device="cpu", denoise=False)
        self._runs = 0
        first = self.ours(1, seed=0)
        self.summary = first.detail
        folder = self.work / f"ours_{self._runs - 1}"
        layout = lightmap_layout(self.scene, texels_per_metre=texels_per_metre, atlas_size=atlas_size, padding=2)
        baked_uvs = read_corner_uvs(folder / "lightmap_uv.npz")
        for entry in layout.entries:  # the mask below must describe the bake's own layout
            if not np.array_equal(entry.uv[entry.triangles], baked_uvs[entry.name][1]):
                raise RuntimeError(f"lightmap layout is not deterministic ({entry.name})")
        self.layout = layout
        self.texels = rasterize_texels(layout)
        report = apply_bake(bpy.context, folder)
        if len(report.objects) != len(layout.entries):
            raise RuntimeError(f"apply_bake: {report.summary()}")
        restore_materials(self.objects)
        self.atlas_count = layout.atlas_count
        self.atlas_size = layout.atlas_size
        self._setup_cycles_targets()

    # -- ours

    def ours(self, samples: int, seed: int, *, bounces: int | None = None) -> Compared:
        """Our bake (``bounces`` other than the bench's only to show what a mismatch looks like)."""
        out = self.work / f"ours_{self._runs}"
        self._runs += 1
        settings = dataclasses.replace(self.settings, samples=samples, seed=seed,
                                       bounces=self.bounces if bounces is None else bounces)
        marks: dict[str, float] = {}

        def progress(stage: str, fraction: float, message: str) -> None:
            # CPU time (all threads) from the end of the layout to the start of post: the
            # integrate stage plus texel rasterisation, BVH and input packing (milliseconds here)
            if (stage, fraction) in (("layout", 1.0), ("post", 0.0)):
                marks[stage] = time.process_time()

        cpu = time.process_time()
        summary = bake_scene(self.scene, out, settings, progress=progress)
        cpu = time.process_time() - cpu
        timings = summary["timings_s"]
        integrate_cpu = marks["post"] - marks["layout"]
        images = [read_exr(out / "lightmaps" / f"atlas_{k}.exr")[:, :, :3] for k in range(summary["atlas_count"])]
        detail = {"rest_s": timings["total_s"] - timings["integrate_s"], "rest_cpu_s": cpu - integrate_cpu,
                  "total_s": timings["total_s"], "texels": summary["texels"],
                  "texels_per_metre": summary["texels_per_metre"], "rays_per_second": summary["rays_per_second"]}
        return Compared(images, float(timings["integrate_s"]), integrate_cpu, samples, seed, detail)

    # -- Cycles

    def _setup_cycles_targets(self) -> None:
        size = self.atlas_size
        self.images = []
        for k in range(self.atlas_count):
            image = bpy.data.images.new(f"cycles_atlas{k}", size, size, alpha=True, float_buffer=True)
            image.colorspace_settings.name = "Non-Color"
            self.images.append(image)
        copies: dict[tuple[str, int], Any] = {}
        atlas_of = {e.name: e.atlas for e in self.layout.entries}
        for obj in self.objects:
            atlas = atlas_of[obj.name]
            mesh = obj.data
            mesh.uv_layers.active = mesh.uv_layers[UV_NAME]
            for slot in obj.material_slots:
                key = (slot.material.name, atlas)
                if key not in copies:
                    copy = slot.material.copy()
                    copy.name = f"{slot.material.name}.cycles{atlas}"
                    node = copy.node_tree.nodes.new("ShaderNodeTexImage")
                    node.image = self.images[atlas]
                    copy.node_tree.nodes.active = node  # what the bake writes into
                    copies[key] = copy
                slot.material = copies[key]
        scene = bpy.context.scene
        scene.render.engine = "CYCLES"
        scene.render.threads_mode = "FIXED"
        scene.render.threads = THREADS
        cycles = scene.cycles
        cycles.device = "CPU"
        cycles.use_adaptive_sampling = False
        cycles.use_denoising = False
        cycles.sample_clamp_direct = 0.0
        cycles.sample_clamp_indirect = 0.0  # 10 by default: it would darken the bright indirect paths
        cycles.light_sampling_threshold = 0.0
        cycles.time_limit = 0.0
        cycles.use_animated_seed = False
        cycles.max_bounces = self.bounces
        cycles.diffuse_bounces = self.bounces
        cycles.glossy_bounces = 0
        cycles.transmission_bounces = 0
        cycles.volume_bounces = 0
        cycles.transparent_max_bounces = 0
        cycles.caustics_reflective = False
        cycles.caustics_refractive = False
        scene.render.bake.use_selected_to_active = False
        scene.render.bake.target = "IMAGE_TEXTURES"
        bpy.ops.object.select_all(action="DESELECT")
        for obj in self.objects:
            obj.select_set(True)
        bpy.context.view_layer.objects.active = self.objects[0]

    def cycles(self, samples: int, seed: int) -> Compared:
        scene = bpy.context.scene
        scene.cycles.samples = samples
        scene.cycles.seed = seed
        size = self.atlas_size
        cleared = np.zeros(size * size * 4, np.float32)  # alpha 0: Cycles writes alpha 1 where it bakes
        for image in self.images:
            image.pixels.foreach_set(cleared)
        started, cpu = time.perf_counter(), time.process_time()
        result = bpy.ops.object.bake(type="DIFFUSE", pass_filter={"DIRECT", "INDIRECT"}, use_clear=False, margin=0)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        if result != {"FINISHED"}:
            raise RuntimeError(f"Cycles bake returned {result}")
        images, coverage = [], []
        for image in self.images:
            pixels = np.empty(size * size * 4, np.float32)
            image.pixels.foreach_get(pixels)
            rgba = pixels.reshape(size, size, 4)[::-1]  # Blender's row 0 is V = 0; ours is V = 1
            images.append(np.ascontiguousarray(rgba[:, :, :3]))
            coverage.append(rgba[:, :, 3] > 0.5)
        self.cycles_coverage = coverage
        return Compared(images, seconds, cpu, samples, seed)

    # -- which texels count

    def compared_texels(self, hide_behind_emitters: bool = True) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """(texel indices compared, their object names, counts): see the module docstring."""
        tx = self.texels
        ours_mask = [erode(tx.mask(k), ERODE) for k in range(self.atlas_count)]
        keep = np.zeros(tx.count, bool)
        for k in range(self.atlas_count):
            pick = tx.atlas == k
            keep[pick] = ours_mask[k][tx.y[pick], tx.x[pick]] & self.cycles_coverage[k][tx.y[pick], tx.x[pick]]
        names = np.array([e.name for e in self.layout.entries])[tx.object_index]
        counts = {"texels": int(tx.count), "compared": int(keep.sum())}
        if hide_behind_emitters:
            hidden = behind_emitters(self.scene, tx.position, tx.texel_size, names)
            counts["behind_emitter"] = int((keep & hidden).sum())
            keep &= ~hidden
            counts["compared"] = int(keep.sum())
        index = np.flatnonzero(keep)
        return index, names[index], counts

    def values(self, run: Compared, index: np.ndarray, blur: bool = False) -> np.ndarray:
        """(M, 3) float64 values of ``run`` at texels ``index`` (3×3 box-filtered over the texel mask with ``blur``)."""
        tx = self.texels
        out = np.empty((index.size, 3), np.float64)
        a, y, x = tx.atlas[index], tx.y[index], tx.x[index]
        for k in range(self.atlas_count):
            image = run.images[k].astype(np.float64)
            if blur:
                image = masked_box3(image, tx.mask(k))
            pick = a == k
            out[pick] = image[y[pick], x[pick]]
        return out


def erode(mask: np.ndarray, iterations: int) -> np.ndarray:
    """Binary erosion with the 3×3 square, outside the image counting as empty."""
    m = mask.astype(bool)
    for _ in range(iterations):
        p = np.pad(m, 1)
        m = np.ones_like(m)
        for dy in range(3):
            for dx in range(3):
                m &= p[dy:dy + m.shape[0], dx:dx + m.shape[1]]
    return m


def masked_box3(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the 3×3 neighbours inside ``mask`` (the same linear filter for both renderers)."""
    h, w = mask.shape
    values = np.pad(image * mask[:, :, None], ((1, 1), (1, 1), (0, 0)))
    weights = np.pad(mask.astype(np.float64), 1)
    total = np.zeros_like(image)
    count = np.zeros((h, w), np.float64)
    for dy in range(3):
        for dx in range(3):
            total += values[dy:dy + h, dx:dx + w]
            count += weights[dy:dy + h, dx:dx + w]
    return total / np.maximum(count, 1.0)[:, :, None]


def behind_emitters(scene: Scene, positions: np.ndarray, texel_size: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Texels of other objects within 2 texels of an emissive object's bounding box: the
    surfaces an emitter hangs against (here the ceiling right above the light quad)."""
    hidden = np.zeros(positions.shape[0], bool)
    margin = 2.0 * np.asarray(texel_size, np.float64)[:, None]
    for obj in scene.objects:
        if not any(scene.materials[int(i)].is_emissive for i in np.unique(obj.material_indices)):
            continue
        m = np.asarray(obj.transform, np.float64)
        world = obj.positions.astype(np.float64) @ m[:3, :3].T + m[:3, 3]
        inside = np.all((positions >= world.min(0) - margin) & (positions <= world.max(0) + margin), axis=1)
        hidden |= inside & (owners != obj.name)
    return hidden


def luminance(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, np.float64) @ LUMINANCE


# ---------------------------------------------------------------------------------------------
# Metrics


def lit_texels(reference_luminance: np.ndarray) -> np.ndarray:
    """Texels whose reference luminance is above ``LIT_FRACTION`` of its 99th percentile."""
    return reference_luminance > LIT_FRACTION * np.percentile(reference_luminance, 99.0)


def relative_errors(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per texel (luminance of ours − luminance of the reference) / luminance of the reference."""
    ref = luminance(reference)
    return (luminance(ours) - ref) / ref


def noise_level(run: Compared, reference: Compared, bench: BakeBench, index: np.ndarray, scale: np.ndarray) -> float:
    """RMS of (``run`` − ``reference``) / ``scale`` in luminance, ``reference`` being the same
    renderer at more samples and another seed and ``scale`` the Cycles reference's luminance at
    texels ``index``, with the reference's own noise removed (see the module docstring)."""
    if run.seed == reference.seed:
        raise ValueError("the reference must use another seed than the run it measures")
    error = (luminance(bench.values(run, index)) - luminance(bench.values(reference, index))) / scale
    rms = float(np.sqrt(np.mean(error**2)))
    return rms * math.sqrt(reference.samples / (run.samples + reference.samples))


def time_at_noise(noise: Sequence[float], seconds: Sequence[float], target: float) -> float:
    """Seconds a renderer needs to reach ``target`` noise: log-log interpolation between its
    measured points, a power-law fit outside them."""
    order = np.argsort(np.log(noise))
    le = np.log(np.asarray(noise, np.float64))[order]
    lt = np.log(np.asarray(seconds, np.float64))[order]
    x = math.log(target)
    if le[0] <= x <= le[-1]:
        return float(np.exp(np.interp(x, le, lt)))
    slope, intercept = np.polyfit(le, lt, 1)
    return float(np.exp(intercept + slope * x))


def accuracy(bench: BakeBench, ours: Compared, reference: Compared, index: np.ndarray,
             names: np.ndarray) -> dict[str, Any]:
    """Ours against the Cycles reference on lit texels (see the module docstring)."""
    o, c = bench.values(ours, index), bench.values(reference, index)
    lit = lit_texels(luminance(c))
    rel = relative_errors(o[lit], c[lit])
    blurred = relative_errors(bench.values(ours, index, blur=True)[lit], bench.values(reference, index, blur=True)[lit])
    per_object, per_object_texels = {}, {}
    for name in np.unique(names[lit]):
        pick = names[lit] == name
        per_object[str(name)] = round(float(luminance(o[lit][pick]).sum() / luminance(c[lit][pick]).sum()), 4)
        per_object_texels[str(name)] = int(pick.sum())
    return {
        "lit_texels": int(lit.sum()),
        "lit_texels_ours_black": int((luminance(o[lit]) <= 0.0).sum()),
        "mean_relative_error": float(np.mean(np.abs(rel))),
        "mean_relative_error_3x3": float(np.mean(np.abs(blurred))),
        "median_relative_error": float(np.median(np.abs(rel))),
        "p95_relative_error": float(np.percentile(np.abs(rel), 95.0)),
        "bias_ratio_of_sums": float(luminance(o[lit]).sum() / luminance(c[lit]).sum()),
        "channel_ratio_of_sums": [round(float(v), 4) for v in o[lit].sum(0) / c[lit].sum(0)],
        "per_object_ratio": per_object,
        "per_object_lit_texels": per_object_texels,
    }


# ---------------------------------------------------------------------------------------------
# The runs


def units_check(work: Path, strength: float = 3.0, angle_deg: float = 30.0) -> dict[str, float]:
    """A plane under a hard sun, no bounces: both renderers against S·cosθ/π."""
    objects = build_sun_plane(strength, angle_deg)
    bench = BakeBench(objects, work / "sun", atlas_size=512, bounces=0, texels_per_metre=40.0)
    ours, cycles = bench.ours(4, seed=0), bench.cycles(4, seed=0)
    index, _, _ = bench.compared_texels(hide_behind_emitters=False)
    return {
        "expected": strength * math.cos(math.radians(angle_deg)) / math.pi,
        "ours": float(luminance(bench.values(ours, index)).mean()),
        "cycles": float(luminance(bench.values(cycles, index)).mean()),
        "texels": int(index.size),
    }


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sample counts of one benchmark run: ``sweep`` for both renderers, ``ours_extra`` for ours
    only (so that our noise range covers Cycles' lowest noise without extrapolating), the
    references' samples, and the texel density (None: our baker's default for the atlas)."""

    sweep: tuple[int, ...]
    ours_extra: tuple[int, ...]
    reference: int
    texels_per_metre: float | None


FULL = Plan(sweep=(16, 32, 64, 128, 256), ours_extra=(512,), reference=1024, texels_per_metre=None)
QUICK = Plan(sweep=(8, 16, 32, 64), ours_extra=(128,), reference=256, texels_per_metre=60.0)


def mean_abs_noise(run: Compared, reference: Compared, bench: BakeBench, index: np.ndarray, scale: np.ndarray,
                   at_samples: int) -> float:
    """Mean |relative noise| per texel that ``run``'s renderer has at ``at_samples`` samples
    (Gaussian noise per texel, variance ∝ 1/N)."""
    error = (luminance(bench.values(run, index)) - luminance(bench.values(reference, index))) / scale
    per_sample = float(np.mean(np.abs(error))) / math.sqrt(1.0 / run.samples + 1.0 / reference.samples)
    return per_sample / math.sqrt(at_samples)


def run(work: Path, atlas_size: int, plan: Plan, bounces: int, check_bounces: bool, say: Any) -> dict[str, Any]:
    """The whole benchmark, its files under ``work``; returns the figures (see the module docstring)."""
    import numba

    started = time.perf_counter()
    load_before = os.getloadavg()
    units = units_check(work)
    say(f"units (plane under a sun of 3 W/m² at 30°, E/π): expected {units['expected']:.4f}, "
        f"ours {units['ours']:.4f}, Cycles {units['cycles']:.4f}")

    objects = build_cornell_box(work / "obj")
    bench = BakeBench(objects, work / "cornell", atlas_size=atlas_size, bounces=bounces,
                      texels_per_metre=plan.texels_per_metre)
    bench.cycles(1, seed=0)  # warm-up: Cycles' first bake loads its kernels
    summary = bench.summary
    texels = summary["texels"]
    say(f"Cornell box: {texels:,} texels in {bench.atlas_count} atlas(es) of {atlas_size}², "
        f"{summary['texels_per_metre']:.1f} texels/m, {bounces} bounces; numba threads "
        f"{numba.get_num_threads()}, Cycles threads {THREADS}; load average {load_before[0]:.1f}")

    say(f"references: {plan.reference} samples, seed 1; then {len(plan.sweep)} runs of each, seed 0")
    ours_ref = bench.ours(plan.reference, seed=1)
    cycles_ref = bench.cycles(plan.reference, seed=1)
    ours_runs: dict[int, Compared] = {}
    cycles_runs: dict[int, Compared] = {}
    for samples in plan.sweep:  # interleaved, so that both see the same machine load
        ours_runs[samples] = bench.ours(samples, seed=0)
        cycles_runs[samples] = bench.cycles(samples, seed=0)
    for samples in plan.ours_extra:
        ours_runs[samples] = bench.ours(samples, seed=0)
    index, names, counts = bench.compared_texels()
    reference_luminance = luminance(bench.values(cycles_ref, index))
    lit = lit_texels(reference_luminance)
    index_lit, scale = index[lit], reference_luminance[lit]

    acc = accuracy(bench, ours_ref, cycles_ref, index, names)
    top = max(plan.sweep)
    noise_o = mean_abs_noise(ours_runs[top], ours_ref, bench, index_lit, scale, plan.reference)
    noise_c = mean_abs_noise(cycles_runs[top], cycles_ref, bench, index_lit, scale, plan.reference)
    acc["noise_part_estimate"] = math.sqrt(noise_o**2 + noise_c**2)

    ours_rows = [{"samples": n, "wall_s": r.seconds, "cpu_s": r.cpu_seconds, "rest_s": r.detail["rest_s"],
                  "rest_cpu_s": r.detail["rest_cpu_s"], "noise": noise_level(r, ours_ref, bench, index_lit, scale)}
                 for n, r in sorted(ours_runs.items())]
    cycles_rows = [{"samples": n, "wall_s": r.seconds, "cpu_s": r.cpu_seconds,
                    "noise": noise_level(r, cycles_ref, bench, index_lit, scale)}
                   for n, r in sorted(cycles_runs.items())]
    noise = [row["noise"] for row in ours_rows]

    def ours_needs(key: str, target: float, with_rest: bool = False) -> float:
        rest = "rest_s" if key == "wall_s" else "rest_cpu_s"
        times = [row[key] + (row[rest] if with_rest else 0.0) for row in ours_rows]
        return time_at_noise(noise, times, target)

    for row in cycles_rows:
        target = row["noise"]
        row["ours_wall_s_at_this_noise"] = ours_needs("wall_s", target)
        row["ours_cpu_s_at_this_noise"] = ours_needs("cpu_s", target)
        row["ratio_wall"] = row["ours_wall_s_at_this_noise"] / row["wall_s"]
        row["ratio_cpu"] = row["ours_cpu_s_at_this_noise"] / row["cpu_s"]
        row["ratio_wall_with_rest"] = ours_needs("wall_s", target, True) / row["wall_s"]
        row["ratio_cpu_with_rest"] = ours_needs("cpu_s", target, True) / row["cpu_s"]
    last = cycles_rows[-1]
    n_log = np.log([row["samples"] for row in ours_rows])
    slope_o = float(np.polyfit(n_log, np.log(noise), 1)[0])
    slope_c = float(np.polyfit(np.log([r["samples"] for r in cycles_rows]), np.log([r["noise"] for r in cycles_rows]),
                               1)[0])

    def marginal(runs: dict[int, Compared], attr: str) -> float:
        """Seconds per sample and texel between the smallest and largest sweep runs (fixed costs cancel)."""
        low, high = runs[min(plan.sweep)], runs[top]
        return (getattr(high, attr) - getattr(low, attr)) / ((high.samples - low.samples) * texels)

    figures: dict[str, Any] = {
        "machine": {"cpu_count": os.cpu_count(), "numba_threads": numba.get_num_threads(),
                    "cycles_threads": THREADS, "python": platform.python_version(),
                    "blender": bpy.app.version_string, "load_average_before": round(load_before[0], 2),
                    "load_average_after": round(os.getloadavg()[0], 2)},
        "scene": {"texels": texels, "atlas_size": atlas_size, "atlas_count": bench.atlas_count,
                  "texels_per_metre": summary["texels_per_metre"], "bounces": bounces, **counts},
        "units_check": units,
        "reference_samples": plan.reference,
        "reference_seconds": {"ours_integrate_s": ours_ref.seconds, "ours_integrate_cpu_s": ours_ref.cpu_seconds,
                              "ours_rest_s": ours_ref.detail["rest_s"], "cycles_s": cycles_ref.seconds,
                              "cycles_cpu_s": cycles_ref.cpu_seconds},
        "accuracy": acc,
        "noise_exponent": {"ours": slope_o, "cycles": slope_c},
        "ours_sweep": ours_rows,
        "cycles_sweep": cycles_rows,
        "time_ratio_equal_noise": {
            "at_noise": last["noise"], "cycles_samples": last["samples"],
            "wall": last["ratio_wall"], "cpu": last["ratio_cpu"],
            "wall_with_rest": last["ratio_wall_with_rest"], "cpu_with_rest": last["ratio_cpu_with_rest"],
            "median_wall": float(np.median([r["ratio_wall"] for r in cycles_rows])),
            "median_cpu": float(np.median([r["ratio_cpu"] for r in cycles_rows])),
        },
        "marginal_us_per_sample_texel": {
            "ours_wall": 1e6 * marginal(ours_runs, "seconds"), "ours_cpu": 1e6 * marginal(ours_runs, "cpu_seconds"),
            "cycles_wall": 1e6 * marginal(cycles_runs, "seconds"),
            "cycles_cpu": 1e6 * marginal(cycles_runs, "cpu_seconds"),
        },
        "goals": GOALS,
    }
    if check_bounces:
        check = {}
        for other in (bounces - 1, bounces + 1):
            if other < 0:
                continue
            mismatched = bench.ours(top, seed=2, bounces=other)
            check[str(other)] = accuracy(bench, mismatched, cycles_ref, index, names)["bias_ratio_of_sums"]
        figures["bias_with_other_bounces"] = check
    figures["wall_s"] = time.perf_counter() - started
    return figures


def report(figures: dict[str, Any], say: Any) -> None:
    """Print the figures as tables and the headline ratios."""
    acc = figures["accuracy"]
    scene = figures["scene"]
    ref = figures["reference_seconds"]
    say(f"compared texels: {scene['compared']:,} of {scene['texels']:,} (eroded by {ERODE}; "
        f"{scene.get('behind_emitter', 0)} behind the light left out); lit: {acc['lit_texels']:,} "
        f"({acc['lit_texels_ours_black']} of them black in ours: partly covered texels, see the docstring)")
    say(f"\nreferences, {figures['reference_samples']} samples: ours {ref['ours_integrate_s']:.1f} s "
        f"(CPU {ref['ours_integrate_cpu_s']:.1f} s; +{ref['ours_rest_s']:.1f} s rest of the bake), "
        f"Cycles {ref['cycles_s']:.1f} s (CPU {ref['cycles_cpu_s']:.1f} s)")
    goal = GOALS["mean_relative_error"]
    verdict = "meets" if acc["mean_relative_error"] <= goal else "MISSES"
    say(f"mean relative error, ours vs Cycles: {acc['mean_relative_error']:.2%} per texel ({verdict} the goal "
        f"≤ {goal:.0%}), of which per-texel noise alone ≈ {acc['noise_part_estimate']:.2%}; "
        f"{acc['mean_relative_error_3x3']:.2%} after a 3×3 box filter")
    say(f"  bias (ratio of sums): {acc['bias_ratio_of_sums']:.4f}, per channel {acc['channel_ratio_of_sums']}; "
        f"median |rel| {acc['median_relative_error']:.2%}, p95 {acc['p95_relative_error']:.2%}")
    say("  per object (ours / Cycles): " + ", ".join(f"{k} {v:.3f}" for k, v in acc["per_object_ratio"].items()))
    if "bias_with_other_bounces" in figures:
        say("  ours with another bounce count, ratio of sums vs Cycles: "
            + ", ".join(f"{k} bounces {v:.4f}" for k, v in figures["bias_with_other_bounces"].items()))
    say(f"\n{'ours':>7} | {'integ s':>8} {'CPU s':>7} {'rest s':>7} {'noise':>7}")
    for row in figures["ours_sweep"]:
        say(f"{row['samples']:>7} | {row['wall_s']:>8.2f} {row['cpu_s']:>7.2f} {row['rest_s']:>7.2f} "
            f"{row['noise']:>7.2%}")
    say(f"\n{'Cycles':>7} | {'bake s':>8} {'CPU s':>7} {'noise':>7} | ours at that noise: "
        f"{'s':>6} {'CPU s':>6} | {'ratio':>6} {'CPU':>6}")
    for row in figures["cycles_sweep"]:
        say(f"{row['samples']:>7} | {row['wall_s']:>8.2f} {row['cpu_s']:>7.2f} {row['noise']:>7.2%} | "
            f"{'':>19} {row['ours_wall_s_at_this_noise']:>6.2f} {row['ours_cpu_s_at_this_noise']:>6.2f} | "
            f"{row['ratio_wall']:>6.3f} {row['ratio_cpu']:>6.3f}")
    per = figures["marginal_us_per_sample_texel"]
    say(f"\nper sample and texel (marginal): ours {per['ours_wall']:.2f} µs ({per['ours_cpu']:.2f} µs CPU), "
        f"Cycles {per['cycles_wall']:.2f} µs ({per['cycles_cpu']:.2f} µs CPU); noise ∝ "
        f"N^{figures['noise_exponent']['ours']:.2f} (ours), N^{figures['noise_exponent']['cycles']:.2f} (Cycles)")
    ratio = figures["time_ratio_equal_noise"]
    goal = GOALS["time_ratio_equal_noise"]
    verdict = "meets" if ratio["cpu"] <= goal else "MISSES"
    say(f"time at equal noise ({ratio['at_noise']:.2%}, Cycles' {ratio['cycles_samples']} samples), ours / Cycles: "
        f"{ratio['cpu']:.3f} in CPU time ({verdict} the goal ≤ 1/3), {ratio['wall']:.3f} in wall time; with the rest "
        f"of our bake: {ratio['cpu_with_rest']:.3f} CPU, {ratio['wall_with_rest']:.3f} wall; median over the noise "
        f"levels: {ratio['median_cpu']:.3f} CPU, {ratio['median_wall']:.3f} wall")
    machine = figures["machine"]
    say(f"wall time: {figures['wall_s']:.0f} s; load average {machine['load_average_before']} before, "
        f"{machine['load_average_after']} after (on {machine['cpu_count']} cores: above 2, wall times include "
        f"waiting for other processes, CPU times do not)")


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send what Blender's C code prints ("Info: Baking map saved ...") to stderr, so --json
    leaves a clean stdout: file descriptor 1 points at 2 while inside."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atlas", type=int, default=512, help="atlas size in texels (default 512)")
    parser.add_argument("--bounces", type=int, default=3, help="indirect diffuse bounces (default 3)")
    parser.add_argument("--quick", action="store_true", help="fewer texels and samples (about 2 minutes)")
    parser.add_argument("--check-bounces", action="store_true",
                        help="also bake ours with one bounce less and one more, to show the sensitivity")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    say = (lambda text: print(text, file=sys.stderr)) if args.json else print
    quiet = stdout_to_stderr() if args.json else contextlib.nullcontext()
    with quiet, tempfile.TemporaryDirectory(prefix="bench_cycles_") as work:
        figures = run(Path(work), args.atlas, plan, args.bounces, args.check_bounces, say)
        report(figures, say)
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
