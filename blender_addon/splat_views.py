"""Reference views for a splat job rendered here with Cycles (the engine trains on them).

The rig is planned from the bounds of the objects to splat (:func:`engine.splat.rig.plan_rig`,
numpy only) and its cameras are rendered by :mod:`.render_views`. While the views render, every
other mesh object is hidden from rendering (``hide_render``, put back afterwards), so a splat of
a few objects shows only them, lit by the whole scene's lights and world. The result is
uploaded as :class:`engine.splat.references.ReferenceViews` and named by the job.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from engine.errors import InputError

from .render_views import RenderSettings, ViewRenderJob


def splat_bounds(scene: Any, names: Iterable[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """World bounds of the visible, static objects of an engine Scene (all, or those named)."""
    wanted = None if names is None else set(names)
    points = []
    for obj in scene.objects:
        if not obj.visible or obj.animated or (wanted is not None and obj.name not in wanted):
            continue
        m = np.asarray(obj.transform, np.float64)
        points.append(obj.positions.astype(np.float64) @ m[:3, :3].T + m[:3, 3])
    if not points:
        raise InputError("nothing to splat: no visible, static object", where=scene.name,
                         hint="route some objects to splat, or make them visible")
    stacked = np.concatenate(points)
    return stacked.min(axis=0), stacked.max(axis=0)


def plan_views(scene: Any, names: Sequence[str] | None, *, views: int, resolution: int, kind: str = "object") -> Any:
    """The rig for the objects' bounds (object rig unless ``kind`` says interior)."""
    from engine.splat.rig import plan_rig

    lo, hi = splat_bounds(scene, names)
    return plan_rig(lo, hi, kind=kind, views=views, width=resolution, enclosed=kind == "interior")


class ReferenceRender:
    """Renders a rig's views one per :meth:`step` with the other objects hidden; :meth:`finish`
    puts them back and returns the ReferenceViews (call :meth:`close` on errors or cancel)."""

    def __init__(self, context: Any, rig: Any, names: Sequence[str] | None, samples: int = 32) -> None:
        self.rig = rig
        self._hidden: list[Any] = []
        if names is not None:
            keep = set(names)
            for obj in context.scene.objects:
                if obj.type in ("MESH", "CURVE", "SURFACE", "FONT", "META") and obj.name not in keep \
                        and not obj.hide_render:
                    obj.hide_render = True
                    self._hidden.append(obj)
        self.job = ViewRenderJob(rig.cameras(), scene=context.scene,
                                 settings=RenderSettings(samples=samples, film_transparent=True))

    @property
    def fraction(self) -> float:
        return self.job.fraction

    def step(self) -> bool:
        """Render the next view; False once all are rendered."""
        return self.job.step()

    def close(self) -> None:
        """Show the hidden objects again (idempotent)."""
        for obj in self._hidden:
            with contextlib.suppress(ReferenceError):  # deleted meanwhile
                obj.hide_render = False
        self._hidden.clear()

    def finish(self) -> Any:
        from engine.splat.references import ReferenceViews

        self.close()
        results = self.job.results
        if len(results) != self.rig.count:
            raise InputError(f"only {len(results)} of {self.rig.count} reference views were rendered",
                             where="splat reference views")
        rgba = np.stack([view.rgba for view in results])
        return ReferenceViews.from_views(self.rig, rgba, source="cycles")


    def run(self) -> Any:
        """Render every view now (blocking: background mode) and return the ReferenceViews."""
        try:
            while self.step():
                pass
            return self.finish()
        finally:
            self.close()
