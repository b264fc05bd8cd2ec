"""Binned-SAH bounding volume hierarchy: built on the CPU with numba, flattened for upload.

The build runs in numba (``@njit``) with an explicit task stack and in-place partition of an
index array: the top of the tree is split serially until there are enough subtrees for every
thread, then the subtrees are built in parallel (``prange``) and the pieces are assembled into
one compact array. The result does not depend on the number of threads.

The binary tree is then collapsed into a 4-wide tree, which is what the kernels trace: one
wide node holds the boxes of up to four children side by side (structure of arrays), so one
visit tests four boxes from two cache lines and the traversal takes about half the steps of
the binary tree (fewer dependent memory fetches, which dominate for incoherent rays).

Layout of the binary tree (kept for inspection, :meth:`BVH.sah_cost` and the tests):

* ``nodes`` (N, 8) float32, 64-byte aligned, one row per node; the two children of an inner
  node are adjacent rows ``left`` and ``left + 1`` with ``left`` even, so that they share a
  cache line (row 1 is an unused padding row: an empty leaf). Columns 0-2 are the box minimum, 3-5 the maximum, and
  columns 6-7 hold int32 bit patterns, read through ``nodes_i`` (an int32 view of the same
  memory): an inner node has ``(left, -1)``, a leaf ``(first, count)`` with ``first`` a row of
  ``tris``.

Layout of the 4-wide tree (what the kernels in :mod:`engine.bake.kernels` read, through
:meth:`BVH.kernel_arrays`):

* ``wide`` (K, 32) float32, 64-byte aligned, 128 bytes per node, root = row 0, children after
  their parent (breadth first). Columns ``4·a + q`` (a = 0, 1, 2 for x, y, z) hold slot
  ``q``'s box minimum, ``12 + 4·a + q`` its maximum; columns 24-31 hold int32 bit patterns,
  read through ``wide_i``: ``child[q]`` at ``24 + q`` and ``count[q]`` at ``28 + q``. A slot
  with ``count = -1`` is an inner node (``child`` its row), one with ``count >= 0`` a leaf
  (triangles ``child .. child + count - 1`` of ``tris``). An unused slot has an empty box
  (min +inf, max -inf) that no ray enters, and count 0.
* ``tris`` (M, 9) float32: ``v0``, ``e1 = v1 - v0``, ``e2 = v2 - v0`` in leaf order;
  ``tri_index[k]`` is the original index of row ``k``.

The per-field views asked for by other code (``node_min``, ``node_max``, ``node_left``,
``node_start``, ``node_count``, ``tri_v0``, ``tri_e1``, ``tri_e2``) describe the binary tree
and are kept on the dataclass; the float views share memory with the packed arrays.

Triangles with a non-finite vertex or zero area are dropped at build time (they could never
be hit): ``tri_index`` then has fewer rows than the input (``n_input`` records the input size).
An empty scene gives one empty leaf (and a wide root of four unused slots), which every ray misses.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

from engine.errors import SceneError

log = logging.getLogger(__name__)

#: SAH costs: one traversal step (two child boxes) and one triangle test, in the same unit.
TRAVERSAL_COST = 1.0
INTERSECT_COST = 1.0
#: Leaves never hold more triangles than this (unless every centroid coincides: median split).
MAX_LEAF_SIZE = 16


@dataclass(frozen=True, eq=False)
class BVH:
    """A flattened binary BVH over world-space triangles (see the module docstring for the layout)."""

    nodes: np.ndarray  # (N, 8) float32 packed binary nodes
    nodes_i: np.ndarray  # (N, 8) int32 view of ``nodes``
    wide: np.ndarray  # (K, 32) float32 4-wide nodes (what the kernels trace)
    wide_i: np.ndarray  # (K, 32) int32 view of ``wide``
    tris: np.ndarray  # (M, 9) float32 v0, e1, e2 in leaf order
    tri_index: np.ndarray  # (M,) int32 original triangle index of each row of ``tris``
    node_min: np.ndarray  # (N, 3) float32 view
    node_max: np.ndarray  # (N, 3) float32 view
    node_left: np.ndarray  # (N,) int32 left child (right = left + 1), -1 for a leaf
    node_start: np.ndarray  # (N,) int32 first row of a leaf's triangles (0 for inner nodes)
    node_count: np.ndarray  # (N,) int32 triangle count of a leaf (0 for inner nodes)
    tri_v0: np.ndarray  # (M, 3) float32 view
    tri_e1: np.ndarray  # (M, 3) float32 view
    tri_e2: np.ndarray  # (M, 3) float32 view
    n_input: int  # triangles given to build_bvh, dropped ones included
    max_depth: int = 0  # deepest leaf of the binary tree (root = 0)
    stack_need: int = 0  # most stack entries the 4-wide traversal can hold at once
    build_seconds: float = 0.0

    @property
    def n_nodes(self) -> int:
        return int(self.nodes.shape[0])

    @property
    def n_triangles(self) -> int:
        """Triangles kept in the hierarchy (degenerate and non-finite ones dropped)."""
        return int(self.tri_index.shape[0])

    @property
    def n_dropped(self) -> int:
        return self.n_input - self.n_triangles

    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(nodes, nodes_i, tris, tri_index)`` as the tracing kernels take them: flat 1-D views.

        ``nodes`` (32·K,) float32 and ``nodes_i`` (32·K,) int32 are the 4-wide nodes
        (:attr:`wide`, :attr:`wide_i`) and share memory; ``tris`` is (9·M,) float32 (wide node
        ``c`` starts at ``32·c``, triangle row ``k`` at ``9·k``). Flat arrays
        index with a constant stride, which the compilers turn into shifts and adds. ``tris``
        and ``tri_index`` get one padding row when the scene is empty (no leaf refers to it),
        because zero-length arrays are awkward to upload to a device.
        """
        tris, tri_index = self.tris, self.tri_index
        if tris.shape[0] == 0:
            tris = np.zeros((1, 9), np.float32)
            tri_index = np.full(1, -1, np.int32)
        return self.wide.reshape(-1), self.wide_i.reshape(-1), tris.reshape(-1), tri_index

    @property
    def n_wide_nodes(self) -> int:
        return int(self.wide.shape[0])

    def depth(self) -> int:
        """What the tracing kernels need below their stack size: the larger of the deepest
        binary leaf (root = 0) and :attr:`stack_need` of the 4-wide traversal."""
        return max(self.max_depth, self.stack_need)

    def sah_cost(self) -> float:
        """SAH cost of the tree relative to its root box (lower is better; for comparing builds)."""
        return float(_sah_cost(self.nodes, self.nodes_i, TRAVERSAL_COST, INTERSECT_COST))


def build_bvh(triangles_world: np.ndarray, leaf_size: int = 4, bins: int = 16) -> BVH:
    """Build a binned-SAH BVH over ``triangles_world`` (M, 3, 3) float32 world-space corners.

    ``leaf_size``: nodes with at most this many triangles become leaves; bigger nodes are split
    while the SAH says splitting pays, up to :data:`MAX_LEAF_SIZE` per leaf. ``bins``: SAH
    bins per axis (2..64).
    """
    start = time.perf_counter()
    tri = np.asarray(triangles_world)
    if tri.ndim != 3 or tri.shape[1:] != (3, 3):
        raise SceneError(f"triangles have shape {tri.shape}, expected (M, 3, 3)", where="build_bvh")
    if not 1 <= int(leaf_size) <= MAX_LEAF_SIZE:
        raise SceneError(f"leaf_size {leaf_size} is outside 1..{MAX_LEAF_SIZE}", where="build_bvh")
    if not 2 <= int(bins) <= 64:
        raise SceneError(f"bins {bins} is outside 2..64", where="build_bvh")
    tri = np.ascontiguousarray(tri, dtype=np.float32)
    n_input = int(tri.shape[0])
    leaf_size, bins = int(leaf_size), int(bins)
    max_leaf = max(MAX_LEAF_SIZE, leaf_size)

    rec, valid = _triangle_records(tri)
    if not valid.all():
        rec = rec[valid]
    n = int(rec.shape[0])
    if n == 0:
        box = np.zeros((1, 6), np.float32)
        a = np.zeros(1, np.int32)
        b = np.zeros(1, np.int32)
    else:
        box, a, b = _build(rec, leaf_size, max_leaf, bins)
    idx = np.ascontiguousarray(rec.view(np.int32)[:, 6])
    tris = _gather_tris(tri, idx)
    bvh = _assemble(box, a, b, tris, idx, n_input, time.perf_counter() - start)
    log.debug("BVH: %d triangles (%d dropped), %d nodes in %.3f s", n, n_input - n, bvh.n_nodes, bvh.build_seconds)
    return bvh


def _aligned_empty(shape: tuple[int, ...], dtype: type, align: int = 64) -> np.ndarray:
    """An uninitialised C array whose data starts on an ``align``-byte boundary."""
    itemsize = np.dtype(dtype).itemsize
    nbytes = int(np.prod(shape)) * itemsize
    raw = np.empty(nbytes + align, np.uint8)
    offset = (-raw.ctypes.data) % align
    return raw[offset : offset + nbytes].view(dtype).reshape(shape)


def _assemble(
    box: np.ndarray, a: np.ndarray, b: np.ndarray, tris: np.ndarray, idx: np.ndarray, n_input: int, seconds: float
) -> BVH:
    if box.shape[0] > 1:
        # Sibling pairs start at odd rows: one padding row after the root moves every pair to
        # an even row, so that the two 32-byte siblings share one 64-byte cache line.
        box = np.concatenate([box[:1], np.zeros((1, 6), np.float32), box[1:]])
        a = np.concatenate([a[:1], np.zeros(1, np.int32), a[1:]])
        b = np.concatenate([b[:1], np.zeros(1, np.int32), b[1:]])
        a = np.where(b < 0, a + 1, a).astype(np.int32)
    n_nodes = box.shape[0]
    nodes = _aligned_empty((n_nodes, 8), np.float32)
    nodes[:, :6] = box
    nodes_i = nodes.view(np.int32)
    nodes_i[:, 6] = a
    nodes_i[:, 7] = b
    wide, need = _collapse(nodes, nodes_i)
    wide_aligned = _aligned_empty(wide.shape, np.float32)
    wide_aligned[:] = wide
    leaf = b >= 0
    node_left = np.where(leaf, -1, a).astype(np.int32)
    node_start = np.where(leaf, a, 0).astype(np.int32)
    node_count = np.where(leaf, b, 0).astype(np.int32)
    arrays = {
        "nodes": nodes,
        "nodes_i": nodes_i,
        "wide": wide_aligned,
        "wide_i": wide_aligned.view(np.int32),
        "tris": tris,
        "tri_index": idx,
        "node_min": nodes[:, 0:3],
        "node_max": nodes[:, 3:6],
        "node_left": node_left,
        "node_start": node_start,
        "node_count": node_count,
        "tri_v0": tris[:, 0:3],
        "tri_e1": tris[:, 3:6],
        "tri_e2": tris[:, 6:9],
    }
    for array in arrays.values():
        array.flags.writeable = False
    return BVH(
        **arrays, n_input=n_input, max_depth=int(_max_depth(nodes_i)), stack_need=int(need), build_seconds=seconds
    )


def _build(rec: np.ndarray, leaf_size: int, max_leaf: int, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top levels serially, then the subtrees in parallel; returns compact (box, a, b).

    ``rec`` (n, 8) float32 holds one record per triangle, permuted in place as the build
    partitions: box min (0-2), box max (3-5), and the original index in column 6 (int32 bits,
    read and swapped through the int32 view). Records keep every pass over a node's
    triangles a sequential scan, whatever the input order.
    """
    n = int(rec.shape[0])
    reci = rec.view(np.int32)
    threads = numba.get_num_threads()
    # Split serially until every pending subtree is small enough to share out between threads.
    # The cut does not depend on the thread count, so neither does the node order.
    stop_n = 0 if n < 8192 else max(n // 64, 1024)
    box = np.empty((2 * n + 1, 6), np.float32)
    a = np.empty(2 * n + 1, np.int32)
    b = np.empty(2 * n + 1, np.int32)
    cb0 = _root_bounds(rec, box)
    pend_node = np.empty(n + 1, np.int64)
    pend_s = np.empty(n + 1, np.int64)
    pend_e = np.empty(n + 1, np.int64)
    pend_cb = np.empty((n + 1, 6), np.float32)
    used, n_pend = _build_subtree(
        rec, reci, box, a, b, 0, 1, 0, n, cb0, leaf_size, max_leaf, bins, stop_n,
        pend_node, pend_s, pend_e, pend_cb,
    )  # fmt: skip
    if n_pend == 0:
        return box[:used], a[:used], b[:used]

    # Each pending subtree of n_t triangles gets a region of 2·n_t − 1 rows (its root first).
    pend_node, pend_s, pend_e, pend_cb = pend_node[:n_pend], pend_s[:n_pend], pend_e[:n_pend], pend_cb[:n_pend]
    sizes = pend_e - pend_s
    base = np.zeros(n_pend + 1, np.int64)
    np.cumsum(2 * sizes - 1, out=base[1:])
    # Longest-processing-time-first assignment of subtrees to threads (deterministic).
    loads = np.zeros(threads, np.int64)
    owner = np.empty(n_pend, np.int64)
    for r in np.argsort(-sizes, kind="stable"):
        w = int(np.argmin(loads))
        owner[r] = w
        loads[w] += sizes[r]
    order = np.argsort(owner, kind="stable").astype(np.int64)
    wstart = np.searchsorted(owner[order], np.arange(threads + 1)).astype(np.int64)
    rbox = np.empty((int(base[-1]), 6), np.float32)
    ra = np.empty(int(base[-1]), np.int32)
    rb = np.empty(int(base[-1]), np.int32)
    rused = np.empty(n_pend, np.int64)
    _build_regions(
        rec, reci, box, rbox, ra, rb, base, rused, order, wstart,
        pend_node, pend_s, pend_e, pend_cb, leaf_size, max_leaf, bins,
    )  # fmt: skip
    return _merge_regions(box, a, b, used, rbox, ra, rb, base, rused, pend_node)


@njit(cache=True, parallel=True)
def _triangle_records(tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Build records (box min, box max, index) and a mask of finite, non-zero-area triangles."""
    m = tri.shape[0]
    rec = np.zeros((m, 8), np.float32)
    reci = rec.view(np.int32)
    valid = np.empty(m, np.bool_)
    for i in prange(m):
        ok = True
        for k in range(3):
            x0 = tri[i, 0, k]
            x1 = tri[i, 1, k]
            x2 = tri[i, 2, k]
            if not (np.isfinite(x0) and np.isfinite(x1) and np.isfinite(x2)):
                ok = False
            rec[i, k] = min(x0, min(x1, x2))
            rec[i, 3 + k] = max(x0, max(x1, x2))
        reci[i, 6] = i
        if ok:
            e1x = tri[i, 1, 0] - tri[i, 0, 0]
            e1y = tri[i, 1, 1] - tri[i, 0, 1]
            e1z = tri[i, 1, 2] - tri[i, 0, 2]
            e2x = tri[i, 2, 0] - tri[i, 0, 0]
            e2y = tri[i, 2, 1] - tri[i, 0, 1]
            e2z = tri[i, 2, 2] - tri[i, 0, 2]
            nx = e1y * e2z - e1z * e2y
            ny = e1z * e2x - e1x * e2z
            nz = e1x * e2y - e1y * e2x
            ok = nx != 0 or ny != 0 or nz != 0
        valid[i] = ok
    return rec, valid


@njit(cache=True, inline="always")
def _centroid(rec: np.ndarray, i: int, k: int) -> float:
    return np.float32(0.5) * (rec[i, k] + rec[i, 3 + k])


@njit(cache=True, parallel=True)
def _gather_tris(tri: np.ndarray, idx: np.ndarray) -> np.ndarray:
    m = idx.shape[0]
    out = np.empty((m, 9), np.float32)
    for i in prange(m):
        t = idx[i]
        for k in range(3):
            v0 = tri[t, 0, k]
            out[i, k] = v0
            out[i, 3 + k] = tri[t, 1, k] - v0
            out[i, 6 + k] = tri[t, 2, k] - v0
    return out


@njit(cache=True)
def _root_bounds(rec: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Write the root box into ``box[0]``; return the centroid bounds (6,)."""
    cb = np.empty(6, np.float32)
    _range_bounds(rec, 0, rec.shape[0], box[0], cb)
    return cb


@njit(cache=True)
def _range_bounds(rec: np.ndarray, s: int, e: int, box: np.ndarray, cb: np.ndarray) -> None:
    for k in range(3):
        box[k] = np.inf
        box[3 + k] = -np.inf
        cb[k] = np.inf
        cb[3 + k] = -np.inf
    for i in range(s, e):
        for k in range(3):
            box[k] = min(box[k], rec[i, k])
            box[3 + k] = max(box[3 + k], rec[i, 3 + k])
            c = _centroid(rec, i, k)
            cb[k] = min(cb[k], c)
            cb[3 + k] = max(cb[3 + k], c)


@njit(cache=True, inline="always")
def _half_area(x0: float, y0: float, z0: float, x1: float, y1: float, z1: float) -> float:
    dx = x1 - x0
    dy = y1 - y0
    dz = z1 - z0
    return dx * dy + dy * dz + dz * dx


@njit(cache=True)
def _build_subtree(
    rec, reci, box, a_out, b_out, root, alloc, s0, e0, cb0, leaf_size, max_leaf, bins, stop_n,
    pend_node, pend_s, pend_e, pend_cb,
):  # fmt: skip
    """Build the subtree of records ``rec[s0:e0]`` rooted at row ``root`` (its box already written).

    Child pairs are allocated from row ``alloc`` on. Tasks with at most ``stop_n`` triangles
    (when ``stop_n`` > 0) are not built but recorded in the ``pend_*`` arrays. Returns (next
    free row, number of pending tasks).
    """
    cap = e0 - s0 + 2
    st_node = np.empty(cap, np.int64)
    st_s = np.empty(cap, np.int64)
    st_e = np.empty(cap, np.int64)
    st_cb = np.empty((cap, 6), np.float32)
    cnt = np.zeros((3, bins), np.int64)
    bb = np.empty((3, bins, 6), np.float32)
    r_area = np.empty(bins, np.float64)
    r_cnt = np.empty(bins, np.int64)
    cmin = np.empty(3, np.float64)
    scale = np.empty(3, np.float64)
    cbl = np.empty(6, np.float32)
    cbr = np.empty(6, np.float32)
    n_pend = 0
    sp = 0
    st_node[0] = root
    st_s[0] = s0
    st_e[0] = e0
    st_cb[0, :] = cb0
    sp = 1
    while sp > 0:
        sp -= 1
        node = st_node[sp]
        s = st_s[sp]
        e = st_e[sp]
        n = e - s
        if n <= leaf_size:
            a_out[node] = s
            b_out[node] = n
            continue
        if n <= stop_n:
            pend_node[n_pend] = node
            pend_s[n_pend] = s
            pend_e[n_pend] = e
            pend_cb[n_pend, :] = st_cb[sp]
            n_pend += 1
            continue
        node_area = _half_area(box[node, 0], box[node, 1], box[node, 2], box[node, 3], box[node, 4], box[node, 5])
        nb = min(bins, n)
        any_extent = False
        for k in range(3):
            lo = np.float64(st_cb[sp, k])
            ext = np.float64(st_cb[sp, 3 + k]) - lo
            cmin[k] = lo
            if ext > 1e-30 * max(1.0, abs(lo)):
                scale[k] = nb * (1.0 - 1e-6) / ext
                any_extent = True
            else:
                scale[k] = 0.0
        best_axis = -1
        best_bin = 0
        best_cost = np.inf
        if any_extent:
            for k in range(3):
                for j in range(nb):
                    cnt[k, j] = 0
                    bb[k, j, 0] = np.inf
                    bb[k, j, 1] = np.inf
                    bb[k, j, 2] = np.inf
                    bb[k, j, 3] = -np.inf
                    bb[k, j, 4] = -np.inf
                    bb[k, j, 5] = -np.inf
            c0 = cmin[0]
            c1 = cmin[1]
            c2 = cmin[2]
            s0_ = scale[0]
            s1_ = scale[1]
            s2_ = scale[2]
            for i in range(s, e):
                x0 = rec[i, 0]
                y0 = rec[i, 1]
                z0 = rec[i, 2]
                x1 = rec[i, 3]
                y1 = rec[i, 4]
                z1 = rec[i, 5]
                j0 = min(max(int((np.float32(0.5) * (x0 + x1) - c0) * s0_), 0), nb - 1)
                j1 = min(max(int((np.float32(0.5) * (y0 + y1) - c1) * s1_), 0), nb - 1)
                j2 = min(max(int((np.float32(0.5) * (z0 + z1) - c2) * s2_), 0), nb - 1)
                cnt[0, j0] += 1
                cnt[1, j1] += 1
                cnt[2, j2] += 1
                _grow(bb, 0, j0, x0, y0, z0, x1, y1, z1)
                _grow(bb, 1, j1, x0, y0, z0, x1, y1, z1)
                _grow(bb, 2, j2, x0, y0, z0, x1, y1, z1)
            for k in range(3):
                if scale[k] == 0.0:
                    continue
                # Sweep from the right: area and count of bins j..nb-1.
                x0 = np.inf
                y0 = np.inf
                z0 = np.inf
                x1 = -np.inf
                y1 = -np.inf
                z1 = -np.inf
                c = 0
                for j in range(nb - 1, 0, -1):
                    x0 = min(x0, bb[k, j, 0])
                    y0 = min(y0, bb[k, j, 1])
                    z0 = min(z0, bb[k, j, 2])
                    x1 = max(x1, bb[k, j, 3])
                    y1 = max(y1, bb[k, j, 4])
                    z1 = max(z1, bb[k, j, 5])
                    c += cnt[k, j]
                    r_cnt[j] = c
                    r_area[j] = _half_area(x0, y0, z0, x1, y1, z1) if c > 0 else 0.0
                x0 = np.inf
                y0 = np.inf
                z0 = np.inf
                x1 = -np.inf
                y1 = -np.inf
                z1 = -np.inf
                c = 0
                for j in range(1, nb):
                    x0 = min(x0, bb[k, j - 1, 0])
                    y0 = min(y0, bb[k, j - 1, 1])
                    z0 = min(z0, bb[k, j - 1, 2])
                    x1 = max(x1, bb[k, j - 1, 3])
                    y1 = max(y1, bb[k, j - 1, 4])
                    z1 = max(z1, bb[k, j - 1, 5])
                    c += cnt[k, j - 1]
                    if c == 0 or r_cnt[j] == 0:
                        continue
                    cost = _half_area(x0, y0, z0, x1, y1, z1) * c + r_area[j] * r_cnt[j]
                    if cost < best_cost:
                        best_cost = cost
                        best_axis = k
                        best_bin = j
        if best_axis >= 0 and n <= max_leaf:
            split_cost = TRAVERSAL_COST * node_area + INTERSECT_COST * best_cost
            if INTERSECT_COST * n * node_area <= split_cost:
                a_out[node] = s
                b_out[node] = n
                continue
        if best_axis < 0 and n <= max_leaf:
            a_out[node] = s
            b_out[node] = n
            continue

        c = alloc
        alloc += 2
        a_out[node] = c
        b_out[node] = -1
        if best_axis >= 0:
            # In-place partition of rec[s:e] by bin, collecting both sides' centroid bounds.
            k = best_axis
            ck = cmin[k]
            sk = scale[k]
            for q in range(3):
                cbl[q] = np.inf
                cbl[3 + q] = -np.inf
                cbr[q] = np.inf
                cbr[3 + q] = -np.inf
            i = s
            j = e - 1
            while i <= j:
                if min(max(int((_centroid(rec, i, k) - ck) * sk), 0), nb - 1) < best_bin:
                    for q in range(3):
                        cq = _centroid(rec, i, q)
                        cbl[q] = min(cbl[q], cq)
                        cbl[3 + q] = max(cbl[3 + q], cq)
                    i += 1
                else:
                    for q in range(3):
                        cq = _centroid(rec, i, q)
                        cbr[q] = min(cbr[q], cq)
                        cbr[3 + q] = max(cbr[3 + q], cq)
                    for q in range(8):  # swap the records bit for bit (the index is int bits)
                        w = reci[i, q]
                        reci[i, q] = reci[j, q]
                        reci[j, q] = w
                    j -= 1
            mid = i
            for q in range(6):
                box[c, q] = np.inf if q < 3 else -np.inf
                box[c + 1, q] = np.inf if q < 3 else -np.inf
            for jj in range(nb):
                side = c if jj < best_bin else c + 1
                for q in range(3):
                    box[side, q] = min(box[side, q], bb[k, jj, q])
                    box[side, 3 + q] = max(box[side, 3 + q], bb[k, jj, 3 + q])
        else:
            # Every centroid coincides (or is too close to bin): split the range in the middle.
            mid = s + n // 2
            _range_bounds(rec, s, mid, box[c], cbl)
            _range_bounds(rec, mid, e, box[c + 1], cbr)
        st_node[sp] = c + 1
        st_s[sp] = mid
        st_e[sp] = e
        st_cb[sp, :] = cbr
        sp += 1
        st_node[sp] = c
        st_s[sp] = s
        st_e[sp] = mid
        st_cb[sp, :] = cbl
        sp += 1
    return alloc, n_pend


@njit(cache=True, inline="always")
def _grow(bb, k, j, x0, y0, z0, x1, y1, z1):  # type: ignore[no-untyped-def]
    bb[k, j, 0] = min(bb[k, j, 0], x0)
    bb[k, j, 1] = min(bb[k, j, 1], y0)
    bb[k, j, 2] = min(bb[k, j, 2], z0)
    bb[k, j, 3] = max(bb[k, j, 3], x1)
    bb[k, j, 4] = max(bb[k, j, 4], y1)
    bb[k, j, 5] = max(bb[k, j, 5], z1)


@njit(cache=True, parallel=True)
def _build_regions(
    rec, reci, box, rbox, ra, rb, base, rused, order, wstart,
    pend_node, pend_s, pend_e, pend_cb, leaf_size, max_leaf, bins,
):  # fmt: skip
    """Build every pending subtree into its own region; thread ``w`` takes ``order[wstart[w]:wstart[w+1]]``."""
    dummy_i = np.empty(1, np.int64)
    dummy_cb = np.empty((1, 6), np.float32)
    for w in prange(wstart.shape[0] - 1):
        for q in range(wstart[w], wstart[w + 1]):
            r = order[q]
            root = base[r]
            rbox[root, :] = box[pend_node[r]]
            end, _ = _build_subtree(
                rec, reci, rbox, ra, rb, root, root + 1, pend_s[r], pend_e[r], pend_cb[r],
                leaf_size, max_leaf, bins, 0, dummy_i, dummy_i, dummy_i, dummy_cb,
            )  # fmt: skip
            rused[r] = end - root


@njit(cache=True)
def _merge_regions(box, a, b, used, rbox, ra, rb, base, rused, pend_node):  # type: ignore[no-untyped-def]
    """Top rows first, then each region's rows after its root; child indices relocated."""
    total = used
    for r in range(rused.shape[0]):
        total += rused[r] - 1
    out_box = np.empty((total, 6), np.float32)
    out_a = np.empty(total, np.int32)
    out_b = np.empty(total, np.int32)
    out_box[:used] = box[:used]
    out_a[:used] = a[:used]
    out_b[:used] = b[:used]
    g = used
    for r in range(rused.shape[0]):
        root = base[r]
        shift = g - (root + 1)  # region row root + j (j >= 1) goes to g + j - 1
        rows = rused[r]
        for j in range(rows):
            src = root + j
            dst = pend_node[r] if j == 0 else src + shift
            if j > 0:
                out_box[dst] = rbox[src]
            if rb[src] < 0:
                out_a[dst] = ra[src] + shift
            else:
                out_a[dst] = ra[src]
            out_b[dst] = rb[src]
        g += rows - 1
    return out_box, out_a, out_b


@njit(cache=True)
def _collapse(nodes: np.ndarray, nodes_i: np.ndarray) -> tuple[np.ndarray, int]:
    """Collapse the binary tree into 4-wide nodes; returns (wide (K, 32), stack need).

    Each wide node takes a binary inner node's two children and keeps opening its inner child
    of largest surface area until it has four (or only leaves). Wide nodes are numbered in
    breadth-first order, so the root is row 0 and every node's children come after it. Unused
    slots get an empty box (min +inf, max -inf) that no ray enters; a leaf of zero triangles
    (the empty scene) becomes such a slot too.
    """
    n = nodes.shape[0]
    cap = n // 2 + 2
    wide = np.empty((cap, 32), np.float32)
    wi = wide.view(np.int32)
    src = np.empty(cap, np.int64)
    used = np.zeros(cap, np.int64)
    slot = np.empty(4, np.int64)
    src[0] = 0
    count = 1
    w = 0
    while w < count:
        r = src[w]
        if nodes_i[r, 7] >= 0:  # the root is a leaf: one slot
            k = 1
            slot[0] = r
        else:
            k = 2
            slot[0] = nodes_i[r, 6]
            slot[1] = nodes_i[r, 6] + 1
            while k < 4:
                best = -1
                best_area = -1.0
                for q in range(k):
                    c = slot[q]
                    if nodes_i[c, 7] < 0:
                        area = _half_area(nodes[c, 0], nodes[c, 1], nodes[c, 2], nodes[c, 3], nodes[c, 4], nodes[c, 5])
                        if area > best_area:
                            best_area = area
                            best = q
                if best < 0:
                    break
                c = slot[best]
                for q in range(k, best + 1, -1):  # keep the spatial order: open c in place
                    slot[q] = slot[q - 1]
                slot[best] = nodes_i[c, 6]
                slot[best + 1] = nodes_i[c, 6] + 1
                k += 1
        n_used = 0
        for q in range(4):
            c = slot[q] if q < k else -1
            if c < 0 or (nodes_i[c, 7] == 0):
                for axis in range(3):
                    wide[w, 4 * axis + q] = np.inf
                    wide[w, 12 + 4 * axis + q] = -np.inf
                wi[w, 24 + q] = 0
                wi[w, 28 + q] = 0
                continue
            n_used += 1
            for axis in range(3):
                wide[w, 4 * axis + q] = nodes[c, axis]
                wide[w, 12 + 4 * axis + q] = nodes[c, 3 + axis]
            if nodes_i[c, 7] >= 0:
                wi[w, 24 + q] = nodes_i[c, 6]
                wi[w, 28 + q] = nodes_i[c, 7]
            else:
                wi[w, 24 + q] = count
                wi[w, 28 + q] = -1
                src[count] = c
                count += 1
        used[w] = n_used
        w += 1
    # Stack bound of the traversal (push every entered slot, pop one): a node with u slots in
    # use needs max(u, u - 1 + the need of an inner child) entries; children come after parents.
    need = np.zeros(count, np.int64)
    for w in range(count - 1, -1, -1):
        deepest = 0
        for q in range(4):
            if wi[w, 28 + q] < 0:
                deepest = max(deepest, need[wi[w, 24 + q]])
        need[w] = max(used[w], used[w] - 1 + deepest)
    return wide[:count].copy(), need[0]


@njit(cache=True)
def _max_depth(nodes_i: np.ndarray) -> int:
    n = nodes_i.shape[0]
    depth = np.zeros(n, np.int64)
    best = 0
    for i in range(n):  # children always come after their parent
        if nodes_i[i, 7] < 0:
            left = nodes_i[i, 6]
            depth[left] = depth[i] + 1
            depth[left + 1] = depth[i] + 1
        elif depth[i] > best:
            best = depth[i]
    return best


@njit(cache=True)
def _sah_cost(nodes: np.ndarray, nodes_i: np.ndarray, c_trav: float, c_isect: float) -> float:
    root = _half_area(nodes[0, 0], nodes[0, 1], nodes[0, 2], nodes[0, 3], nodes[0, 4], nodes[0, 5])
    if root <= 0.0:
        return 0.0
    total = 0.0
    for i in range(nodes.shape[0]):
        area = _half_area(nodes[i, 0], nodes[i, 1], nodes[i, 2], nodes[i, 3], nodes[i, 4], nodes[i, 5])
        if nodes_i[i, 7] < 0:
            total += c_trav * area
        else:
            total += c_isect * area * nodes_i[i, 7]
    return total / root
