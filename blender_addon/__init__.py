"""Optimizer for Blender: analyse the scene, route it (bake / splat / keep live), optimize it.

A thin client in the style of Flamenco's add-on: analysis and routing run in process (they are
numpy-only), everything heavy goes to the local engine node over HTTP from a worker thread, and
results reach Blender's main thread through a queue drained by a modal operator.
"""

from __future__ import annotations

import bpy

from . import engine_link, operators, panel, properties

_CLASSES = (
    properties.OptimizerPreferences,
    properties.OptimizerObjectRoute,
    properties.OptimizerSceneState,
    operators.OPTIMIZER_OT_analyze,
    operators.OPTIMIZER_OT_optimize,
    operators.OPTIMIZER_OT_cancel,
    operators.OPTIMIZER_OT_clear,
    operators.OPTIMIZER_OT_apply_bake,
    operators.OPTIMIZER_OT_restore_materials,
    operators.OPTIMIZER_OT_import_splat,
    operators.OPTIMIZER_OT_open_report,
    panel.OPTIMIZER_UL_routes,
    panel.VIEW3D_PT_optimizer,
    panel.VIEW3D_PT_optimizer_results,
    panel.VIEW3D_PT_optimizer_bake,
    panel.VIEW3D_PT_optimizer_splat,
)

_cli_handle = None


def register() -> None:
    global _cli_handle
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.optimizer = bpy.props.PointerProperty(type=properties.OptimizerSceneState)
    if hasattr(bpy.utils, "register_cli_command"):  # Blender 4.2+
        from . import batch

        _cli_handle = bpy.utils.register_cli_command("optimizer", batch.cli_command)


def unregister() -> None:
    global _cli_handle
    engine_link.stop_all()
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    del bpy.types.Scene.optimizer
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
