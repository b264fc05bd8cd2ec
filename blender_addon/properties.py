"""Add-on preferences and the per-scene state the panel shows."""

from __future__ import annotations

import json
import os
from typing import Any

import bpy

DEFAULT_URL = "http://127.0.0.1:8770"
ROUTE_ITEMS = [
    ("AUTO", "Auto", "Use the route the analysis chose"),
    ("BAKE", "Bake", "Bake lightmaps for this object"),
    ("SPLAT", "Splat", "Turn this object into Gaussian splats"),
    ("KEEP", "Keep live", "Leave this object as it is (animated, or kept by choice)"),
]


def addon_package() -> str:
    """The add-on's package name (``bl_ext.<repo>.optimizer`` as an extension)."""
    return __package__ or "blender_addon"


def preferences(context: bpy.types.Context | None = None) -> Any:
    """This add-on's preferences, or None when it runs outside Blender's add-on system (batch)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(addon_package())
    return addon.preferences if addon is not None else None


def engine_settings(context: bpy.types.Context | None = None) -> tuple[str, str, str]:
    """(engine URL, token, start command): the preferences, or the environment when the add-on
    runs outside Blender's add-on system (`python -m blender_addon.batch`, scripts)."""
    prefs = preferences(context)
    if prefs is not None:
        return prefs.engine_url, prefs.token, prefs.start_command
    return os.environ.get("OPTIMIZER_URL", DEFAULT_URL), os.environ.get("OPTIMIZER_TOKEN", ""), ""


class OptimizerPreferences(bpy.types.AddonPreferences):
    bl_idname = addon_package()

    engine_url: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Engine URL", default="http://127.0.0.1:8770",
        description="Where the Optimizer engine node listens (`optimizer serve`)")
    token: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Token", default="", subtype="PASSWORD",
        description="Bearer token of the engine; empty reads the token file the engine wrote")
    start_command: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Start command", default="",
        description="Command that starts the local engine when it is not running, e.g. `optimizer serve`")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "engine_url")
        layout.prop(self, "token")
        layout.prop(self, "start_command")


class OptimizerObjectRoute(bpy.types.PropertyGroup):
    """One object's route as analysed, and the artist's override."""

    route: bpy.props.StringProperty(name="Route")  # type: ignore[valid-type]
    reasons: bpy.props.StringProperty(name="Why")  # type: ignore[valid-type]
    triangles: bpy.props.IntProperty(name="Triangles")  # type: ignore[valid-type]
    override: bpy.props.EnumProperty(name="Override", items=ROUTE_ITEMS, default="AUTO")  # type: ignore[valid-type]


class OptimizerSceneState(bpy.types.PropertyGroup):
    """What the panel shows: the last analysis, the routes, and the running job."""

    selected_only: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Selected only", default=False, description="Analyse and optimize only the selected objects")
    result_json: bpy.props.StringProperty(name="Analysis", default="")  # type: ignore[valid-type]
    routes: bpy.props.CollectionProperty(type=OptimizerObjectRoute)  # type: ignore[valid-type]
    routes_index: bpy.props.IntProperty(default=0)  # type: ignore[valid-type]
    status: bpy.props.StringProperty(name="Status", default="")  # type: ignore[valid-type]
    job_id: bpy.props.StringProperty(name="Job", default="")  # type: ignore[valid-type]
    job_state: bpy.props.StringProperty(name="State", default="")  # type: ignore[valid-type]
    job_stage: bpy.props.StringProperty(name="Stage", default="")  # type: ignore[valid-type]
    job_progress: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    job_messages: bpy.props.StringProperty(name="Messages", default="")  # type: ignore[valid-type]
    job_artifacts: bpy.props.StringProperty(name="Artifacts", default="")  # type: ignore[valid-type]
    running: bpy.props.BoolProperty(default=False)  # type: ignore[valid-type]
    job_kind: bpy.props.StringProperty(name="Job kind", default="")  # type: ignore[valid-type]
    bake_samples: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Samples", default=64, min=1, max=65536, description="Light samples per lightmap texel")
    bake_bounces: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Bounces", default=3, min=0, max=16, description="Indirect diffuse bounces")
    bake_texels_per_metre: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Texels per metre", default=0.0, min=0.0, max=10000.0,
        description="Lightmap density; 0 adapts it to the scene's size so the atlas budget holds")
    bake_atlas_size: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Atlas size", default="1024",
        items=[(str(n), f"{n}²", f"Lightmap atlases of {n}×{n} texels") for n in (512, 1024, 2048, 4096, 8192)])

    splat_steps: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Steps", default=3000, min=1, max=1_000_000, description="Training steps")
    splat_views: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Views", default=64, min=2, max=10_000, description="Reference views (every 8th held out)")
    splat_resolution: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Resolution", default=128, min=16, max=4096, description="View width and height in pixels")

    splat_cycles_views: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Cycles reference views", default=True,
        description="Render the reference views here with Cycles (else the engine path-traces them itself)")
    splat_samples: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="View samples", default=32, min=1, max=65536, description="Cycles samples per reference view pixel")
    splat_rig: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Cameras", default="object",
        items=[("object", "Around", "Cameras on a sphere around the objects"),
               ("interior", "Inside", "Cameras inside the objects' bounds looking around (rooms)")])

    def splat_params(self) -> dict[str, Any]:
        """The splat settings the `splat` job kind takes (``options.params``); the objects routed
        to splat (analysis and overrides) when there are any."""
        params: dict[str, Any] = {"steps": self.splat_steps, "views": self.splat_views,
                                  "resolution": self.splat_resolution, "rig": self.splat_rig}
        result = self.result()
        if result is not None:
            overrides = self.overrides()
            routed = [name for name, entry in result["plan"]["objects"].items()
                      if overrides.get(name, entry["route"]) == "splat"]
            if routed:
                params["objects"] = routed
        return params

    report_path: bpy.props.StringProperty(name="Report", default="", subtype="FILE_PATH")  # type: ignore[valid-type]
    preview_quality: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Preview quality", default=False,
        description="Quick settings and relaxed quality targets (a CPU preview); off: the production targets")

    def optimize_params(self) -> dict[str, Any]:
        """The `optimize` job's settings (``options.params``): the bake and splat panels' settings and,
        with Preview quality, the demo's quick settings and relaxed targets."""
        bake = self.bake_params()
        splat = {k: v for k, v in self.splat_params().items() if k != "objects"}
        params: dict[str, Any] = {"bake": bake, "splat": splat}
        if self.preview_quality:
            from engine.cli import DEMO_SETTINGS

            params = {"bake": {**bake, **DEMO_SETTINGS["bake"]}, "splat": {**splat, **DEMO_SETTINGS["splat"]},
                      "quality": dict(DEMO_SETTINGS["quality"])}
        return params

    def bake_params(self) -> dict[str, Any]:
        """The bake settings the `bake` job kind takes (``options.params``)."""
        params: dict[str, Any] = {"samples": self.bake_samples, "bounces": self.bake_bounces,
                                  "atlas_size": int(self.bake_atlas_size)}
        if self.bake_texels_per_metre > 0:
            params["texels_per_metre"] = self.bake_texels_per_metre
        return params

    def result(self) -> dict[str, Any] | None:
        """The last analysis as a dict (None before the first Analyze)."""
        if not self.result_json:
            return None
        try:
            return json.loads(self.result_json)
        except ValueError:
            return None

    def overrides(self) -> dict[str, str]:
        """Routes the artist set by hand: object name → bake | splat | keep."""
        return {item.name: item.override.lower() for item in self.routes if item.override != "AUTO"}
