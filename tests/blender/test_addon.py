"""The add-on as an artist gets it: built zip installed as an extension in real Blender (bpy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("bpy", reason="bpy==5.0.1 (dev extra) runs only on Python 3.11")

ROOT = Path(__file__).resolve().parents[2]


def blender_python(code: str, tmp_path: Path, *, timeout: float = 300,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python with bpy and a throwaway Blender user folder."""
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender_user"),
           "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=timeout)


BUILD_SCENE = '''
import bpy, numpy as np
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
# a static box (bake), a leaf card plane with an alpha-cut texture copied many times (splat), an animated cube (keep)
bpy.ops.mesh.primitive_cube_add(size=2, location=(0, 0, 1))
bpy.context.object.name = "Crate"
image = bpy.data.images.new("leaf", 8, 8, alpha=True)
pixels = np.ones((8, 8, 4), np.float32); pixels[:, :4, 3] = 0.0
image.pixels.foreach_set(pixels.ravel())
image.pack()  # generated pixels must survive saving the .blend
leaf = bpy.data.materials.new("Leaf"); leaf.use_nodes = True
bsdf = leaf.node_tree.nodes["Principled BSDF"]
tex = leaf.node_tree.nodes.new("ShaderNodeTexImage"); tex.image = image
leaf.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
leaf.node_tree.links.new(tex.outputs["Alpha"], bsdf.inputs["Alpha"])
if hasattr(leaf, "blend_method"):
    leaf.blend_method = "CLIP"
bpy.ops.mesh.primitive_plane_add(size=0.3, location=(4, 0, 1))
plant = bpy.context.object; plant.name = "Plant"; plant.data.materials.append(leaf)
bpy.ops.mesh.primitive_cube_add(size=1, location=(-4, 0, 1))
fan = bpy.context.object; fan.name = "Fan"
fan.keyframe_insert("rotation_euler", frame=1); fan.rotation_euler[2] = 3.0; fan.keyframe_insert("rotation_euler", frame=50)
bpy.ops.object.light_add(type="AREA", location=(0, 0, 4)); bpy.context.object.data.energy = 300
bpy.ops.wm.save_as_mainfile(filepath="scene.blend")
bpy.ops.export_scene.gltf(filepath="scene.glb", export_format="GLB", export_animations=True)
'''


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    wheels = ROOT / ".wheels"
    command = [sys.executable, str(ROOT / "build_addon.py"), "--out", str(out), "--platform", "linux-x64"]
    if wheels.is_dir():
        command += ["--wheels-from", str(wheels)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "validated with Blender's validator" in result.stdout
    return out / "optimizer-0.1.0-linux-x64.zip"


def test_build_makes_validated_zips_for_every_platform(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "build_addon.py"), "--out", str(tmp_path)]
    if (ROOT / ".wheels").is_dir():
        command += ["--wheels-from", str(ROOT / ".wheels")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in tmp_path.glob("*.zip"))
    assert names == ["optimizer-0.1.0-linux-x64.zip", "optimizer-0.1.0-macos-arm64.zip",
                     "optimizer-0.1.0-windows-x64.zip"]


def test_installed_extension_analyze_matches_the_cli(built_zip: Path, tmp_path: Path) -> None:
    made = blender_python(BUILD_SCENE, tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    code = f'''
    import bpy, json, sys
    bpy.ops.extensions.package_install_files(filepath={str(built_zip)!r}, repo="user_default", enable_on_install=True)
    assert hasattr(bpy.ops.optimizer, "analyze"), "the add-on did not register"
    bpy.ops.wm.open_mainfile(filepath="scene.blend")
    assert bpy.ops.optimizer.analyze() == {{"FINISHED"}}
    result = bpy.context.scene.optimizer.result()
    print("RESULT" + json.dumps(result))
    '''
    run = blender_python(code, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    # Blender installed the bundled light engine wheel for the extension
    installed = list((tmp_path / "blender_user").rglob("optimizer_engine_light-*.dist-info"))
    assert installed, "the engine wheel was not installed with the extension"
    assert (installed[0].parent / "engine" / "scene" / "model.py").is_file()
    blender = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT"))[6:])
    cli = subprocess.run([sys.executable, "-m", "engine.cli", "analyze", str(tmp_path / "scene.glb"), "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    assert blender["plan"]["pipeline"] == expected["plan"]["pipeline"] == "hybrid"
    routes = {name: entry["route"] for name, entry in blender["plan"]["objects"].items()}
    assert routes == {name: entry["route"] for name, entry in expected["plan"]["objects"].items()}
    assert routes == {"Crate": "bake", "Plant": "splat", "Fan": "keep"}


def test_register_and_unregister_leave_nothing_behind(tmp_path: Path) -> None:
    code = '''
    import bpy, blender_addon
    before_types = set(dir(bpy.types))
    blender_addon.register()
    assert hasattr(bpy.types.Scene, "optimizer") and hasattr(bpy.ops.optimizer, "analyze")
    assert "VIEW3D_PT_optimizer" in dir(bpy.types)
    blender_addon.unregister()
    assert not hasattr(bpy.types.Scene, "optimizer")
    assert set(dir(bpy.types)) == before_types, set(dir(bpy.types)) ^ before_types
    blender_addon.register(); blender_addon.unregister()  # again: no leftovers block a second round
    print("OK")
    '''
    run = blender_python(code, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "OK" in run.stdout


def test_batch_analyze_prints_the_cli_contract(tmp_path: Path) -> None:
    made = blender_python(BUILD_SCENE, tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BLENDER_USER_RESOURCES": str(tmp_path / "blender_user")}

    def batch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "blender_addon.batch", *args], capture_output=True, text=True,
                              cwd=ROOT, env=env, timeout=300)

    result = batch(str(tmp_path / "scene.blend"), "analyze", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert data["plan"]["pipeline"] == "hybrid"
    assert {"features", "complexity", "plan", "timings_ms"} <= set(data)
    assert set(data["timings_ms"]) >= {"analyze", "route"}
    table = batch(str(tmp_path / "scene.blend"), "analyze")
    assert table.returncode == 0 and "Pipeline: HYBRID" in table.stdout
    missing = batch(str(tmp_path / "nope.blend"), "analyze")
    assert missing.returncode == 2 and "nope.blend" in missing.stderr and "Traceback" not in missing.stderr
    usage = batch(str(tmp_path / "scene.blend"), "teleport")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
    not_blend = tmp_path / "fake.blend"
    not_blend.write_text("hello")
    broken = batch(str(not_blend), "analyze")
    assert broken.returncode == 2 and "fake.blend" in broken.stderr
    offline = batch(str(tmp_path / "scene.blend"), "optimize", "--url", "http://127.0.0.1:9")
    assert offline.returncode == 1 and "no engine answers" in offline.stderr


def test_optimize_reports_unreachable_engine_and_bad_token(tmp_path: Path) -> None:
    from tests.service.conftest import NodeProcess, free_port

    node = NodeProcess(tmp_path / "data", tmp_path / "config", free_port(), ["--workers", "1"]).start()
    code = f'''
    import bpy, blender_addon
    from blender_addon import engine_link
    from engine.client import EngineAuthError
    blender_addon.register()
    client = engine_link.make_client("http://127.0.0.1:9")
    try:
        engine_link.ensure_engine(client)
    except engine_link.EngineLinkError as exc:
        print("UNREACHABLE", exc)
    try:
        engine_link.make_client("http://192.0.2.1:8770", online_access=False)
    except engine_link.EngineLinkError as exc:
        print("OFFLINE", exc)
    wrong = engine_link.make_client("{node.url}", "wrong-token")
    print("HEALTH", engine_link.ensure_engine(wrong)["status"])
    try:
        wrong.jobs()
    except EngineAuthError as exc:
        print("TOKEN", exc)
    blender_addon.unregister()
    '''
    try:
        run = blender_python(code, tmp_path)
    finally:
        node.stop()
    assert run.returncode == 0, run.stderr[-3000:]
    assert "UNREACHABLE no engine answers at http://127.0.0.1:9" in run.stdout
    assert "OFFLINE" in run.stdout and "online access is off" in run.stdout
    assert "HEALTH ok" in run.stdout and "TOKEN" in run.stdout and "wrong bearer token" in run.stdout


def test_optimize_through_a_real_engine_and_the_start_command(tmp_path: Path) -> None:
    """Optimize in background mode, the worker-thread relay, and starting the engine on demand."""
    from tests.service.conftest import NodeProcess, free_port

    made = blender_python(BUILD_SCENE, tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    node = NodeProcess(tmp_path / "data", tmp_path / "config", free_port(), ["--workers", "1"]).start()
    spare_port = free_port()
    start_command = f"{sys.executable} -m engine.cli serve --port {spare_port} --data {tmp_path / 'data2'}"
    code = f'''
    import bpy, time, blender_addon
    from blender_addon import engine_link
    from blender_addon.snapshot import snapshot_scene
    blender_addon.register()
    bpy.ops.wm.open_mainfile(filepath="scene.blend")
    state = bpy.context.scene.optimizer
    bpy.ops.optimizer.analyze()
    state.routes["Plant"].override = "BAKE"
    import os
    os.environ["OPTIMIZER_URL"] = "{node.url}"  # no add-on preferences outside the extension system
    # background mode: Optimize submits and waits in this thread
    assert bpy.ops.optimizer.optimize(kind="analyze") == {{"FINISHED"}}, state.status
    print("STATE", state.job_state, state.job_artifacts)
    print("PIPELINE", state.result()["plan"]["pipeline"], state.result()["plan"]["objects"]["Plant"]["route"])
    # the UI path: a worker thread relays the job through a queue the main thread drains
    client = engine_link.make_client("{node.url}", "")
    scene = snapshot_scene(bpy.context)
    worker = engine_link.start(lambda w: engine_link.submit_and_follow(client, scene, {{}}, w))
    kinds = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "done" not in kinds and "error" not in kinds:
        kinds += [u.kind for u in worker.drain()]
        time.sleep(0.05)
    print("KINDS", sorted(set(kinds)))
    # no engine at the spare port: the start command brings one up
    spare = engine_link.make_client("http://127.0.0.1:{spare_port}", "")
    print("STARTED", engine_link.ensure_engine(spare, "{start_command}", wait=30)["status"])
    blender_addon.unregister()
    '''
    try:
        run = blender_python(code, tmp_path, env={"OPTIMIZER_CONFIG_DIR": str(node.config)})
    finally:
        node.stop()
        subprocess.run(["pkill", "-f", f"serve --port {spare_port}"], check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "STATE done analysis.json, analysis.optw" in run.stdout
    assert "PIPELINE bake bake" in run.stdout  # the artist's override reached the engine's plan
    assert "KINDS ['done', 'job', 'progress']" in run.stdout
    assert "STARTED ok" in run.stdout


def test_blender_command_line_entry(tmp_path: Path) -> None:
    """What `blender -b scene.blend --command optimizer analyze --json` runs, called as Blender would."""
    made = blender_python(BUILD_SCENE, tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    code = '''
    import bpy, blender_addon
    from blender_addon import batch
    blender_addon.register()
    bpy.ops.wm.open_mainfile(filepath="scene.blend")
    print("EXIT", batch.cli_command(["analyze", "--json"]))
    print("EXIT", batch.cli_command(["analyze", "--mode", "galaxy"]))
    blender_addon.unregister()
    '''
    run = blender_python(code, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    json_line = next(line for line in run.stdout.splitlines() if line.startswith("{"))
    assert json.loads(json_line)["plan"]["pipeline"] == "hybrid"
    assert "EXIT 0" in run.stdout and "EXIT 2" in run.stdout


def test_bake_lighting_through_a_real_engine_applies_the_result(tmp_path: Path) -> None:
    """Bake Lighting: a `bake` job on a real node, its files downloaded beside the .blend and applied."""
    from tests.service.conftest import NodeProcess, free_port

    made = blender_python(BUILD_SCENE, tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    node = NodeProcess(tmp_path / "data", tmp_path / "config", free_port(), ["--workers", "1"]).start()
    code = f'''
    import bpy, os, blender_addon
    blender_addon.register()
    bpy.ops.wm.open_mainfile(filepath="scene.blend")
    os.environ["OPTIMIZER_URL"] = "{node.url}"
    state = bpy.context.scene.optimizer
    state.bake_samples, state.bake_bounces, state.bake_texels_per_metre = 4, 1, 16.0
    state.bake_atlas_size = "512"
    result = bpy.ops.optimizer.optimize(kind="bake")
    print("RESULT", result, state.job_state, "|", state.status)
    crate = bpy.data.objects["Crate"]
    print("UV", [layer.name for layer in crate.data.uv_layers])
    print("MATERIALS", [slot.material.name for slot in crate.material_slots])
    print("FAN", [slot.material.name for slot in bpy.data.objects["Fan"].material_slots if slot.material])
    print("FILES", sorted(os.listdir(bpy.path.abspath("//optimizer_bake/" + state.job_id[:12]))))
    blender_addon.unregister()
    '''
    try:
        run = blender_python(code, tmp_path, env={"OPTIMIZER_CONFIG_DIR": str(node.config)})
    finally:
        node.stop()
    assert run.returncode == 0, run.stderr[-3000:]
    assert "RESULT {'FINISHED'} done | Bake applied: lightmaps applied to 2 object(s), 1 image(s)" in run.stdout
    assert "UV ['UVMap', 'Lightmap']" in run.stdout
    assert "MATERIALS ['Material.lightmap0']" in run.stdout
    assert "FAN []" in run.stdout  # animated: not baked, left as it was
    assert "'bake.json', 'lightmap_uv.npz', 'lightmaps', 'scene.glb'" in run.stdout


def test_train_splat_with_cycles_views_through_a_real_engine(tmp_path: Path) -> None:
    """Train Splat: Cycles renders the rig's views of the objects routed to splat (the others hidden
    meanwhile), the engine trains on them, and the result comes back as a point-cloud preview."""
    from tests.service.conftest import NodeProcess, free_port

    made = blender_python(BUILD_SCENE, tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    node = NodeProcess(tmp_path / "data", tmp_path / "config", free_port(), ["--workers", "1"]).start()
    code = f'''
    import bpy, os, json, blender_addon
    blender_addon.register()
    bpy.ops.wm.open_mainfile(filepath="scene.blend")
    os.environ["OPTIMIZER_URL"] = "{node.url}"
    state = bpy.context.scene.optimizer
    bpy.ops.optimizer.analyze()
    state.splat_steps, state.splat_views, state.splat_resolution, state.splat_samples = 10, 4, 32, 2
    result = bpy.ops.optimizer.optimize(kind="splat")
    print("RESULT", result, state.job_state, "|", state.status)
    splat = next(o for o in bpy.data.objects if o.name.startswith("Splat "))
    print("POINTS", len(splat.data.vertices) > 0, splat.modifiers[0].type)
    print("HIDDEN", [o.name for o in bpy.data.objects if o.hide_render])
    folder = bpy.path.abspath("//optimizer_splat/" + state.job_id[:12])
    summary = json.load(open(os.path.join(folder, "splat.json")))
    print("SUMMARY", summary["references"], summary["objects"], summary["views"]["total"])
    blender_addon.unregister()
    '''
    try:
        run = blender_python(code, tmp_path, env={"OPTIMIZER_CONFIG_DIR": str(node.config)}, timeout=600)
    finally:
        node.stop()
    assert run.returncode == 0, run.stderr[-3000:]
    assert "RESULT {'FINISHED'} done | Splat imported:" in run.stdout, run.stdout[-2000:]
    assert "POINTS True NODES" in run.stdout
    assert "HIDDEN []" in run.stdout  # the objects hidden for the reference views are shown again
    assert "SUMMARY cycles ['Plant'] 4" in run.stdout
