"""Baker outputs: EXR and Radiance HDR round trips, RGBM PNG, and the lightmapped glTF (Khronos validator)."""

from __future__ import annotations

import base64
import io
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.bake.output import (
    EXTENSION,
    export_lightmapped_gltf,
    read_exr,
    read_hdr,
    srgb_decode,
    write_exr,
    write_hdr,
    write_lightmap_hdr,
    write_png_rgbm,
)
from engine.bake.post import decode_rgbm, dilate
from engine.bake.texels import rasterize_texels
from engine.bake.uv import lightmap_layout
from engine.errors import ImportFormatError, InputError
from engine.scene import Material, MeshObject, Scene
from engine.scene.gltf import load_gltf
from tests.conftest import grid_mesh, khronos_validate, unit_box


def hdr_image(height: int = 24, width: int = 40, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(5)
    return (rng.random((height, width, channels)) ** 2 * 50.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# image files


@pytest.mark.parametrize("channels", [3, 4])
def test_exr_round_trip(tmp_path: Path, channels: int) -> None:
    image = hdr_image(channels=channels)
    path = write_exr(tmp_path / "lightmap.exr", image)
    np.testing.assert_array_equal(read_exr(path), image)
    half = read_exr(write_exr(tmp_path / "half.exr", image, half=True))
    np.testing.assert_allclose(half, image, rtol=1e-3, atol=1e-4)  # half floats: 11-bit mantissa
    import OpenEXR  # the file is a real EXR, readable by the library directly

    with OpenEXR.File(str(path)) as exr:
        assert exr.header()["dataWindow"][1].tolist() == [39, 23]


def test_hdr_round_trip(tmp_path: Path) -> None:
    image = hdr_image()
    image[0, 0] = 0.0
    back = read_hdr(write_hdr(tmp_path / "lightmap.hdr", image))
    assert back.shape == image.shape and back.dtype == np.float32
    peak = image.max(axis=2, keepdims=True)
    assert np.all(np.abs(back - image) <= peak / 128.0 + 1e-30)  # 8-bit mantissa of the shared exponent
    np.testing.assert_array_equal(back[0, 0], 0.0)
    assert (tmp_path / "lightmap.hdr").read_bytes().startswith(b"#?RADIANCE\n")
    assert write_lightmap_hdr(tmp_path / "other.hdr", image).suffix == ".hdr"
    assert write_lightmap_hdr(tmp_path / "other.exr", image).suffix == ".exr"


def _rle_hdr(rgbe: np.ndarray) -> bytes:
    """A new-style run-length encoded Radiance file (literal runs only), as other tools write."""
    height, width = rgbe.shape[:2]
    out = bytearray(f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {height} +X {width}\n".encode())
    for row in rgbe:
        out += bytes([2, 2, width >> 8, width & 0xFF])
        for channel in range(4):
            data = row[:, channel].tobytes()
            for start in range(0, width, 127):  # runs hold at most 127 bytes
                chunk = data[start:start + 127]
                if len(chunk) >= 4 and len(set(chunk)) == 1:
                    out += bytes([128 + len(chunk), chunk[0]])
                else:
                    out += bytes([len(chunk)]) + chunk
    return bytes(out)


def test_hdr_reader_reads_run_length_encoded_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    rgbe = rng.integers(1, 255, (6, 300, 4), dtype=np.uint8)
    rgbe[2] = (10, 20, 30, 130)  # a row of runs
    path = tmp_path / "rle.hdr"
    path.write_bytes(_rle_hdr(rgbe))
    flat = tmp_path / "flat.hdr"
    flat.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 6 +X 300\n" + rgbe.tobytes())
    np.testing.assert_array_equal(read_hdr(path), read_hdr(flat))
    path.write_bytes(_rle_hdr(rgbe)[:-50])
    with pytest.raises(ImportFormatError, match="truncated"):
        read_hdr(path)
    path.write_bytes(b"P6\n")
    with pytest.raises(ImportFormatError, match="not a Radiance"):
        read_hdr(path)


def test_rgbm_png(tmp_path: Path) -> None:
    from PIL import Image

    image = hdr_image() / 8.0
    path = write_png_rgbm(tmp_path / "lightmap.png", image)
    with Image.open(path) as png:
        assert png.mode == "RGBA"
        pixels = np.asarray(png)
    decoded = decode_rgbm(pixels)
    assert np.all(np.abs(decoded - np.minimum(image, 8.0)) <= image.max(axis=2, keepdims=True) * 0.01 + 0.02)


def test_bad_images_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="expected"):
        write_exr(tmp_path / "x.exr", np.zeros((4, 4), np.float32))
    with pytest.raises(InputError, match="NaN"):
        write_hdr(tmp_path / "x.hdr", np.full((2, 2, 3), np.nan, np.float32))


# --------------------------------------------------------------------------------------------
# lightmapped glTF


def baked_scene() -> tuple[Scene, Any, list[np.ndarray]]:
    """A floor with its own lightmap UV and base UVs, a two-material box (xatlas), a moving object left alone."""
    positions, triangles = grid_mesh(5)
    floor_uv = positions[:, :2].copy()
    floor = MeshObject("floor", positions * 4.0, triangles, uvs={"UVMap": floor_uv * 3.0, "LM": floor_uv},
                       lightmap_uv="LM", material_indices=np.zeros(len(triangles), np.int32))
    box = unit_box("box", material_indices=np.array([0] * 6 + [1] * 6), transform=np.diag([1.0, 1.0, 1.0, 1.0]))
    fan = unit_box("fan", animated=True, material_indices=np.full(12, 1))
    scene = Scene((floor, box, fan), materials=(Material("plaster"), Material("wood", base_color=(0.5, 0.3, 0.1, 1))))
    layout = lightmap_layout(scene)
    texels = rasterize_texels(layout)
    # a lightmap that says where each texel is: world x, y and 2 (HDR: up to 4)
    values = np.c_[texels.position[:, :2], np.full(texels.count, 2.0)].astype(np.float32)
    lightmaps = [dilate(img, texels.mask(a), 2) for a, img in enumerate(texels.scatter(values))]
    return scene, layout, lightmaps


def _doc_and_blob(path: Path) -> tuple[dict[str, Any], bytes]:
    data = path.read_bytes()
    if data[:4] == b"glTF":
        (json_length,) = struct.unpack_from("<I", data, 12)
        doc = json.loads(data[20:20 + json_length])
        return doc, data[20 + json_length + 8:]
    doc = json.loads(data)
    return doc, base64.b64decode(doc["buffers"][0]["uri"].split(",", 1)[1])


@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_lightmapped_gltf_round_trip(tmp_path: Path, suffix: str) -> None:
    from PIL import Image

    scene, layout, lightmaps = baked_scene()
    path = export_lightmapped_gltf(scene, layout, lightmaps, tmp_path / f"lit{suffix}")
    doc, blob = _doc_and_blob(path)
    assert EXTENSION in doc["extensionsUsed"] and EXTENSION not in doc.get("extensionsRequired", [])

    # materials: the moving box keeps 'wood'; baked objects use per-atlas copies with the extension
    names = [m["name"] for m in doc["materials"]]
    assert "wood" in names and "plaster" not in names
    lit = {m["name"]: m["extensions"][EXTENSION] for m in doc["materials"] if EXTENSION in m.get("extensions", {})}
    assert set(lit) == {"plaster.lightmap0", "wood.lightmap0"}
    info = lit["wood.lightmap0"]
    assert info["texCoord"] == 1
    texture = doc["textures"][info["index"]]
    image = doc["images"][texture["source"]]
    assert image["mimeType"] == "image/png"
    view = doc["bufferViews"][image["bufferView"]]
    with Image.open(io.BytesIO(blob[view["byteOffset"]:view["byteOffset"] + view["byteLength"]])) as png:
        pixels = np.asarray(png.convert("RGB"), np.float32) / 255.0
    # the PNG holds lightmap / intensity, sRGB-encoded: decoding gives the lightmap back where not clipped
    restored = srgb_decode(pixels) * info["intensity"]
    texels = rasterize_texels(layout)
    mask = texels.mask(0)
    unclipped = mask & (lightmaps[0].max(axis=2) <= info["intensity"])
    error = np.abs(restored[unclipped] - lightmaps[0][unclipped])
    assert np.percentile(error / np.maximum(lightmaps[0][unclipped], 0.05), 99) < 0.03

    # reading it back: TEXCOORD_1 is the lightmap UV of the layout (V flipped twice), geometry intact
    loaded = load_gltf(path)
    for entry in layout.entries:
        obj = loaded.object(entry.name)
        assert obj.lightmap_uv is not None and list(obj.uvs).index(obj.lightmap_uv) == 1
        np.testing.assert_allclose(obj.uvs[obj.lightmap_uv], entry.uv, atol=1e-6)
        world = obj.world_positions()[obj.triangles]
        np.testing.assert_allclose(world, entry.positions[entry.triangles], atol=1e-5)
        original = scene.object(entry.name)
        np.testing.assert_allclose(world, original.world_positions()[original.triangles], atol=1e-5)
        used = {loaded.materials[m].name for m in obj.material_indices.tolist()}
        assert all(name.endswith(".lightmap0") for name in used)
    floor = loaded.object("floor")
    np.testing.assert_allclose(floor.uvs["UVMap"], scene.object("floor").uvs["UVMap"], atol=1e-6)
    assert loaded.object("fan").lightmap_uv is None
    assert {loaded.materials[m].name for m in loaded.object("fan").material_indices.tolist()} == {"wood"}
    box = doc["meshes"][next(n["mesh"] for n in doc["nodes"] if n["name"] == "box")]
    assert {"TEXCOORD_0", "TEXCOORD_1"} <= set(box["primitives"][0]["attributes"])


def test_lightmapped_gltf_bad_input(tmp_path: Path) -> None:
    scene, layout, lightmaps = baked_scene()
    with pytest.raises(InputError, match="1 atlases"):
        export_lightmapped_gltf(scene, layout, lightmaps * 2, tmp_path / "x.glb")
    with pytest.raises(InputError, match="atlas size"):
        export_lightmapped_gltf(scene, layout, [lightmaps[0][:10]], tmp_path / "x.glb")
    with pytest.raises(InputError, match=r"\.glb or \.gltf"):
        export_lightmapped_gltf(scene, layout, lightmaps, tmp_path / "x.obj")
    other = Scene((unit_box("stranger"),))
    with pytest.raises(InputError, match="layout"):
        export_lightmapped_gltf(other, layout, lightmaps, tmp_path / "x.glb")


@pytest.mark.external
@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_khronos_validator_accepts_lightmapped_gltf(tmp_path: Path, suffix: str) -> None:
    scene, layout, lightmaps = baked_scene()
    report = khronos_validate(export_lightmapped_gltf(scene, layout, lightmaps, tmp_path / f"lit{suffix}"))
    issues = report["issues"]
    assert issues["numErrors"] == 0, [m for m in issues["messages"] if m["severity"] == 0]
    assert issues["numWarnings"] == 0, [m for m in issues["messages"] if m["severity"] == 1]
    codes = {m["code"] for m in issues["messages"]}
    assert "UNSUPPORTED_EXTENSION" in codes  # MOZ_lightmap is unknown to the validator: info only
    assert report["info"]["hasTextures"]
