"""BVH build and CPU ray tracing kernels against a numpy brute force; watertightness; RNG; samplers."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from engine.bake import kernels
from engine.bake.bvh import MAX_LEAF_SIZE, build_bvh
from engine.errors import ConfigError, SceneError
from tests.conftest import grid_mesh, unit_box

# ------------------------------------------------------------------------------------------
# helpers


def brute_force(
    origins: np.ndarray, directions: np.ndarray, tri: np.ndarray, tmin: float = 0.0, tmax: float = np.inf
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest hit of every ray against every triangle (float64 Möller–Trumbore, same tolerance)."""
    eps = float(kernels.BARY_EPS)
    v0 = tri[:, 0].astype(np.float64)
    e1 = tri[:, 1].astype(np.float64) - v0
    e2 = tri[:, 2].astype(np.float64) - v0
    n = len(origins)
    best_t = np.full(n, np.inf)
    best_k = np.full(n, -1, np.int64)
    all_t = np.full((n, len(tri)), np.inf)
    for s in range(0, n, 256):
        o = origins[s : s + 256, None, :].astype(np.float64)
        d = directions[s : s + 256, None, :].astype(np.float64)
        p = np.cross(d, e2[None])
        det = (e1[None] * p).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / det
            sv = o - v0[None]
            u = (sv * p).sum(-1) * inv
            q = np.cross(sv, e1[None])
            v = (d * q).sum(-1) * inv
            t = (e2[None] * q).sum(-1) * inv
        ok = (det != 0) & (u >= -eps) & (u <= 1 + eps) & (v >= -eps) & (u + v <= 1 + eps) & (t > tmin) & (t < tmax)
        t = np.where(ok, t, np.inf)
        all_t[s : s + 256] = t
        if len(tri):
            k = np.argmin(t, axis=1)
            best_t[s : s + 256] = t[np.arange(len(k)), k]
            best_k[s : s + 256] = np.where(np.isfinite(best_t[s : s + 256]), k, -1)
    return best_t, best_k, all_t


def assert_agrees(t, k, bt, bk, all_t, *, max_mismatch: int = 0) -> None:  # type: ignore[no-untyped-def]
    """Hit/miss equal (but for ``max_mismatch`` borderline rays), distances equal, ids equal or tied."""
    miss = (k >= 0) != (bk >= 0)
    assert miss.sum() <= max_mismatch, f"{miss.sum()} rays disagree on hit/miss"
    both = (k >= 0) & (bk >= 0)
    assert np.all(np.abs(t[both] - bt[both]) <= 1e-4 * np.maximum(1.0, np.abs(bt[both])))
    differ = both & (k != bk)
    # A different triangle is fine only when brute force hits it at the same distance (a tie).
    rows = np.flatnonzero(differ)
    tied = np.abs(all_t[rows, k[rows]] - bt[rows]) <= 1e-4 * np.maximum(1.0, np.abs(bt[rows]))
    assert tied.all(), f"{(~tied).sum()} rays hit a farther triangle than the closest"
    assert np.all(t[~(k >= 0)] == np.inf)


def soup(n: int, seed: int, spread: float = 10.0, size: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.random((n, 1, 3)) * spread
    return (centres + rng.normal(scale=size, size=(n, 3, 3))).astype(np.float32)


def random_rays(n: int, seed: int, lo: float = -1.0, hi: float = 11.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    origins = rng.uniform(lo, hi, (n, 3)).astype(np.float32)
    directions = rng.standard_normal((n, 3)).astype(np.float32)
    return origins, directions


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """A closed unit icosphere with shared vertices: (positions, faces)."""
    t = (1 + 5**0.5) / 2
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
             (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]  # fmt: skip
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
             (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]  # fmt: skip
    pos = [np.array(v, float) / np.linalg.norm(v) for v in verts]

    def mid(a: int, b: int, cache: dict[tuple[int, int], int]) -> int:
        key = (min(a, b), max(a, b))
        if key not in cache:
            m = pos[a] + pos[b]
            pos.append(m / np.linalg.norm(m))
            cache[key] = len(pos) - 1
        return cache[key]

    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}
        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b, cache), mid(b, c, cache), mid(c, a, cache)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.array(pos, np.float32), np.array(faces, np.int32)


def edges_of(faces: np.ndarray) -> np.ndarray:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)


def rays_through(points: np.ndarray, centre: np.ndarray, seed: int, scale: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Rays from outside, through each point (a vertex or an edge point), toward ``centre``."""
    rng = np.random.default_rng(seed)
    # Tilt the approach a little so that rays do not all come in radially.
    offsets = rng.normal(scale=0.2, size=points.shape)
    s = rng.uniform(*scale, (len(points), 1))
    origins = points + (points - centre + offsets) * s
    directions = points - origins  # passes exactly through the point at t = 1
    return origins.astype(np.float32), directions.astype(np.float32)


# ------------------------------------------------------------------------------------------
# build


def test_structure_is_a_valid_hierarchy() -> None:
    tri = soup(3000, seed=1)
    bvh = build_bvh(tri)
    n = bvh.n_nodes
    assert bvh.nodes.shape == (n, 8) and bvh.nodes.dtype == np.float32
    assert bvh.nodes_i.shape == (n, 8) and bvh.nodes_i.dtype == np.int32
    assert bvh.node_min.shape == bvh.node_max.shape == (n, 3)
    assert bvh.nodes.ctypes.data % 64 == 0
    leaves = bvh.node_left < 0
    assert np.all(bvh.node_count[~leaves] == 0)
    assert np.all(bvh.node_left[~leaves] % 2 == 0)  # sibling pairs start on even rows (cache lines)
    assert np.all(bvh.node_count[leaves] <= MAX_LEAF_SIZE)
    # Every kept triangle sits in exactly one leaf.
    covered = np.zeros(bvh.n_triangles, np.int64)
    for start, count in zip(bvh.node_start[leaves], bvh.node_count[leaves], strict=True):
        covered[start : start + count] += 1
    assert np.all(covered == 1)
    assert sorted(bvh.tri_index.tolist()) == list(range(len(tri)))
    # The reordered triangle rows are the originals, as v0 and edges.
    orig = tri[bvh.tri_index]
    np.testing.assert_array_equal(bvh.tri_v0, orig[:, 0])
    np.testing.assert_allclose(bvh.tri_e1, orig[:, 1] - orig[:, 0], atol=1e-6)
    np.testing.assert_allclose(bvh.tri_e2, orig[:, 2] - orig[:, 0], atol=1e-6)
    # Every node's box holds its children's boxes and its leaves' triangles.
    reached = np.zeros(n, bool)
    reached[0] = True
    for i in range(n):
        if not reached[i]:
            continue
        lo, hi = bvh.node_min[i], bvh.node_max[i]
        if bvh.node_left[i] >= 0:
            for c in (bvh.node_left[i], bvh.node_left[i] + 1):
                reached[c] = True
                assert np.all(bvh.node_min[c] >= lo) and np.all(bvh.node_max[c] <= hi)
        else:
            corners = orig[bvh.node_start[i] : bvh.node_start[i] + bvh.node_count[i]].reshape(-1, 3)
            assert np.all(corners >= lo) and np.all(corners <= hi)
    assert reached.sum() == n - 1  # all but the padding row 1
    assert bvh.depth() < kernels.STACK_SIZE


def test_wide_nodes_cover_the_binary_tree() -> None:
    """The 4-wide nodes the kernels trace: valid boxes, every triangle in exactly one leaf slot,
    children after parents, unused slots empty, and a stack bound the kernels can hold."""
    tri = soup(3000, seed=1)
    bvh = build_bvh(tri)
    wide, wide_i = bvh.wide, bvh.wide_i
    k = bvh.n_wide_nodes
    assert wide.shape == (k, 32) and wide.dtype == np.float32 and wide.ctypes.data % 64 == 0
    assert 1 < k <= bvh.n_nodes // 2 + 1
    nodes, nodes_i, _, _ = bvh.kernel_arrays()
    assert nodes.shape == (32 * k,) and nodes_i.dtype == np.int32 and np.shares_memory(nodes, nodes_i)
    lo = wide[:, 0:12].reshape(k, 3, 4)  # (node, axis, slot)
    hi = wide[:, 12:24].reshape(k, 3, 4)
    child, count = wide_i[:, 24:28], wide_i[:, 28:32]
    orig = tri[bvh.tri_index]
    covered = np.zeros(bvh.n_triangles, np.int64)
    parents = np.zeros(k, np.int64)
    for w in range(k):
        for q in range(4):
            box_lo, box_hi = lo[w, :, q], hi[w, :, q]
            if count[w, q] < 0:
                c = child[w, q]
                assert w < c < k
                parents[c] += 1
                used = count[c] != 0
                assert np.all(lo[c][:, used] >= box_lo[:, None]) and np.all(hi[c][:, used] <= box_hi[:, None])
            elif count[w, q] > 0:
                first, n = child[w, q], count[w, q]
                covered[first : first + n] += 1
                corners = orig[first : first + n].reshape(-1, 3)
                assert np.all(corners >= box_lo) and np.all(corners <= box_hi)
            else:  # unused slot: a box no ray can enter
                assert np.all(box_lo == np.inf) and np.all(box_hi == -np.inf)
    assert np.all(covered == 1)
    assert parents[0] == 0 and np.all(parents[1:] == 1)  # a tree: one parent each, root first
    assert np.mean(count != 0) > 0.6  # the collapse fills most slots
    assert bvh.stack_need <= bvh.depth() < kernels.STACK_SIZE
    assert bvh.stack_need >= int((count[0] != 0).sum())


def test_build_is_deterministic_and_independent_of_threads() -> None:
    tri = soup(40_000, seed=2, spread=50.0)  # large enough for the parallel subtree phase
    a = build_bvh(tri)
    b = build_bvh(tri)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        c = build_bvh(tri)
    finally:
        numba.set_num_threads(threads)
    for other in (b, c):
        np.testing.assert_array_equal(a.nodes_i, other.nodes_i)  # bit patterns: boxes and links
        np.testing.assert_array_equal(a.tri_index, other.tri_index)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(SceneError, match="expected"):
        build_bvh(np.zeros((4, 3), np.float32))
    with pytest.raises(SceneError, match="leaf_size"):
        build_bvh(soup(10, 0), leaf_size=0)
    with pytest.raises(SceneError, match="bins"):
        build_bvh(soup(10, 0), bins=1)


# ------------------------------------------------------------------------------------------
# closest hit and any hit against brute force


@pytest.mark.parametrize(("n_tri", "leaf_size", "bins"), [(1, 4, 16), (37, 1, 2), (2500, 4, 16), (2500, 8, 32)])
def test_closest_and_any_hit_match_brute_force(n_tri: int, leaf_size: int, bins: int) -> None:
    tri = soup(n_tri, seed=n_tri)
    bvh = build_bvh(tri, leaf_size=leaf_size, bins=bins)
    origins, directions = random_rays(3000, seed=7)
    t, k, u, v = kernels.trace_closest_cpu(origins, directions, np.inf, bvh)
    bt, bk, all_t = brute_force(origins, directions, tri)
    assert_agrees(t, k, bt, bk, all_t, max_mismatch=2)
    assert (k >= 0).sum() >= (20 if n_tri > 1 else 0)
    # u, v give the hit point: v0 + u e1 + v e2 == o + t d
    hit = k >= 0
    p_bary = tri[k[hit], 0] + u[hit, None] * (tri[k[hit], 1] - tri[k[hit], 0]) + v[hit, None] * (tri[k[hit], 2] - tri[k[hit], 0])
    p_ray = origins[hit] + t[hit, None] * directions[hit]
    np.testing.assert_allclose(p_bary, p_ray, atol=1e-3)
    occluded = kernels.trace_any_cpu(origins, directions, np.inf, bvh)
    assert np.sum(occluded != (bk >= 0)) <= 2


def test_tmin_tmax_limit_the_interval() -> None:
    tri = soup(2000, seed=3)
    bvh = build_bvh(tri)
    origins, directions = random_rays(2000, seed=8)
    rng = np.random.default_rng(9)
    tmin = rng.uniform(0.0, 1.0, len(origins)).astype(np.float32)
    tmax = rng.uniform(1.0, 4.0, len(origins)).astype(np.float32)
    t, k, _, _ = kernels.trace_closest_cpu(origins, directions, tmax, bvh, tmin=tmin)
    bt, bk, all_t = brute_force(origins, directions, tri, tmin=0.0, tmax=np.inf)
    # brute force per ray with its own interval
    all_t = np.where((all_t > tmin[:, None]) & (all_t < tmax[:, None]), all_t, np.inf)
    bk = np.where(np.isfinite(all_t.min(1)), all_t.argmin(1), -1)
    bt = all_t.min(1)
    assert_agrees(t, k, bt, bk, all_t, max_mismatch=2)
    assert np.all(t[k >= 0] > tmin[k >= 0]) and np.all(t[k >= 0] < tmax[k >= 0])
    occluded = kernels.trace_any_cpu(origins, directions, tmax, bvh, tmin=tmin)
    assert np.sum(occluded != (bk >= 0)) <= 2


def test_grid_mesh_axis_aligned_rays() -> None:
    """A flat grid (zero-thickness boxes) hit by axis-aligned and oblique rays."""
    pos, faces = grid_mesh(33)
    tri = pos[faces]
    bvh = build_bvh(tri)
    rng = np.random.default_rng(4)
    xy = rng.uniform(0.0, 1.0, (2000, 2))
    origins = np.c_[xy, np.full(2000, 1.0)].astype(np.float32)
    down = np.tile(np.array([[0.0, 0.0, -1.0]], np.float32), (2000, 1))
    t, k, _, _ = kernels.trace_closest_cpu(origins, down, np.inf, bvh)
    assert np.all(k >= 0) and np.allclose(t, 1.0, atol=1e-6)
    # exactly through grid vertices and edges: still a hit
    g = np.linspace(0.0, 1.0, 33)
    gx, gy = np.meshgrid(g[1:-1], g[1:-1])
    origins = np.c_[gx.ravel(), gy.ravel(), np.full(gx.size, 2.0)].astype(np.float32)
    t, k, _, _ = kernels.trace_closest_cpu(origins, np.tile(down, (1, 1))[: len(origins)], np.inf, bvh)
    assert np.all(k >= 0)
    oblique = rng.standard_normal((2000, 3)).astype(np.float32)
    oblique[:, 2] = -np.abs(oblique[:, 2]) - 0.05
    origins = np.c_[xy, np.full(2000, 0.5)].astype(np.float32)
    t, k, _, _ = kernels.trace_closest_cpu(origins, oblique, np.inf, bvh)
    bt, bk, all_t = brute_force(origins, oblique, tri)
    assert_agrees(t, k, bt, bk, all_t, max_mismatch=2)


# ------------------------------------------------------------------------------------------
# watertightness


@pytest.mark.parametrize("scale", [(0.5, 3.0), (20.0, 100.0)])
def test_closed_icosphere_is_watertight(scale: tuple[float, float]) -> None:
    pos, faces = icosphere(3)  # 1280 triangles
    tri = pos[faces]
    bvh = build_bvh(tri)
    centre = np.zeros(3)
    e = edges_of(faces)
    rng = np.random.default_rng(5)
    w = rng.uniform(0.05, 0.95, (len(e), 1))
    targets = np.concatenate([pos, pos[e[:, 0]] * w + pos[e[:, 1]] * (1 - w), 0.5 * (pos[e[:, 0]] + pos[e[:, 1]])])
    targets = targets.astype(np.float32)  # on the mesh's edges (inside the sphere, on the flat faces)
    origins, directions = rays_through(targets, centre, seed=6, scale=scale)
    t, k, _, _ = kernels.trace_closest_cpu(origins, directions, np.inf, bvh)
    assert np.all(k >= 0), f"{np.sum(k < 0)} of {len(k)} rays through vertices/edges slipped through"
    assert np.allclose(t, 1.0, atol=2e-3 * scale[1])  # the first hit is the targeted point
    assert kernels.trace_any_cpu(origins, directions, np.inf, bvh).all()
    # random rays from outside toward the centre, and from inside outward
    d = rng.standard_normal((4000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    origins = (d * rng.uniform(*scale, (4000, 1)) * 2).astype(np.float32)
    aim = rng.normal(scale=0.1, size=(4000, 3))  # well inside the mesh
    _, k, _, _ = kernels.trace_closest_cpu(origins, (aim - origins).astype(np.float32), np.inf, bvh)
    assert np.all(k >= 0)
    inside = rng.normal(scale=0.2, size=(4000, 3)).astype(np.float32)
    _, k, _, _ = kernels.trace_closest_cpu(inside, d.astype(np.float32), np.inf, bvh)
    assert np.all(k >= 0)
    inside = rng.normal(scale=0.2, size=targets.shape).astype(np.float32)
    _, k, _, _ = kernels.trace_closest_cpu(inside, targets - inside, np.inf, bvh)  # from inside through edges
    assert np.all(k >= 0)


def test_closed_cube_is_watertight() -> None:
    box = unit_box()
    pos = np.asarray(box.positions, np.float32)
    faces = np.asarray(box.triangles)
    tri = pos[faces]
    bvh = build_bvh(tri)
    centre = np.full(3, 0.5)
    e = edges_of(faces)  # includes the face diagonals
    rng = np.random.default_rng(7)
    w = rng.uniform(0.0, 1.0, (len(e), 8, 1))
    on_edges = (pos[e[:, 0]][:, None] * w + pos[e[:, 1]][:, None] * (1 - w)).reshape(-1, 3)
    targets = np.concatenate([pos, on_edges, 0.5 * (pos[e[:, 0]] + pos[e[:, 1]])]).astype(np.float32)
    for scale in ((0.5, 3.0), (10.0, 50.0)):
        origins, directions = rays_through(targets, centre, seed=8, scale=scale)
        # keep rays that really enter the cube (aimed at the inside, not grazing a face from outside)
        inside = np.abs(origins + 1.001 * directions - centre).max(1) < 0.5
        t, k, _, _ = kernels.trace_closest_cpu(origins[inside], directions[inside], np.inf, bvh)
        assert inside.sum() > 100
        assert np.all(k >= 0), f"{np.sum(k < 0)} rays slipped through the cube's edges"
        assert np.allclose(t, 1.0, atol=1e-4)  # entered at the targeted edge point
        assert kernels.trace_any_cpu(origins[inside], directions[inside], np.inf, bvh).all()


# ------------------------------------------------------------------------------------------
# degenerate input


def test_degenerate_and_non_finite_triangles_are_dropped() -> None:
    tri = soup(500, seed=9)
    tri[10] = tri[10, 0]  # a point
    tri[11, 2] = tri[11, 0] + 2.0 * (tri[11, 1] - tri[11, 0])  # collinear
    tri[12, 1, 0] = np.nan
    tri[13, 2, 2] = np.inf
    tri[14, 0, 1] = -np.inf
    bvh = build_bvh(tri)
    assert bvh.n_input == 500 and bvh.n_triangles == 495 and bvh.n_dropped == 5
    assert not set(bvh.tri_index.tolist()) & {10, 11, 12, 13, 14}
    origins, directions = random_rays(3000, seed=10)
    t, k, _, _ = kernels.trace_closest_cpu(origins, directions, np.inf, bvh)
    keep = np.setdiff1d(np.arange(500), [10, 11, 12, 13, 14])
    bt, bk, all_t = brute_force(origins, directions, tri[keep])
    bk = np.where(bk >= 0, keep[np.maximum(bk, 0)], -1)  # back to original ids
    full_t = np.full((len(origins), 500), np.inf)
    full_t[:, keep] = all_t
    assert_agrees(t, k, bt, bk, full_t, max_mismatch=2)


def test_coincident_triangles_use_the_median_split() -> None:
    one = soup(1, seed=11)
    tri = np.repeat(one, 1000, axis=0)  # every centroid equal: no SAH split exists
    bvh = build_bvh(tri)
    assert bvh.n_triangles == 1000
    assert np.all(bvh.node_count[bvh.node_left < 0] <= MAX_LEAF_SIZE)
    assert bvh.depth() < kernels.STACK_SIZE
    centre = one[0].mean(0)
    origins = (centre + np.array([[0.0, 0.0, 5.0]])).astype(np.float32).repeat(10, 0)
    t, k, _, _ = kernels.trace_closest_cpu(origins, (centre - origins).astype(np.float32), np.inf, bvh)
    assert np.all(k >= 0) and np.allclose(t, 1.0, atol=1e-5)


def test_empty_scene_misses_everything() -> None:
    for tri in (np.zeros((0, 3, 3), np.float32), np.full((3, 3, 3), np.nan, np.float32)):
        bvh = build_bvh(tri)
        assert bvh.n_triangles == 0
        origins, directions = random_rays(100, seed=12)
        t, k, _, _ = kernels.trace_closest_cpu(origins, directions, np.inf, bvh)
        assert np.all(k == -1) and np.all(np.isinf(t))
        assert not kernels.trace_any_cpu(origins, directions, np.inf, bvh).any()


def test_zero_rays_and_zero_direction_components() -> None:
    bvh = build_bvh(soup(100, seed=13))
    t, k, _, _ = kernels.trace_closest_cpu(np.zeros((0, 3)), np.zeros((0, 3)), np.inf, bvh)
    assert t.shape == k.shape == (0,)
    # axis-parallel rays (two zero components) must not produce NaN in the slab test
    pos, faces = grid_mesh(5)
    flat = build_bvh(pos[faces])
    t, k, _, _ = kernels.trace_closest_cpu(np.array([[0.3, 0.6, 1.0], [0.3, 0.6, -1.0]]), np.array([[0, 0, -1.0], [0, 0, 1.0]]), np.inf, flat)
    assert np.all(k >= 0) and np.allclose(t, 1.0)
    with pytest.raises(ConfigError):
        kernels.trace_closest_cpu(np.zeros((3, 2)), np.zeros((3, 2)), np.inf, bvh)


def test_depth_guard() -> None:
    bvh = build_bvh(soup(200, seed=14))
    with pytest.raises(ConfigError, match="stack"):
        kernels._check_depth(bvh, stack_size=2)


# ------------------------------------------------------------------------------------------
# random numbers and sampling


def test_rng_is_deterministic_and_counter_based() -> None:
    index = np.arange(50_000)
    a = kernels.random_uniform_cpu(1, index, 3, 0)
    np.testing.assert_array_equal(a, kernels.random_uniform_cpu(1, index, 3, 0))
    assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() < 1.0
    for other in (kernels.random_uniform_cpu(2, index, 3, 0), kernels.random_uniform_cpu(1, index, 4, 0), kernels.random_uniform_cpu(1, index, 3, 1)):
        assert np.mean(a == other) < 0.001
    # index beyond 32 bits still matters
    assert np.mean(kernels.random_uniform_cpu(1, index + (1 << 32), 3, 0) == a) < 0.001
    # the device function called from Python gives the same bits as the batch kernel
    rand = kernels.cpu_tracer().random_uniform
    assert all(rand(1, int(i), 3, 0) == a[i] for i in range(0, 50_000, 5_000))


def test_rng_is_uniform_and_uncorrelated() -> None:
    n = 200_000
    index = np.arange(n)
    bins = 64
    for dim in range(4):
        x = kernels.random_uniform_cpu(12345, index, 7, dim)
        counts = np.bincount((x * bins).astype(int), minlength=bins)
        chi2 = float(((counts - n / bins) ** 2 / (n / bins)).sum())
        assert chi2 < 120.0, f"dim {dim}: chi-square {chi2:.1f} with 63 degrees of freedom"  # p ≈ 3e-5
    x = kernels.random_uniform_cpu(12345, index, 7, 0)
    y = kernels.random_uniform_cpu(12345, index, 7, 1)
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.01
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < 0.01
    counts2d = np.histogram2d(x, y, bins=16)[0]
    chi2 = float(((counts2d - n / 256) ** 2 / (n / 256)).sum())
    assert chi2 < 330.0  # 255 degrees of freedom
    # sample index drives a sequence per texel too
    s = kernels.random_uniform_cpu(12345, np.zeros(n, np.int64), np.arange(n), 0)
    counts = np.bincount((s * bins).astype(int), minlength=bins)
    assert float(((counts - n / bins) ** 2 / (n / bins)).sum()) < 120.0


def _samples(fn, n: int, *args: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    u = kernels.random_uniform_cpu(3, np.arange(n), 0, 0)
    w = kernels.random_uniform_cpu(3, np.arange(n), 0, 1)
    return np.array([fn(*args, float(a), float(b)) for a, b in zip(u, w, strict=True)], np.float64)


def test_sampling_helpers() -> None:
    tr = kernels.cpu_tracer()
    n = 20_000
    normal = np.array([0.3, -0.5, 0.81])
    normal /= np.linalg.norm(normal)
    t1x, t1y, t1z, b1x, b1y, b1z = tr.orthonormal_basis(*normal)
    frame = np.array([[t1x, t1y, t1z], [b1x, b1y, b1z], normal])
    np.testing.assert_allclose(frame @ frame.T, np.eye(3), atol=1e-6)
    for nz in (-1.0, 1.0):
        f = np.array(tr.orthonormal_basis(0.0, 0.0, nz)).reshape(2, 3)
        np.testing.assert_allclose(np.abs(np.cross(f[0], f[1])), [0, 0, 1], atol=1e-6)

    d = _samples(tr.sample_cosine_hemisphere, n, *normal)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    cos = d @ normal
    assert cos.min() >= -1e-6
    assert abs(cos.mean() - 2 / 3) < 0.01  # E[cos θ] under the cos/π density

    d = _samples(tr.sample_uniform_hemisphere, n, *normal)
    assert (d @ normal).min() >= -1e-6 and abs((d @ normal).mean() - 0.5) < 0.01
    d = _samples(tr.sample_uniform_sphere, n)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    assert np.all(np.abs(d.mean(0)) < 0.02)

    b = _samples(tr.sample_triangle, n)
    assert b.min() >= 0.0 and (b.sum(1)).max() <= 1.0 + 1e-6
    assert np.all(np.abs(b.mean(0) - 1 / 3) < 0.01)  # uniform: centroid at (1/3, 1/3)
    assert abs(np.mean(b[:, 0] + b[:, 1] < 0.5) - 0.25) < 0.01  # area fraction of the corner triangle

    p = _samples(tr.sample_disk, n)
    r2 = (p**2).sum(1)
    assert r2.max() <= 1.0 + 1e-6 and abs(r2.mean() - 0.5) < 0.01
    assert abs(np.mean(r2 < 0.25) - 0.25) < 0.01
    q = _samples(tr.sample_rect, n)
    assert np.abs(q).max() <= 1.0 and np.all(np.abs(q.mean(0)) < 0.02)

    axis = np.array([0.0, 0.6, 0.8])
    cos_max = math.cos(math.radians(2.0))
    c = _samples(tr.sample_cone, n, *axis, cos_max)
    cosines = c @ axis
    assert cosines.min() >= cos_max - 1e-6
    assert abs(cosines.mean() - (1 + cos_max) / 2) < 1e-4  # uniform in solid angle


# ------------------------------------------------------------------------------------------
# device selection


def test_select_device() -> None:
    assert kernels.select_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="not one of"):
        kernels.select_device("gpu")
    device, reason = kernels.explain_device("auto")
    assert device in ("cpu", "cuda") and reason.startswith("auto")
    from numba import cuda

    if not cuda.is_available():
        assert device == "cpu" and "is_available" in reason
        with pytest.raises(ConfigError, match="CUDA was asked for"):
            kernels.select_device("cuda")
