"""Render engine Cameras with Cycles into RGBA float32 images of known intrinsics and extrinsics.

The splat and verification pipelines use this for training and reference views.

Output conventions (what :class:`RenderedView.rgba` holds):

* shape (H, W, 4), float32, **row 0 is the top** of the image and column 0 the left, so pixel
  (row, col) covers [col, col+1] × [row, row+1] in the Camera's pixel coordinates (``cx, cy``
  measured from the top-left corner; pixel centres at +0.5);
* RGB is **linear scene-referred radiance** in the blend file's working colour space (Linear
  Rec.709 by default): no view transform, look, display gamma or clamping (an emitter of
  strength 2.5 reads 2.5), scaled by ``2 ** RenderSettings.exposure``;
* alpha is coverage (1 where the film sees geometry, 0 on the empty background when
  ``film_transparent``), and RGB is **premultiplied** by it (associated alpha, as Cycles and
  OpenEXR produce it): composite over a background with ``rgb + (1 - alpha) * background``
  (:meth:`RenderedView.over`).

The camera model is the engine's pinhole: a world point ``p`` seen by a camera with
camera-to-world rotation ``R`` and position ``t`` has ``x_cam = Rᵀ (p - t)``; the camera
looks down -Z with +Y up, so ``u = cx + fx · x / (-z)`` and ``v = cy - fy · y / (-z)``
(``v`` grows downwards). Blender gets it exactly: ``sensor_fit`` HORIZONTAL,
``lens = fx · sensor_width / width``, pixel aspect ``fy / fx``, lens shift from the
principal point, clip range from ``near`` / ``far``. Scale in ``Camera.transform`` is ignored.

Each view renders through a temporary camera object and a temporary OpenEXR file (in
background mode Blender does not expose the "Render Result" pixels). Everything touched is put
back after every view, even on error: the scene's camera, render and Cycles settings, and no
new datablock or file is left behind. Motion blur, compositing, the sequencer, render border,
stereo views and the time limit are switched off for the render.

:func:`render_views` renders a whole list in one call (blocking); :class:`ViewRenderJob`
renders one view per :meth:`~ViewRenderJob.step`, for a modal operator or a timer so the
Blender UI stays live between views. Call both from Blender's main thread only.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix

from engine.errors import ConfigError, SceneError
from engine.progress import Progress
from engine.scene import Camera

__all__ = ["RenderSettings", "RenderedView", "ViewRenderJob", "render_views"]

_LOG = logging.getLogger(__name__)

STAGE = "render"
DEVICES = ("CPU", "GPU")
_SENSOR_WIDTH_MM = 36.0
_MAX_PIXEL_ASPECT = 200.0  # Blender's hard limit on render.pixel_aspect_x / _y
_MIN_RESOLUTION = 4  # Blender's hard minimum of render.resolution_x / _y


@dataclass(frozen=True)
class RenderSettings:
    """How Cycles renders the views.

    ``samples`` per pixel (no adaptive sampling unless ``adaptive_sampling``), ``max_bounces``
    total light bounces, ``denoise`` with OpenImageDenoise, ``film_transparent`` (alpha 0 on
    the background; else the world shows and alpha is 1), ``device`` "CPU" or "GPU" (GPU uses
    the compute device set in Blender's preferences; Cycles falls back to the CPU when none is
    set), ``seed`` of the sampling pattern, ``exposure`` in stops (scales the radiance by
    ``2 ** exposure``; alpha is unchanged), ``filter_width`` of the pixel filter in pixels
    (Cycles' Blackman-Harris; 1.5 is Cycles' default).
    """

    samples: int = 16
    max_bounces: int = 4
    denoise: bool = False
    film_transparent: bool = True
    device: str = "CPU"
    seed: int = 0
    exposure: float = 0.0
    filter_width: float = 1.5
    adaptive_sampling: bool = False

    def __post_init__(self) -> None:
        where = "render settings"
        if not isinstance(self.samples, int) or self.samples < 1:
            raise ConfigError(f"samples must be an integer of at least 1, got {self.samples!r}", where=where)
        if not isinstance(self.max_bounces, int) or not 0 <= self.max_bounces <= 1024:
            raise ConfigError(f"max_bounces must be an integer in 0..1024, got {self.max_bounces!r}", where=where)
        if self.device not in DEVICES:
            raise ConfigError(f"device is {self.device!r}, expected one of {', '.join(DEVICES)}", where=where)
        if not isinstance(self.seed, int) or not 0 <= self.seed <= 2**31 - 1:
            raise ConfigError(f"seed must be an integer in 0..2³¹-1, got {self.seed!r}", where=where)
        if not np.isfinite(self.exposure) or abs(self.exposure) > 32:
            raise ConfigError(
                f"exposure must be a finite number of stops in -32..32, got {self.exposure!r}", where=where
            )
        if not np.isfinite(self.filter_width) or not 0.01 <= self.filter_width <= 10:
            raise ConfigError(f"filter_width must be in 0.01..10 pixels, got {self.filter_width!r}", where=where)


@dataclass(frozen=True, eq=False)
class RenderedView:
    """One rendered view: the Camera and its image (see the module docstring for conventions).

    ``rgba`` is (H, W, 4) float32, read-only: premultiplied linear radiance and coverage alpha,
    row 0 at the top. ``seconds`` is the wall time of the render and read-back.
    """

    camera: Camera
    rgba: np.ndarray
    seconds: float = 0.0

    def over(self, background: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0)) -> np.ndarray:
        """The RGB image composited over a constant (or per-pixel) linear ``background``, (H, W, 3) float32."""
        bg = np.asarray(background, dtype=np.float32)
        return self.rgba[..., :3] + (1.0 - self.rgba[..., 3:4]) * bg


def render_views(
    cameras: Sequence[Camera],
    *,
    scene: bpy.types.Scene | None = None,
    settings: RenderSettings = RenderSettings(),
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[RenderedView]:
    """Render every camera of ``cameras`` with Cycles, in order; blocks until done.

    ``scene`` defaults to the context's scene. ``progress(stage, fraction, message)`` is called
    with 0.0 first and then after each view, ending with 1.0. ``cancel()`` is asked before each
    view: when it returns True, rendering stops and the views finished so far are returned
    (fewer than asked; nothing else is left over).
    """
    job = ViewRenderJob(cameras, scene=scene, settings=settings, progress=progress)
    while True:
        if cancel is not None and not job.done and cancel():
            job.cancel()
            break
        if not job.step():
            break
    return job.results


class ViewRenderJob:
    """Renders a list of cameras one view per :meth:`step`, so a timer or modal operator keeps the UI live.

    Nothing is changed in Blender between steps: each step sets up, renders one view and puts
    everything back. A step that raises leaves the job at that view (calling :meth:`step`
    again retries it).
    """

    def __init__(
        self,
        cameras: Sequence[Camera],
        *,
        scene: bpy.types.Scene | None = None,
        settings: RenderSettings = RenderSettings(),
        progress: Progress | None = None,
    ) -> None:
        self._cameras = tuple(cameras)
        for camera in self._cameras:
            _check_camera(camera)
        if not isinstance(settings, RenderSettings):
            raise ConfigError(
                f"settings must be RenderSettings, got {type(settings).__name__}", where="render settings"
            )
        self._scene = scene if scene is not None else bpy.context.scene
        self._settings = settings
        self._progress = progress
        self._results: list[RenderedView] = []
        self._cancelled = False
        self._started = False

    @property
    def total(self) -> int:
        """Number of views asked for."""
        return len(self._cameras)

    @property
    def results(self) -> list[RenderedView]:
        """The views rendered so far, in camera order (a new list each time)."""
        return list(self._results)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def done(self) -> bool:
        """True once every view is rendered or the job was cancelled."""
        return self._cancelled or len(self._results) >= len(self._cameras)

    @property
    def fraction(self) -> float:
        return 1.0 if not self._cameras else len(self._results) / len(self._cameras)

    def step(self) -> bool:
        """Render the next view; return True while views remain, False when all are done (or cancelled)."""
        if self.done:
            if not self._started:  # an empty list: still say it is finished
                self._started = True
                self._report(1.0, "no views to render")
            return False
        n = len(self._cameras)
        if not self._started:
            self._started = True
            self._report(0.0, f"rendering {n} view{'s' if n != 1 else ''} with Cycles")
        camera = self._cameras[len(self._results)]
        view = _render_one(self._scene, camera, self._settings)
        self._results.append(view)
        done = len(self._results)
        self._report(done / n, f"view {done}/{n} '{camera.name}' ({view.seconds:.1f} s)")
        return not self.done

    def cancel(self) -> None:
        """Stop: later steps render nothing. Views already rendered stay in :attr:`results`."""
        if not self.done:
            self._report(self.fraction, f"cancelled after {len(self._results)} of {len(self._cameras)} views")
        self._cancelled = True

    def _report(self, fraction: float, message: str) -> None:
        _LOG.debug("%s %.0f%% %s", STAGE, 100 * fraction, message)
        if self._progress is not None:
            self._progress(STAGE, fraction, message)


# --------------------------------------------------------------------------------------------
# one view


def _check_camera(camera: Camera) -> None:
    if not isinstance(camera, Camera):
        raise SceneError(f"expected an engine Camera, got {type(camera).__name__}", where="render views")
    where = f"camera '{camera.name}'"
    if min(camera.width, camera.height) < _MIN_RESOLUTION:
        raise SceneError(
            f"image size {camera.width}×{camera.height} is below Blender's minimum of {_MIN_RESOLUTION} pixels",
            where=where,
        )
    ratio = camera.fy / camera.fx
    if not 1.0 / _MAX_PIXEL_ASPECT <= ratio <= _MAX_PIXEL_ASPECT:
        raise SceneError(
            f"fy / fx = {ratio:g} is beyond Blender's pixel aspect limit of {_MAX_PIXEL_ASPECT:g}", where=where
        )
    if np.linalg.det(camera.transform[:3, :3]) < 0:
        raise SceneError("transform mirrors (negative determinant); a camera cannot", where=where)


def _rotation_translation(camera: Camera) -> Matrix:
    """The camera-to-world matrix with any scale removed (unit-length axes)."""
    matrix = np.array(camera.transform, dtype=np.float64)
    matrix[:3, :3] /= np.linalg.norm(matrix[:3, :3], axis=0, keepdims=True)
    return Matrix(matrix.tolist())


class _Overrides:
    """Sets attributes and remembers the first old value of each, to put them all back."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []
        self._seen: set[tuple[int, str]] = set()

    def save(self, owner: Any, *attrs: str) -> None:
        """Remember the current values of ``attrs`` (before setting one changes another)."""
        for attr in attrs:
            key = (owner.as_pointer(), attr)
            if key not in self._seen and hasattr(owner, attr):
                self._seen.add(key)
                self._saved.append((owner, attr, getattr(owner, attr)))

    def set(self, owner: Any, attr: str, value: Any) -> None:
        self.save(owner, attr)
        setattr(owner, attr, value)

    def restore(self) -> None:
        """Put the old values back in the order they were first set (a file format before its depth)."""
        for owner, attr, old in self._saved:
            try:
                if getattr(owner, attr) != old:
                    setattr(owner, attr, old)
            except (AttributeError, TypeError, ValueError, ReferenceError) as exc:
                _LOG.warning("could not restore %s.%s to %r: %s", owner, attr, old, exc)
        self._saved.clear()
        self._seen.clear()


def _set_intrinsics(data: bpy.types.Camera, render: Any, camera: Camera, overrides: _Overrides) -> None:
    """Blender camera data and render resolution that reproduce ``camera``'s pinhole exactly.

    With sensor_fit HORIZONTAL Blender's view plane is ``sensor_width / lens`` wide over the
    image width, so ``fx = lens · width / sensor_width`` whatever the pixel aspect; a pixel is
    ``pixel_aspect_y / pixel_aspect_x`` times as tall as wide, so ``fy = fx · ax / ay``. Lens
    shift moves the view plane in units of its width: the principal point sits ``shift_x ·
    width`` left of the centre and ``shift_y · width · ax / ay`` rows below it.
    """
    width, height = camera.width, camera.height
    data.type = "PERSP"
    data.sensor_fit = "HORIZONTAL"
    sensor = _SENSOR_WIDTH_MM
    lens = camera.fx * sensor / width
    if lens < 1.0:  # Blender's minimum focal length: widen the sensor instead (very wide views)
        lens, sensor = 1.0, width / camera.fx
    data.sensor_width = sensor
    data.lens = lens
    ratio = camera.fy / camera.fx  # pixel_aspect_x / pixel_aspect_y
    data.shift_x = (0.5 * width - camera.cx) / width
    data.shift_y = (camera.cy - 0.5 * height) / (width * ratio)
    data.clip_start = camera.near
    data.clip_end = camera.far
    data.dof.use_dof = False
    overrides.set(render, "resolution_x", width)
    overrides.set(render, "resolution_y", height)
    overrides.set(render, "resolution_percentage", 100)
    overrides.set(render, "pixel_aspect_x", ratio if ratio >= 1.0 else 1.0)
    overrides.set(render, "pixel_aspect_y", 1.0 if ratio >= 1.0 else 1.0 / ratio)


def _set_render_settings(scene: bpy.types.Scene, settings: RenderSettings, path: str, overrides: _Overrides) -> None:
    render = scene.render
    overrides.set(render, "engine", "CYCLES")
    overrides.set(render, "film_transparent", settings.film_transparent)
    overrides.set(render, "use_border", False)
    overrides.set(render, "use_motion_blur", False)
    overrides.set(render, "use_multiview", False)
    overrides.set(render, "use_compositing", False)
    overrides.set(render, "use_sequencer", False)
    overrides.set(render, "filepath", path)
    overrides.set(render, "use_file_extension", True)
    image = render.image_settings
    # a file format changes the depth and mode it allows: remember them all before the first change
    overrides.save(image, "media_type", "file_format", "color_mode", "color_depth", "exr_codec", "color_management")
    if hasattr(image, "media_type"):  # Blender 5.0: the file format list depends on the media type
        overrides.set(image, "media_type", "IMAGE")
    overrides.set(image, "file_format", "OPEN_EXR")
    overrides.set(image, "color_mode", "RGBA")
    overrides.set(image, "color_depth", "32")
    overrides.set(image, "exr_codec", "NONE")
    overrides.set(image, "color_management", "FOLLOW_SCENE")
    cycles = scene.cycles
    overrides.set(cycles, "device", settings.device)
    overrides.set(cycles, "samples", settings.samples)
    overrides.set(cycles, "use_adaptive_sampling", settings.adaptive_sampling)
    overrides.set(cycles, "time_limit", 0.0)
    overrides.set(cycles, "max_bounces", settings.max_bounces)
    overrides.set(cycles, "use_denoising", settings.denoise)
    overrides.set(cycles, "seed", settings.seed)
    overrides.set(cycles, "use_animated_seed", False)
    overrides.set(cycles, "pixel_filter_type", "BLACKMAN_HARRIS")
    overrides.set(cycles, "filter_width", settings.filter_width)
    overrides.set(cycles, "film_exposure", float(2.0**settings.exposure))
    for attr in ("use_sample_subset",):
        if hasattr(cycles, attr):
            overrides.set(cycles, attr, False)


def _view_layer(scene: bpy.types.Scene) -> str:
    """The view layer to render: the context's when ``scene`` is the context scene, else the first in use."""
    context = bpy.context
    if context.scene == scene and getattr(context, "view_layer", None) is not None:
        return context.view_layer.name
    return next((layer.name for layer in scene.view_layers if layer.use), scene.view_layers[0].name)


def _render_results() -> set[int]:
    return {image.as_pointer() for image in bpy.data.images if image.type == "RENDER_RESULT"}


def _read_exr(path: str, width: int, height: int) -> np.ndarray:
    """Pixels of an RGBA OpenEXR file as (H, W, 4) float32, row 0 at the top."""
    image = bpy.data.images.load(path, check_existing=False)
    try:
        if tuple(image.size) != (width, height) or image.channels != 4:
            raise RuntimeError(
                f"Blender wrote a {tuple(image.size)} image with {image.channels} channels, "
                f"expected {width}×{height} RGBA"
            )
        flat = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(flat)
    finally:
        bpy.data.images.remove(image)
    return np.ascontiguousarray(flat.reshape(height, width, 4)[::-1])  # Blender stores the bottom row first


def _render_one(scene: bpy.types.Scene, camera: Camera, settings: RenderSettings) -> RenderedView:
    """Render ``camera`` and put everything back, even on error."""
    start = time.perf_counter()
    overrides = _Overrides()
    before = _render_results()
    folder = tempfile.mkdtemp(prefix="optimizer-view-")
    data = bpy.data.cameras.new("optimizer_view")
    obj: bpy.types.Object | None = None
    try:
        obj = bpy.data.objects.new("optimizer_view", data)
        scene.collection.objects.link(obj)
        obj.matrix_world = _rotation_translation(camera)
        _set_intrinsics(data, scene.render, camera, overrides)
        _set_render_settings(scene, settings, os.path.join(folder, "view"), overrides)
        overrides.set(scene, "camera", obj)
        result = bpy.ops.render.render(write_still=True, scene=scene.name, layer=_view_layer(scene))
        if "FINISHED" not in result:
            raise RuntimeError(f"camera '{camera.name}': Cycles did not finish the render ({', '.join(result)})")
        written = glob.glob(os.path.join(folder, "*.exr"))
        if len(written) != 1:
            raise RuntimeError(f"camera '{camera.name}': expected one OpenEXR file from the render, found {written}")
        rgba = _read_exr(written[0], camera.width, camera.height)
    finally:
        overrides.restore()
        if obj is not None:
            bpy.data.objects.remove(obj, do_unlink=True)
        bpy.data.cameras.remove(data)
        for image in list(bpy.data.images):  # the first render of a session creates "Render Result"
            if image.type == "RENDER_RESULT" and image.as_pointer() not in before:
                with contextlib.suppress(RuntimeError, ReferenceError):
                    bpy.data.images.remove(image)
        shutil.rmtree(folder, ignore_errors=True)
    rgba.flags.writeable = False
    return RenderedView(camera=camera, rgba=rgba, seconds=time.perf_counter() - start)
