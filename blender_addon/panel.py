"""The Optimizer panel in the 3D viewport's sidebar (N panel, "Optimizer" tab)."""

from __future__ import annotations

from typing import Any

import bpy


class OPTIMIZER_UL_routes(bpy.types.UIList):
    """Objects with their analysed route and the artist's override."""

    def draw_item(self, context: bpy.types.Context, layout: Any, data: Any, item: Any, icon: Any,
                  active_data: Any, active_property: str, index: int = 0, flt_flag: int = 0) -> None:
        row = layout.row(align=True)
        row.label(text=item.name, icon="OBJECT_DATA")
        route = item.route if item.override == "AUTO" else f"{item.override.lower()}*"
        row.label(text=route)
        row.prop(item, "override", text="")


class _SidebarPanel:
    """Where every Optimizer panel lives: the 3D viewport's sidebar, "Optimizer" tab."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Optimizer"


class VIEW3D_PT_optimizer(_SidebarPanel, bpy.types.Panel):
    bl_label = "Optimizer"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        state = context.scene.optimizer
        row = layout.row(align=True)
        row.operator("optimizer.analyze", icon="VIEWZOOM")
        row.prop(state, "selected_only", text="", icon="RESTRICT_SELECT_OFF")
        result = state.result()
        if result is None:
            layout.label(text="Analyze to see how the scene will be optimized.")
            return
        features, plan = result["features"], result["plan"]
        box = layout.box()
        box.label(text=f"Pipeline: {plan['pipeline'].upper()}", icon="NODETREE")
        for reason in plan["reasons"]:
            box.label(text=reason)
        col = layout.column(align=True)
        col.label(text=f"Complexity {result['complexity']:.2f}")
        for name, term in result["complexity_terms"].items():
            if term["contribution"] > 0.005:
                col.label(text=f"  {name}: +{term['contribution']:.2f} ({term['explanation']})")
        size = features.get("bounding_size_m")
        col.label(text=f"{features['triangles']:,} triangles, {features['object_count']} objects"
                       + (f", {size:.3g} m across" if size else ""))
        layout.label(text="Routes (override per object):")
        layout.template_list("OPTIMIZER_UL_routes", "", state, "routes", state, "routes_index", rows=4)
        if 0 <= state.routes_index < len(state.routes):
            item = state.routes[state.routes_index]
            layout.label(text=item.reasons, icon="INFO")
        if result["warnings"]:
            layout.label(text=f"{len(result['warnings'])} warning(s): {result['warnings'][0]}", icon="ERROR")
        row = layout.row(align=True)
        row.scale_y = 1.4
        if state.running:
            row.operator("optimizer.cancel", icon="CANCEL")
        else:
            row.operator("optimizer.optimize", icon="PLAY").kind = "optimize"
        row.prop(state, "preview_quality", text="", icon="TIME")
        row.operator("optimizer.clear", text="", icon="X")
        if state.status:
            layout.label(text=state.status)
        if state.report_path:
            layout.operator("optimizer.open_report", icon="URL")


class VIEW3D_PT_optimizer_bake(_SidebarPanel, bpy.types.Panel):
    bl_label = "Lightmaps"
    bl_parent_id = "VIEW3D_PT_optimizer"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        state = context.scene.optimizer
        col = layout.column(align=True)
        col.prop(state, "bake_samples")
        col.prop(state, "bake_bounces")
        col.prop(state, "bake_texels_per_metre")
        col.prop(state, "bake_atlas_size")
        row = layout.row(align=True)
        row.enabled = not state.running
        row.operator("optimizer.optimize", text="Bake Lighting", icon="LIGHT_SUN").kind = "bake"
        row = layout.row(align=True)
        row.operator("optimizer.apply_bake", icon="IMPORT")
        row.operator("optimizer.restore_materials", icon="LOOP_BACK")


class VIEW3D_PT_optimizer_splat(_SidebarPanel, bpy.types.Panel):
    bl_label = "Gaussian splats"
    bl_parent_id = "VIEW3D_PT_optimizer"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        state = context.scene.optimizer
        col = layout.column(align=True)
        col.prop(state, "splat_steps")
        col.prop(state, "splat_views")
        col.prop(state, "splat_resolution")
        col.prop(state, "splat_rig")
        col.prop(state, "splat_cycles_views")
        if state.splat_cycles_views:
            col.prop(state, "splat_samples")
        row = layout.row(align=True)
        row.enabled = not state.running
        row.operator("optimizer.optimize", text="Train Splat", icon="POINTCLOUD_DATA").kind = "splat"
        layout.operator("optimizer.import_splat", icon="IMPORT")


class VIEW3D_PT_optimizer_results(_SidebarPanel, bpy.types.Panel):
    bl_label = "Job and results"
    bl_parent_id = "VIEW3D_PT_optimizer"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(context.scene.optimizer.job_id)

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        state = context.scene.optimizer
        layout.label(text=f"Job {state.job_id[:12]}: {state.job_state}")
        if hasattr(layout, "progress"):  # Blender 4.0+
            layout.progress(factor=state.job_progress, type="BAR", text=f"{state.job_stage} {state.job_progress:.0%}")
        else:
            layout.prop(state, "job_progress", text=state.job_stage)
        if state.job_messages:
            layout.label(text=state.job_messages)
        if state.job_artifacts:
            layout.label(text=f"Results: {state.job_artifacts}", icon="FILE")
