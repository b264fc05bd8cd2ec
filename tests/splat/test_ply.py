"""GaussianCloud and the standard 3DGS PLY: exact round trips, the INRIA layout, other writers' files,
bad files, and PlayCanvas splat-transform reading what we write."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine.errors import ImportFormatError, InputError
from engine.splat.ply import SH_C0, GaussianCloud, ply_property_names, read_ply, write_ply
from tests.conftest import EXTERNAL

SPLAT_TRANSFORM = EXTERNAL / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"
FIELDS = ("means", "scales_log", "quats", "opacity_logit", "sh_dc", "sh_rest")


def random_cloud(n: int, sh_degree: int, seed: int = 0, *, normals: bool = False) -> GaussianCloud:
    """A cloud of ``n`` Gaussians with varied, realistic values (positions in the unit cube)."""
    rng = np.random.default_rng(seed)
    k = (0, 3, 8, 15)[sh_degree]
    return GaussianCloud(
        means=rng.uniform(0, 1, (n, 3)),
        scales_log=rng.normal(-4.5, 1.0, (n, 3)),
        quats=rng.normal(size=(n, 4)),
        opacity_logit=rng.normal(0.0, 3.0, n),
        sh_dc=rng.normal(0.0, 1.0, (n, 3)),
        sh_rest=rng.normal(0.0, 0.4, (n, k, 3)),
        normals=rng.normal(size=(n, 3)) if normals else None,
    )


def assert_same_cloud(a: GaussianCloud, b: GaussianCloud) -> None:
    for name in FIELDS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert (a.normals is None) == (b.normals is None)
    if a.normals is not None:
        assert np.array_equal(a.normals, b.normals)


def splat_transform(*args: str | Path) -> None:
    """Run PlayCanvas splat-transform (npm package in tests/external) on ``args``; fail loudly if absent."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (Node.js) is not on PATH; it runs PlayCanvas splat-transform")
    if not SPLAT_TRANSFORM.is_file():
        pytest.fail("PlayCanvas splat-transform is not installed: run `npm ci --prefix tests/external`")
    result = subprocess.run([node, str(SPLAT_TRANSFORM), "--quiet", "--overwrite", *map(str, args)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"splat-transform {args} failed:\n{result.stdout}\n{result.stderr}"


def read_csv(path: Path) -> dict[str, np.ndarray]:
    """splat-transform's CSV output: one float32 column per property (its values print exactly)."""
    names = path.read_text().split("\n", 1)[0].split(",")
    values = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2).astype(np.float32)
    return {name: values[:, i] for i, name in enumerate(names)}


def ply_columns(cloud: GaussianCloud) -> dict[str, np.ndarray]:
    """The INRIA property values of ``cloud`` by name (f_rest channel-major)."""
    n, k = cloud.count, cloud.sh_rest.shape[1]
    normals = np.zeros((n, 3), np.float32) if cloud.normals is None else cloud.normals
    f_rest = cloud.sh_rest.transpose(0, 2, 1).reshape(n, 3 * k)
    block = np.concatenate([cloud.means, normals, cloud.sh_dc, f_rest, cloud.opacity_logit[:, None],
                            cloud.scales_log, cloud.quats], axis=1)
    return dict(zip(ply_property_names(cloud.sh_degree), block.T, strict=True))


def write_raw_ply(path: Path, fmt: str, elements: list[tuple[str, np.ndarray]], extra_header: str = "") -> Path:
    """A PLY written field by field (as another tool would): ``elements`` are structured arrays."""
    types = {"f4": "float", "f8": "double", "u1": "uchar", "i4": "int", "u4": "uint"}
    lines = ["ply", f"format {fmt} 1.0", "comment written by a test", extra_header]
    for name, array in elements:
        lines.append(f"element {name} {len(array)}")
        lines += [f"property {types[array.dtype[f].str[1:]]} {f}" for f in array.dtype.names]
    body = b""
    for _, array in elements:
        if fmt == "ascii":
            body += "".join(" ".join(repr(v.item()) for v in row) + "\n" for row in array).encode()
        else:
            order = "<" if fmt == "binary_little_endian" else ">"
            body += array.astype(array.dtype.newbyteorder(order)).tobytes()
    path.write_bytes(("\n".join(line for line in lines if line) + "\nend_header\n").encode() + body)
    return path


# --------------------------------------------------------------------------- the cloud


def test_cloud_properties_and_plain_value_constructor() -> None:
    rng = np.random.default_rng(3)
    means, colors = rng.normal(size=(50, 3)), rng.uniform(0.05, 0.95, (50, 3))
    scales, alpha = rng.uniform(0.001, 0.1, (50, 3)), rng.uniform(0.01, 0.99, 50)
    cloud = GaussianCloud.from_rgb(means, colors, scales, alpha, sh_degree=2)
    assert cloud.count == 50 and cloud.sh_degree == 2 and cloud.sh_rest.shape == (50, 8, 3)
    np.testing.assert_allclose(cloud.colors_rgb(), colors, atol=1e-6)
    np.testing.assert_allclose(cloud.sh_dc, (colors - 0.5) / SH_C0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cloud.opacities(), alpha, atol=1e-6)
    np.testing.assert_allclose(cloud.scales(), scales, rtol=1e-6)
    assert np.array_equal(cloud.quats, np.tile([1, 0, 0, 0], (50, 1)))
    assert all(getattr(cloud, name).dtype == np.float32 for name in FIELDS)
    assert not cloud.means.flags.writeable
    picked = cloud.take([4, 2])
    assert picked.count == 2 and np.array_equal(picked.means, cloud.means[[4, 2]])
    # colours outside [0, 1] from SH are clipped by colors_rgb
    bright = GaussianCloud(means[:1], scales[:1], [[1, 0, 0, 0]], [0.0], [[10.0, -10.0, 0.0]])
    assert np.array_equal(bright.colors_rgb(), [[1.0, 0.0, 0.5]])


@pytest.mark.parametrize(("change", "message"), [
    ({"means": np.zeros((4, 2))}, "means has shape (4, 2), expected (N, 3)"),
    ({"quats": np.zeros((3, 4))}, "quats has shape (3, 4), expected (4, 4)"),
    ({"sh_rest": np.zeros((4, 5, 3))}, "sh_rest has 5 coefficients per channel"),
    ({"opacity_logit": [0.0, np.nan, 0.0, 0.0]}, "opacity_logit holds a non-finite value (NaN or Inf) at index (1,)"),
    ({"scales_log": np.full((4, 3), np.inf)}, "scales_log holds a non-finite value"),
    ({"quats": [[1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]]}, "zero-length rotation at index 1"),
    ({"sh_dc": "red"}, "sh_dc is not numeric"),
])
def test_cloud_rejects_bad_values(change: dict, message: str) -> None:
    values = {"means": np.zeros((4, 3)), "scales_log": np.zeros((4, 3)), "quats": np.tile([1.0, 0, 0, 0], (4, 1)),
              "opacity_logit": np.zeros(4), "sh_dc": np.zeros((4, 3))}
    with pytest.raises(InputError) as info:
        GaussianCloud(**{**values, **change})
    assert message in str(info.value)


# --------------------------------------------------------------------------- our files


@pytest.mark.parametrize(("sh_degree", "normals"), [(0, False), (1, True), (3, False)])
def test_round_trip_is_exact(tmp_path: Path, sh_degree: int, normals: bool) -> None:
    cloud = random_cloud(700, sh_degree, normals=normals)
    back = read_ply(write_ply(tmp_path / "splat.ply", cloud))
    assert back.sh_degree == sh_degree
    assert_same_cloud(cloud, back)


def test_file_is_the_inria_layout(tmp_path: Path) -> None:
    """Header, property order, size and the channel-major f_rest order, checked on the raw bytes."""
    n, k = 5, 15
    cloud = random_cloud(n, 3)
    # coefficient k of channel c is 100 * c + k: the file must hold f_rest_{c*K + k} = 100 * c + k
    code = 100 * np.arange(3)[None, None, :] + np.arange(k)[None, :, None]
    cloud = GaussianCloud(cloud.means, cloud.scales_log, cloud.quats, cloud.opacity_logit, cloud.sh_dc,
                          np.broadcast_to(code, (n, k, 3)))
    data = write_ply(tmp_path / "splat.ply", cloud).read_bytes()
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *(f"f_rest_{i}" for i in range(45)),
             "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    header = "\n".join(["ply", "format binary_little_endian 1.0", f"element vertex {n}",
                        *(f"property float {name}" for name in names), "end_header"]) + "\n"
    assert data[: len(header)] == header.encode()
    assert len(data) == len(header) + n * 62 * 4
    rows = np.frombuffer(data[len(header):], dtype=np.dtype([(name, "<f4") for name in names]))
    for c in range(3):
        for j in range(k):
            assert (rows[f"f_rest_{c * k + j}"] == 100 * c + j).all()
    assert (rows["nx"] == 0).all() and np.array_equal(rows["rot_0"], cloud.quats[:, 0])
    assert np.array_equal(rows["opacity"], cloud.opacity_logit) and np.array_equal(rows["y"], cloud.means[:, 1])


@pytest.mark.parametrize("fmt", ["binary_big_endian", "ascii", "binary_little_endian"])
def test_reads_files_from_other_writers(tmp_path: Path, fmt: str) -> None:
    """Shuffled property order, double and extra properties, and other elements before and after the vertices."""
    cloud = random_cloud(40, 1)
    columns = ply_columns(cloud)
    order = list(reversed(columns))  # rot_3 first ... x last
    vertex = np.empty(40, [(name, "f8" if name in ("x", "opacity") else "f4") for name in order] + [("red", "u1")])
    for name in order:
        vertex[name] = columns[name]
    vertex["red"] = 7
    camera = np.zeros(2, [("view", "f4"), ("id", "i4")])
    path = write_raw_ply(tmp_path / f"{fmt}.ply", fmt, [("camera", camera), ("vertex", vertex)],
                         extra_header="obj_info trained elsewhere")
    back = read_ply(path)
    for name in ("means", "quats", "opacity_logit", "sh_dc", "sh_rest", "scales_log"):
        np.testing.assert_array_equal(getattr(back, name), getattr(cloud, name), err_msg=name)
    assert back.normals is None  # all zero in the file: no normals


def test_skips_a_list_element_after_the_vertices(tmp_path: Path) -> None:
    cloud = random_cloud(10, 0)
    data = write_ply(tmp_path / "a.ply", cloud).read_bytes()
    head, body = data.split(b"end_header\n", 1)
    faces = np.array([(3, 0, 1, 2)] * 4, dtype=[("n", "u1"), ("a", "<i4"), ("b", "<i4"), ("c", "<i4")]).tobytes()
    path = tmp_path / "with_faces.ply"
    path.write_bytes(head + b"element face 4\nproperty list uchar int vertex_indices\nend_header\n" + body + faces)
    assert_same_cloud(read_ply(path), cloud)


def _good_file(tmp_path: Path) -> bytes:
    return write_ply(tmp_path / "good.ply", random_cloud(20, 1)).read_bytes()


def _replace_header(data: bytes, old: bytes, new: bytes) -> bytes:
    head, body = data.split(b"end_header\n", 1)
    assert old in head
    return head.replace(old, new) + b"end_header\n" + body


BAD_FILES = {
    "not a ply": (lambda d: b"solid cube\nfacet normal 0 0 1\n", "not a PLY file"),
    "header never ends": (lambda d: d.split(b"end_header")[0], "the PLY header never ends"),
    "truncated data": (lambda d: d[:-50], "the file is truncated: element 'vertex' needs"),
    "missing opacity": (lambda d: _replace_header(d, b"property float opacity\n", b"property float opacityx\n"),
                        "lacks the 3DGS properties opacity"),
    "mesh ply": (lambda d: b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                           b"property float z\nend_header\n0 0 0\n", "lacks the 3DGS properties f_dc_0"),
    "wrong f_rest count": (lambda d: _replace_header(d, b"property float f_rest_8\n", b"property float f_rest_9\n"),
                           "f_rest properties, expected f_rest_0 .. f_rest_N-1"),
    "no vertex element": (lambda d: _replace_header(d, b"element vertex 20", b"element point 20"),
                          "no 'vertex' element"),
    "unknown format": (lambda d: _replace_header(d, b"binary_little_endian", b"binary_middle_endian"),
                       "unsupported PLY format line"),
    "bad property type": (lambda d: _replace_header(d, b"property float x\n", b"property float128 x\n"),
                          "malformed PLY header line 'property float128 x'"),
    "list before vertices": (lambda d: _replace_header(d, b"element vertex",
                                                       b"element face 1\nproperty list uchar int idx\nelement vertex"),
                             "element 'face' has list properties and comes before vertex"),
    "nan value": (lambda d: d[:-4] + np.float32(np.nan).tobytes(), "quats holds a non-finite value (NaN or Inf) at index (19, 3)"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_raise_import_format_error_naming_the_file(tmp_path: Path, case: str) -> None:
    make, message = BAD_FILES[case]
    path = tmp_path / "bad.ply"
    path.write_bytes(make(_good_file(tmp_path)))
    with pytest.raises(ImportFormatError) as info:
        read_ply(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_file_and_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError, match="cannot read the file"):
        read_ply(tmp_path / "nowhere.ply")
    with pytest.raises(InputError, match="cannot write the file") as info:
        write_ply(tmp_path / "no" / "such" / "folder.ply", random_cloud(3, 0))
    assert "folder.ply" in str(info.value)
    assert not list(tmp_path.rglob("*.partial"))


# --------------------------------------------------------------------------- PlayCanvas splat-transform


@pytest.mark.external
@pytest.mark.parametrize("sh_degree", [0, 3])
def test_splat_transform_reads_our_ply(tmp_path: Path, sh_degree: int) -> None:
    """splat-transform reads our PLY into exactly our values, and its own PLY output reads back into ours."""
    cloud = random_cloud(600, sh_degree, normals=True)
    ours = write_ply(tmp_path / "ours.ply", cloud)
    splat_transform(ours, tmp_path / "seen.csv")
    seen = read_csv(tmp_path / "seen.csv")
    expected = ply_columns(cloud)
    assert list(seen) == list(expected)  # every property, in the INRIA order
    for name, values in expected.items():
        assert np.array_equal(seen[name], values), name

    splat_transform(ours, tmp_path / "theirs.ply")  # their writer: another property order, no normals
    theirs = read_ply(tmp_path / "theirs.ply")
    for name in FIELDS:
        assert np.array_equal(getattr(theirs, name), getattr(cloud, name)), name
