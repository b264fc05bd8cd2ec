"""Reference views made elsewhere (the Blender add-on renders them with Cycles), as a wire type.

A client plans the rig (:func:`engine.splat.rig.plan_rig`), renders its cameras, and uploads
:class:`ReferenceViews` to the node (``POST /v1/views``); a ``splat`` job then names them in
``options.references`` and trains on them instead of rendering its own. numpy only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import SceneError
from engine.scene.wire import register


@register
@dataclass(frozen=True, eq=False)
class ReferenceViews:
    """``rgba`` (C, H, W, 4) float16 linear radiance, premultiplied alpha (row 0 at the top), seen
    by the cameras of ``rig_json`` (:meth:`engine.splat.rig.CameraRig.to_dict` as JSON);
    ``source`` says what rendered them."""

    rig_json: str
    rgba: np.ndarray
    source: str = "cycles"

    def __post_init__(self) -> None:
        where = "reference views"
        rig = self.rig
        rgba = np.asarray(self.rgba)
        if rgba.dtype != np.float16:
            rgba = rgba.astype(np.float16)
        expected = (rig.count, rig.height, rig.width, 4)
        if rgba.shape != expected:
            raise SceneError(f"rgba has shape {rgba.shape}, expected {expected} from the rig", where=where)
        if not np.isfinite(rgba).all() or (rgba < 0).any():
            raise SceneError("rgba has negative, NaN or inf values", where=where)
        if (rgba[..., 3] > 1.001).any():
            raise SceneError("alpha above 1", where=where)
        rgba = np.ascontiguousarray(rgba)
        rgba.flags.writeable = False
        object.__setattr__(self, "rgba", rgba)

    @property
    def rig(self) -> Any:
        """The :class:`engine.splat.rig.CameraRig` the views were rendered with."""
        from engine.splat.rig import CameraRig

        try:
            return CameraRig.from_dict(json.loads(self.rig_json))
        except (ValueError, KeyError, TypeError) as exc:
            raise SceneError(f"the rig is not readable ({exc})", where="reference views") from None

    @classmethod
    def from_views(cls, rig: Any, rgba: np.ndarray, source: str = "cycles") -> ReferenceViews:
        """Build from a rig and its rendered (C, H, W, 4) premultiplied linear RGBA."""
        return cls(json.dumps(rig.to_dict()), np.asarray(rgba, np.float32).astype(np.float16), source)
