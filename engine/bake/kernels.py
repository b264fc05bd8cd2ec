"""Ray tracing kernels from one source for two targets: CPU (``numba.njit``) and CUDA.

:func:`build_tracer` takes a jit decorator and a ``local`` namespace whose ``array(n, dtype)``
makes a small per-thread array (and, optionally, whose ``prefetch(array, index)`` is a cache
hint), and returns the device functions compiled by that decorator::

    cpu = build_tracer(cpu_jit, cpu_local())                                    # cpu_tracer()
    gpu = build_tracer(partial(cuda.jit, device=True, fastmath=True), cuda_local())  # cuda_tracer()

The functions take plain scalars and the flattened BVH arrays one by one, as
:meth:`engine.bake.bvh.BVH.kernel_arrays` (or :meth:`CudaBVH.arrays`) gives them: ``nodes``
(32·K,) float32 4-wide nodes (layout in :mod:`engine.bake.bvh`), ``nodes_i`` its int32 view,
``tris`` (9·M,) float32 and ``tri_index`` (M,) int32. The traversal visits a wide node by
testing its four slot boxes and pushing every entered slot with its entry distance, nearest
on top (insertion among the node's own entries); it pops the nearest entry that can still
hold a closer hit, intersects it at once when it is a leaf, and visits it when it is a node.
Pushed slots are prefetched on the CPU, so their cache misses overlap the work on the nearer
ones. The traversal stack is a fixed ``STACK_SIZE``-entry ``alloca`` array (entries: node or
first triangle, count, entry distance): the machine stack on the CPU (no heap allocation per
ray), what ``cuda.local.array`` emits on CUDA. Under numba's CUDA simulator the simulator's own
``cuda.local`` stands in. ``BVH.depth()`` (which bounds the entries the traversal can hold at
once) must stay below ``STACK_SIZE``; a push that would overflow is dropped, never written
out of bounds.

Device functions (all in the returned namespace; float arguments are float32 or float64,
results float32):

* ``intersect_triangle(ox, oy, oz, dx, dy, dz, tris, k, tmin, tmax) -> (hit, t, u, v)``
  Möller–Trumbore against row ``k`` of ``tris``, two-sided, with a small barycentric
  tolerance so that rays cannot slip between triangles that share an edge;
  the hit point is ``v0 + u·e1 + v·e2`` and ``tmin < t < tmax``.
* ``closest_hit(ox, oy, oz, dx, dy, dz, tmin, tmax, nodes, nodes_i, tris, tri_index)
  -> (t, tri, u, v)``: ``tri`` is the original triangle index, -1 (and ``t`` = inf) on a miss.
* ``any_hit(ox, oy, oz, dx, dy, dz, tmin, tmax, nodes, nodes_i, tris) -> bool`` (shadow rays;
  leaves are tested as soon as their box is entered, unordered).
* ``box_interval(nodes, c, ...)``: entry and exit distance in slot ``c % 4`` of wide node ``c // 4``.
* ``pcg_hash(x) -> int``, ``random_uniform(seed, index, sample, dim) -> float32`` in [0, 1):
  a counter-based generator, the same bits on every target.
* ``sobol_2d(seed, index, sample, pair) -> (u1, u2)`` float32 in [0, 1)²: sample ``sample`` of
  an Owen-scrambled 2D Sobol' sequence (Burley 2020, "Practical Hash-based Owen Scrambling"),
  one sequence per (``index`` e.g. a texel, dimension ``pair``, ``seed``). The first two Sobol'
  dimensions (``sobol_bits``: van der Corput, and the Pascal-matrix dimension) form a (0, 2)-
  sequence: every aligned block of 2^k samples puts one point in each elementary interval of
  area 2^-k. Each coordinate gets a nested uniform scramble (``owen_scramble``: a Laine–Karras
  style hash, ``owen_hash``, on the bit-reversed word), which keeps that property and makes
  each point uniform; the sample number itself first goes through an Owen-scrambled
  permutation of its own, so that the pairs of one texel (light 1, light 2, bounce, ...) are
  not the same sequence and stay uncorrelated (padding 2D sets into higher dimensions). All
  seeds are ``pcg_hash`` chains of the counters; everything is 32-bit words in int64, masked,
  with products below 2⁶³, so the CPU, CUDA and the simulator give the same bits.
  ``sobol_2d_bits`` returns the two 32-bit words, ``sobol_2d`` their top 24 bits as floats.
* ``orthonormal_basis(nx, ny, nz) -> (tx, ty, tz, bx, by, bz)`` (unit normal in).
* ``sample_cosine_hemisphere(nx, ny, nz, u1, u2) -> (dx, dy, dz)``; pdf = cos θ / π.
* ``sample_uniform_hemisphere(nx, ny, nz, u1, u2)``, ``sample_uniform_sphere(u1, u2)``.
* ``sample_triangle(u1, u2) -> (b1, b2)``: point ``v0 + b1·e1 + b2·e2`` uniform on the triangle.
* ``sample_disk(u1, u2) -> (x, y)`` uniform on the unit disk (concentric map).
* ``sample_rect(u1, u2) -> (x, y)`` uniform on [-1, 1]².
* ``sample_cone(ax, ay, az, cos_max, u1, u2) -> (dx, dy, dz)`` uniform in the cone around
  the unit axis (sun discs); pdf = 1 / (2π (1 − cos_max)).

Batch entry points: :func:`trace_closest_cpu`, :func:`trace_any_cpu` (``prange`` across rays),
:func:`trace_closest_cuda`, :func:`trace_any_cuda` (one thread per ray, BVH uploaded once
through :class:`CudaBVH`), :func:`trace_closest` / :func:`trace_any` (dispatch on a device
name) and :func:`select_device`; :func:`random_uniform_cpu`, :func:`random_uniform_cuda`,
:func:`sobol_2d_cpu`, :func:`sobol_2d_cuda` and :func:`sobol_bits_cpu` evaluate the generators for
arrays of counters (tests, checks against the GPU).

Everything is compiled lazily on first use; CPU functions are cached on disk (``cache=True``).
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import sys
import types as pytypes
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.bake.bvh import BVH

log = logging.getLogger(__name__)

#: Traversal stack entries per ray (``BVH.depth()`` must stay below it; binned SAH on 250k triangles needs ~35).
STACK_SIZE = 128
#: Barycentric tolerance: hits up to this far (relative) outside an edge count, for watertightness.
BARY_EPS = np.float32(1e-5)
#: Conservative slab test: the exit distance is scaled up by this factor.
BOX_PAD = np.float32(1.0 + 4e-7)
#: Direction components closer to zero than this are clamped before the reciprocal.
DIR_EPS = np.float32(1e-20)
#: LLVM fast-math flags for the CPU: no ``nnan``/``ninf`` because tmax may be infinite. A dict,
#: not a set: its order is fixed, which keeps numba's cache keys the same across processes.
CPU_FASTMATH = {"contract": True, "arcp": True, "nsz": True, "afn": True}
DEVICES = ("auto", "cpu", "cuda")


def build_tracer(jit: Callable[[Callable[..., Any]], Any], local: Any, stack_size: int = STACK_SIZE) -> SimpleNamespace:
    """Compile (lazily) the tracing device functions with ``jit``; see the module docstring.

    ``jit`` decorates a plain function: :func:`cpu_jit` (njit, inlined, cached) for the CPU
    or ``numba.cuda.jit(device=True, ...)`` for CUDA. ``local.array(n, dtype)`` allocates a
    per-thread array of ``n`` elements with ``n`` a compile-time constant (:func:`cpu_local`,
    :func:`cuda_local`, or the simulator's ``FakeCUDALocal()``); ``local.prefetch(array,
    index)``, where present, hints the cache (a no-op is used otherwise). The functions refer
    to each other and to the constants below as closure variables, which numba freezes at
    compile time. ``stack_size`` must exceed the depth of every BVH traced.
    """
    import numba

    f32 = numba.float32
    i32 = numba.int32
    i64 = numba.int64
    u64 = numba.uint64  # unsigned indices: no negative-index wraparound code
    STACK = int(stack_size)  # noqa: N806  (a compile-time constant inside the kernels)
    ZERO = np.float32(0.0)  # noqa: N806
    ONE = np.float32(1.0)  # noqa: N806
    TWO = np.float32(2.0)  # noqa: N806
    INF = np.float32(np.inf)  # noqa: N806
    PI = np.float32(math.pi)  # noqa: N806
    TWO_PI = np.float32(2.0 * math.pi)  # noqa: N806
    QUARTER_PI = np.float32(0.25 * math.pi)  # noqa: N806
    EPS = BARY_EPS  # noqa: N806
    ONE_EPS = np.float32(1.0) + BARY_EPS  # noqa: N806
    PAD = BOX_PAD  # noqa: N806
    TINY = DIR_EPS  # noqa: N806
    MASK32 = 0xFFFFFFFF  # noqa: N806
    INV_2_24 = 1.0 / 16777216.0  # noqa: N806

    if hasattr(local, "prefetch"):

        @jit
        def warm_child(nodes, tris, child, count):  # type: ignore[no-untyped-def]
            """Prefetch what a pushed slot will read: the wide node (two lines) or the leaf's triangles."""
            if count < 0:
                local.prefetch(nodes, child * 32)
                local.prefetch(nodes, child * 32 + 16)
            else:
                local.prefetch(tris, child * 9)
                local.prefetch(tris, child * 9 + 16)

    else:  # no prefetch on this target (CUDA, the simulator)

        @jit
        def warm_child(nodes, tris, child, count):  # type: ignore[no-untyped-def]
            return None

    @jit
    def fmin(a, b):  # type: ignore[no-untyped-def]
        """min of two floats (numba's CUDA target does not type the builtin ``min(a, b)``)."""
        return a if a < b else b

    @jit
    def fmax(a, b):  # type: ignore[no-untyped-def]
        return a if a > b else b

    @jit
    def safe_inverse(d):  # type: ignore[no-untyped-def]
        """1 / d with |d| clamped away from zero (keeps slab tests free of inf·0)."""
        if d >= ZERO:
            return ONE / fmax(d, TINY)
        return ONE / fmin(d, -TINY)

    @jit
    def intersect_triangle(ox, oy, oz, dx, dy, dz, tris, k, tmin, tmax):  # type: ignore[no-untyped-def]
        b = k * 9
        e1x = tris[u64(b + 3)]
        e1y = tris[u64(b + 4)]
        e1z = tris[u64(b + 5)]
        e2x = tris[u64(b + 6)]
        e2y = tris[u64(b + 7)]
        e2z = tris[u64(b + 8)]
        px = dy * e2z - dz * e2y
        py = dz * e2x - dx * e2z
        pz = dx * e2y - dy * e2x
        det = e1x * px + e1y * py + e1z * pz
        if det == ZERO:
            return False, ZERO, ZERO, ZERO
        inv = ONE / det
        sx = ox - tris[u64(b)]
        sy = oy - tris[u64(b + 1)]
        sz = oz - tris[u64(b + 2)]
        u = (sx * px + sy * py + sz * pz) * inv
        if u < -EPS or u > ONE_EPS:
            return False, ZERO, ZERO, ZERO
        qx = sy * e1z - sz * e1y
        qy = sz * e1x - sx * e1z
        qz = sx * e1y - sy * e1x
        v = (dx * qx + dy * qy + dz * qz) * inv
        if v < -EPS or u + v > ONE_EPS:
            return False, ZERO, ZERO, ZERO
        t = (e2x * qx + e2y * qy + e2z * qz) * inv
        if t > tmin and t < tmax:
            return True, t, u, v
        return False, ZERO, ZERO, ZERO

    @jit
    def box_interval(nodes, c, oix, oiy, oiz, ix, iy, iz, sx, sy, sz, tmin, tmax):  # type: ignore[no-untyped-def]
        """Entry and (padded) exit distance of the ray in box ``c`` (slot ``c % 4`` of wide node
        ``c // 4``); a hit when entry <= exit.

        ``sx, sy, sz`` are the offsets of the near planes in a wide node (0, 4, 8 for a
        positive direction component, 12, 16, 20 for a negative one), so no min/max per axis
        is needed; the far planes are at ``12 - sx``, ``20 - sy``, ``28 - sz``.
        """
        b = (c >> 2) * 32 + (c & 3)
        tx0 = nodes[u64(b + sx)] * ix - oix
        tx1 = nodes[u64(b + (12 - sx))] * ix - oix
        ty0 = nodes[u64(b + sy)] * iy - oiy
        ty1 = nodes[u64(b + (20 - sy))] * iy - oiy
        tz0 = nodes[u64(b + sz)] * iz - oiz
        tz1 = nodes[u64(b + (28 - sz))] * iz - oiz
        near = fmax(fmax(tx0, ty0), fmax(tz0, tmin))
        far = fmin(fmin(tx1, ty1), tz1) * PAD
        return near, fmin(far, tmax)

    @jit
    def intersect_leaf(ox, oy, oz, dx, dy, dz, tris, first, count, tmin, best_t, best, best_u, best_v):  # type: ignore[no-untyped-def]
        for k in range(first, first + count):
            hit, t, u, v = intersect_triangle(ox, oy, oz, dx, dy, dz, tris, k, tmin, best_t)
            if hit:
                best_t = t
                best = k
                best_u = u
                best_v = v
        return best_t, best, best_u, best_v

    @jit
    def closest_hit(ox, oy, oz, dx, dy, dz, tmin, tmax, nodes, nodes_i, tris, tri_index):  # type: ignore[no-untyped-def]
        stack_node = local.array(STACK, i32)
        stack_count = local.array(STACK, i32)
        stack_near = local.array(STACK, f32)
        ox = f32(ox)
        oy = f32(oy)
        oz = f32(oz)
        dx = f32(dx)
        dy = f32(dy)
        dz = f32(dz)
        tmin = f32(tmin)
        best_t = f32(tmax)
        ix = safe_inverse(dx)
        iy = safe_inverse(dy)
        iz = safe_inverse(dz)
        oix = ox * ix
        oiy = oy * iy
        oiz = oz * iz
        sx = 0 if ix >= ZERO else 12
        sy = 4 if iy >= ZERO else 16
        sz = 8 if iz >= ZERO else 20
        best = -1
        best_u = ZERO
        best_v = ZERO
        node = 0
        sp = 0
        while True:
            # Push every entered slot, nearest on top (insertion among this node's entries).
            base = sp
            for q in range(4):
                near, far = box_interval(nodes, node * 4 + q, oix, oiy, oiz, ix, iy, iz, sx, sy, sz, tmin, best_t)
                if near <= far and sp < STACK:
                    pos = sp
                    while pos > base and stack_near[pos - 1] < near:
                        stack_node[pos] = stack_node[pos - 1]
                        stack_count[pos] = stack_count[pos - 1]
                        stack_near[pos] = stack_near[pos - 1]
                        pos -= 1
                    child = nodes_i[u64(node * 32 + 24 + q)]
                    count = nodes_i[u64(node * 32 + 28 + q)]
                    warm_child(nodes, tris, child, count)
                    stack_node[pos] = child
                    stack_count[pos] = count
                    stack_near[pos] = near
                    sp += 1
            # Pop: leaves are intersected on the way, the first inner node is visited next.
            found = False
            while sp > 0:
                sp -= 1
                if stack_near[sp] < best_t:
                    count = stack_count[sp]
                    if count < 0:
                        node = stack_node[sp]
                        found = True
                        break
                    best_t, best, best_u, best_v = intersect_leaf(
                        ox, oy, oz, dx, dy, dz, tris, stack_node[sp], count, tmin, best_t, best, best_u, best_v
                    )
            if not found:
                break
        if best < 0:
            return INF, -1, ZERO, ZERO
        return best_t, tri_index[best], best_u, best_v

    @jit
    def any_hit(ox, oy, oz, dx, dy, dz, tmin, tmax, nodes, nodes_i, tris):  # type: ignore[no-untyped-def]
        stack_node = local.array(STACK, i32)
        ox = f32(ox)
        oy = f32(oy)
        oz = f32(oz)
        dx = f32(dx)
        dy = f32(dy)
        dz = f32(dz)
        tmin = f32(tmin)
        tmax = f32(tmax)
        ix = safe_inverse(dx)
        iy = safe_inverse(dy)
        iz = safe_inverse(dz)
        oix = ox * ix
        oiy = oy * iy
        oiz = oz * iz
        sx = 0 if ix >= ZERO else 12
        sy = 4 if iy >= ZERO else 16
        sz = 8 if iz >= ZERO else 20
        node = 0
        sp = 0
        while True:
            # Leaves are tested at once (any hit ends the search), inner nodes pushed.
            for q in range(4):
                near, far = box_interval(nodes, node * 4 + q, oix, oiy, oiz, ix, iy, iz, sx, sy, sz, tmin, tmax)
                if near <= far:
                    child = nodes_i[u64(node * 32 + 24 + q)]
                    count = nodes_i[u64(node * 32 + 28 + q)]
                    if count >= 0:
                        for k in range(child, child + count):
                            hit, _t, _u, _v = intersect_triangle(ox, oy, oz, dx, dy, dz, tris, k, tmin, tmax)
                            if hit:
                                return True
                    elif sp < STACK:
                        warm_child(nodes, tris, child, count)
                        stack_node[sp] = child
                        sp += 1
            if sp == 0:
                break
            sp -= 1
            node = stack_node[sp]
        return False

    @jit
    def pcg_hash(x):  # type: ignore[no-untyped-def]
        """PCG-RXS-M-XS 32-bit hash (Jarzynski & Olano 2020) in int64 arithmetic, masked to 32 bits."""
        state = (x * 747796405 + 2891336453) & MASK32
        word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & MASK32
        return ((word >> 22) ^ word) & MASK32

    @jit
    def random_uniform(seed, index, sample, dim):  # type: ignore[no-untyped-def]
        index = i64(index)
        h = pcg_hash(i64(dim) & MASK32)
        h = pcg_hash(h ^ (i64(sample) & MASK32))
        h = pcg_hash(h ^ (index & MASK32))
        h = pcg_hash(h ^ ((index >> 32) & MASK32))
        h = pcg_hash(h ^ (i64(seed) & MASK32))
        return f32((h >> 8) * INV_2_24)

    # Owen-scrambled Sobol' points (see the module docstring). Every value is a 32-bit word
    # held in an int64 and masked; every product stays below 2**63, so numba's CPU and CUDA
    # targets and the simulator's Python integers all compute the same bits.

    @jit
    def reverse_bits(x):  # type: ignore[no-untyped-def]
        """The 32 low bits of ``x`` in reverse order."""
        x = i64(x) & MASK32
        x = ((x >> 1) & 0x55555555) | ((x & 0x55555555) << 1)
        x = ((x >> 2) & 0x33333333) | ((x & 0x33333333) << 2)
        x = ((x >> 4) & 0x0F0F0F0F) | ((x & 0x0F0F0F0F) << 4)
        x = ((x >> 8) & 0x00FF00FF) | ((x & 0x00FF00FF) << 8)
        return ((x >> 16) & 0x0000FFFF) | ((x & 0x0000FFFF) << 16)

    @jit
    def times_even(x, half):  # type: ignore[no-untyped-def]
        """``x · 2·half`` mod 2³² for a 32-bit x and half < 2³¹ (the product stays below 2⁶³)."""
        return ((x * half) & 0x7FFFFFFF) << 1

    @jit
    def owen_hash(x, seed):  # type: ignore[no-untyped-def]
        """A seeded bijection of 32-bit words in which output bit k depends on input bits 0..k only
        (adding the seed, then x ^= x·c for even c: carries only travel up), Laine–Karras style
        with Burley's (2020) constants. On bit-reversed words it is a nested uniform scramble."""
        x = (x + seed) & MASK32
        x ^= times_even(x, 0x36285A3E)  # 0x6c50b47c / 2
        x ^= times_even(x, 0x5C178F29)  # 0xb82f1e52 / 2
        x ^= times_even(x, 0x63D7F31C)  # 0xc7afe638 / 2
        x ^= times_even(x, 0x46917B73)  # 0x8d22f6e6 / 2
        return x

    @jit
    def owen_scramble(x, seed):  # type: ignore[no-untyped-def]
        """Nested uniform (Owen) scramble of the 32-bit binary fraction ``x / 2³²``: the first
        bit is flipped at random, each later bit by a random function of the bits before it."""
        return reverse_bits(owen_hash(reverse_bits(x), seed & MASK32))

    @jit
    def sobol_bits(index):  # type: ignore[no-untyped-def]
        """The first two Sobol' dimensions of point ``index`` (< 2³²) as 32-bit fractions: the
        van der Corput radical inverse and the Pascal-matrix dimension (direction numbers
        v₁ = 1/2, v_{k+1} = v_k ⊕ v_k/2). Together they form a (0, 2)-sequence in base 2."""
        i = i64(index) & MASK32
        x0 = reverse_bits(i)
        x1 = i64(0)
        v = i64(0x80000000)
        while i != 0:
            if i & 1:
                x1 ^= v
            i >>= 1
            v ^= v >> 1
        return x0, x1

    @jit
    def sobol_2d_bits(seed, index, sample, pair):  # type: ignore[no-untyped-def]
        """:func:`sobol_2d` as two 32-bit words (for callers that want more than 24 bits)."""
        index = i64(index)
        h = pcg_hash((i64(pair) & MASK32) ^ 0x5B0B01D5)  # a salt: other streams than random_uniform
        h = pcg_hash(h ^ (index & MASK32))
        h = pcg_hash(h ^ ((index >> 32) & MASK32))
        h = pcg_hash(h ^ (i64(seed) & MASK32))
        shuffle_seed = pcg_hash(h ^ 0x1)
        seed_x = pcg_hash(h ^ 0x2)
        seed_y = pcg_hash(h ^ 0x3)
        # The sample index goes through an Owen-scrambled permutation of its own (per texel and
        # pair): samples 0..2^k−1 become an aligned block of 2^k Sobol' indices, which is still
        # a (0, k, 2)-net, but one uncorrelated with the other pairs' blocks.
        shuffled = owen_scramble(i64(sample) & MASK32, shuffle_seed)
        x0, x1 = sobol_bits(shuffled)
        return owen_scramble(x0, seed_x), owen_scramble(x1, seed_y)

    @jit
    def sobol_2d(seed, index, sample, pair):  # type: ignore[no-untyped-def]
        x, y = sobol_2d_bits(seed, index, sample, pair)
        return f32((x >> 8) * INV_2_24), f32((y >> 8) * INV_2_24)

    @jit
    def orthonormal_basis(nx, ny, nz):  # type: ignore[no-untyped-def]
        """Tangent and bitangent of a unit normal (Duff et al. 2017, branchless but for the sign)."""
        nx = f32(nx)
        ny = f32(ny)
        nz = f32(nz)
        sign = ONE if nz >= ZERO else -ONE
        a = -ONE / (sign + nz)
        b = nx * ny * a
        return ONE + sign * nx * nx * a, sign * b, -sign * nx, b, sign + ny * ny * a, -ny

    @jit
    def to_world(nx, ny, nz, x, y, z):  # type: ignore[no-untyped-def]
        tx, ty, tz, bx, by, bz = orthonormal_basis(nx, ny, nz)
        return (x * tx + y * bx + z * nx, x * ty + y * by + z * ny, x * tz + y * bz + z * nz)

    @jit
    def sample_disk(u1, u2):  # type: ignore[no-untyped-def]
        """Shirley–Chiu concentric map of [0, 1)² onto the unit disk."""
        a = TWO * f32(u1) - ONE
        b = TWO * f32(u2) - ONE
        if a == ZERO and b == ZERO:
            return ZERO, ZERO
        if abs(a) > abs(b):
            r = a
            phi = QUARTER_PI * (b / a)
        else:
            r = b
            phi = TWO * QUARTER_PI - QUARTER_PI * (a / b)
        return f32(r * math.cos(phi)), f32(r * math.sin(phi))

    @jit
    def sample_rect(u1, u2):  # type: ignore[no-untyped-def]
        return TWO * f32(u1) - ONE, TWO * f32(u2) - ONE

    @jit
    def sample_cosine_hemisphere(nx, ny, nz, u1, u2):  # type: ignore[no-untyped-def]
        x, y = sample_disk(u1, u2)
        z = f32(math.sqrt(fmax(ZERO, ONE - x * x - y * y)))
        return to_world(nx, ny, nz, x, y, z)

    @jit
    def sample_uniform_hemisphere(nx, ny, nz, u1, u2):  # type: ignore[no-untyped-def]
        z = f32(u1)
        r = f32(math.sqrt(fmax(ZERO, ONE - z * z)))
        phi = TWO_PI * f32(u2)
        return to_world(nx, ny, nz, f32(r * math.cos(phi)), f32(r * math.sin(phi)), z)

    @jit
    def sample_uniform_sphere(u1, u2):  # type: ignore[no-untyped-def]
        z = ONE - TWO * f32(u1)
        r = f32(math.sqrt(fmax(ZERO, ONE - z * z)))
        phi = TWO_PI * f32(u2)
        return f32(r * math.cos(phi)), f32(r * math.sin(phi)), z

    @jit
    def sample_triangle(u1, u2):  # type: ignore[no-untyped-def]
        su = f32(math.sqrt(f32(u1)))
        return su * (ONE - f32(u2)), su * f32(u2)

    @jit
    def sample_cone(ax, ay, az, cos_max, u1, u2):  # type: ignore[no-untyped-def]
        z = ONE - f32(u1) * (ONE - f32(cos_max))
        r = f32(math.sqrt(fmax(ZERO, ONE - z * z)))
        phi = TWO_PI * f32(u2)
        return to_world(ax, ay, az, f32(r * math.cos(phi)), f32(r * math.sin(phi)), z)

    return SimpleNamespace(
        stack_size=STACK,
        fmin=fmin,
        fmax=fmax,
        safe_inverse=safe_inverse,
        intersect_triangle=intersect_triangle,
        box_interval=box_interval,
        intersect_leaf=intersect_leaf,
        closest_hit=closest_hit,
        any_hit=any_hit,
        pcg_hash=pcg_hash,
        random_uniform=random_uniform,
        reverse_bits=reverse_bits,
        owen_hash=owen_hash,
        owen_scramble=owen_scramble,
        sobol_bits=sobol_bits,
        sobol_2d_bits=sobol_2d_bits,
        sobol_2d=sobol_2d,
        orthonormal_basis=orthonormal_basis,
        to_world=to_world,
        sample_disk=sample_disk,
        sample_rect=sample_rect,
        sample_cosine_hemisphere=sample_cosine_hemisphere,
        sample_uniform_hemisphere=sample_uniform_hemisphere,
        sample_uniform_sphere=sample_uniform_sphere,
        sample_triangle=sample_triangle,
        sample_cone=sample_cone,
        PI=PI,
    )


# ---------------------------------------------------------------------------------------------
# CPU target


def _make_local(name: str, with_prefetch: bool) -> pytypes.ModuleType:
    """A namespace whose ``array(n, dtype)`` is a fixed-size per-thread array inside jitted code.

    ``array`` is a numba intrinsic that emits one ``alloca`` of ``[n x dtype]`` in the entry
    block of the function (no heap allocation, no reference counting): on the CPU that is the
    machine stack; on CUDA it is exactly what ``cuda.local.array`` emits (NVVM keeps it in
    registers or local memory). ``n`` must be a compile-time constant. With ``with_prefetch``
    the namespace also has ``prefetch(array, index)`` (``llvm.prefetch``, CPU only).
    """
    from llvmlite import ir
    from numba.core import cgutils, errors
    from numba.core import types as nbt
    from numba.extending import intrinsic

    @intrinsic
    def array(typingctx, shape, dtype):  # type: ignore[no-untyped-def]
        if not isinstance(shape, nbt.IntegerLiteral):
            raise errors.RequireLiteralValue(shape)
        if isinstance(dtype, nbt.DType | nbt.NumberClass):
            nb_dtype = dtype.dtype if isinstance(dtype, nbt.DType) else dtype.instance_type
        else:
            return None
        arrty = nbt.Array(nb_dtype, 1, "C")
        count = int(shape.literal_value)

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            lltype = context.get_data_type(nb_dtype)
            with builder.goto_entry_block():  # one alloca per call frame, left uninitialised
                storage = builder.alloca(ir.ArrayType(lltype, count))
            data = builder.bitcast(storage, lltype.as_pointer())
            ary = context.make_array(arrty)(context, builder)
            intp = context.get_value_type(nbt.intp)
            itemsize = context.get_abi_sizeof(lltype)
            context.populate_array(
                ary,
                data=data,
                shape=[ir.Constant(intp, count)],
                strides=[ir.Constant(intp, itemsize)],
                itemsize=ir.Constant(intp, itemsize),
                meminfo=None,
            )
            return ary._getvalue()

        return arrty(shape, dtype), codegen

    @intrinsic
    def prefetch(typingctx, array, index):  # type: ignore[no-untyped-def]
        """Hint the CPU to fetch ``array[index]`` into all cache levels (``llvm.prefetch``)."""
        if not isinstance(array, nbt.Array) or not isinstance(index, nbt.Integer):
            return None

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            aryty, _ = signature.args
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            # read (0), high temporal locality (3), data cache (1)
            builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return nbt.void(array, index), codegen

    module = pytypes.ModuleType(name)
    module.array = array  # type: ignore[attr-defined]
    if with_prefetch:
        module.prefetch = prefetch  # type: ignore[attr-defined]
    # Registered in sys.modules so that it pickles by name, which keeps numba's cache keys of
    # the functions that use it the same across processes.
    sys.modules[name] = module
    return module


_cpu_builds = itertools.count()


def cpu_jit(fn: Callable[..., Any], *, uuid_prefix: str = "", inline: str = "always") -> Any:
    """The CPU decorator handed to :func:`build_tracer`: njit, fast-math (finite-safe), cached.

    ``inline="always"`` inlines at numba's level: without it the callee is a separate LLVM
    function and every call increments and decrements the reference counts of the array
    arguments (atomics shared between threads). Pass ``inline="never"`` for big functions
    whose compile time matters more.

    numba keys its disk cache of a closure on the pickled closure variables, and a dispatcher
    pickles with a random per-process UUID: the functions that call other device functions
    would miss the cache in every new process. Each dispatcher made here therefore gets a
    deterministic UUID (``uuid_prefix`` + qualified name), so the cache hits across processes.
    """
    import numba

    dispatcher = numba.njit(fn, cache=True, fastmath=dict(CPU_FASTMATH), error_model="numpy", inline=inline)
    if uuid_prefix:
        dispatcher._set_uuid(f"{uuid_prefix}:{fn.__qualname__}")
    return dispatcher


@functools.lru_cache(maxsize=1)
def cpu_local() -> pytypes.ModuleType:
    """The CPU ``local`` namespace: ``array(n, dtype)`` on the machine stack, and ``prefetch``."""
    return _make_local("engine.bake.kernels.cpu_local", with_prefetch=True)


@functools.lru_cache(maxsize=1)
def cuda_local() -> pytypes.ModuleType:
    """The CUDA ``local`` namespace: ``array(n, dtype)`` as ``cuda.local.array`` makes it."""
    return _make_local("engine.bake.kernels.cuda_local", with_prefetch=False)


@functools.lru_cache(maxsize=1)
def cpu_tracer() -> SimpleNamespace:
    """The device functions compiled for the CPU (built once per process, compiled on first call)."""
    prefix = f"engine.bake.kernels.cpu.{next(_cpu_builds)}"
    return build_tracer(functools.partial(cpu_jit, uuid_prefix=prefix), cpu_local())


@functools.lru_cache(maxsize=1)
def _cpu_batch() -> SimpleNamespace:
    import numba
    from numba import prange

    tracer = cpu_tracer()
    closest_hit = tracer.closest_hit
    any_hit = tracer.any_hit
    options = {"parallel": True, "cache": True, "fastmath": dict(CPU_FASTMATH), "error_model": "numpy"}

    @numba.njit(**options)
    def closest_batch(origins, directions, tmin, tmax, nodes, nodes_i, tris, tri_index, out_t, out_tri, out_u, out_v):  # type: ignore[no-untyped-def]
        for i in prange(origins.shape[0]):
            t, k, u, v = closest_hit(
                origins[i, 0], origins[i, 1], origins[i, 2], directions[i, 0], directions[i, 1], directions[i, 2],
                tmin[i], tmax[i], nodes, nodes_i, tris, tri_index,
            )  # fmt: skip
            out_t[i] = t
            out_tri[i] = k
            out_u[i] = u
            out_v[i] = v

    @numba.njit(**options)
    def any_batch(origins, directions, tmin, tmax, nodes, nodes_i, tris, out_hit):  # type: ignore[no-untyped-def]
        for i in prange(origins.shape[0]):
            out_hit[i] = any_hit(
                origins[i, 0], origins[i, 1], origins[i, 2], directions[i, 0], directions[i, 1], directions[i, 2],
                tmin[i], tmax[i], nodes, nodes_i, tris,
            )  # fmt: skip

    return SimpleNamespace(closest_batch=closest_batch, any_batch=any_batch)


def _rays(
    origins: np.ndarray, directions: np.ndarray, tmin: float | np.ndarray, tmax: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    o = np.ascontiguousarray(origins, dtype=np.float32)
    d = np.ascontiguousarray(directions, dtype=np.float32)
    if o.ndim != 2 or o.shape[1] != 3 or d.shape != o.shape:
        raise ConfigError(f"origins {o.shape} and directions {d.shape} must both be (R, 3)", where="trace")
    n = o.shape[0]
    lo = np.ascontiguousarray(np.broadcast_to(np.asarray(tmin, np.float32), (n,)))
    hi = np.ascontiguousarray(np.broadcast_to(np.asarray(tmax, np.float32), (n,)))
    return o, d, lo, hi


def _check_depth(bvh: BVH, stack_size: int = STACK_SIZE) -> None:
    depth = bvh.depth()
    if depth >= stack_size:
        raise ConfigError(
            f"BVH depth {depth} reaches the traversal stack size {stack_size}",
            where="trace",
            hint="rebuild with a larger leaf_size or raise kernels.STACK_SIZE",
        )


def trace_closest_cpu(
    origins: np.ndarray,
    directions: np.ndarray,
    tmax: float | np.ndarray,
    bvh: BVH,
    tmin: float | np.ndarray = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Closest hits of R rays on all cores: ``(t, tri, u, v)``; tri = -1 and t = inf on a miss."""
    o, d, lo, hi = _rays(origins, directions, tmin, tmax)
    _check_depth(bvh)
    n = o.shape[0]
    out_t = np.empty(n, np.float32)
    out_tri = np.empty(n, np.int32)
    out_u = np.empty(n, np.float32)
    out_v = np.empty(n, np.float32)
    _cpu_batch().closest_batch(o, d, lo, hi, *bvh.kernel_arrays(), out_t, out_tri, out_u, out_v)
    return out_t, out_tri, out_u, out_v


def trace_any_cpu(
    origins: np.ndarray,
    directions: np.ndarray,
    tmax: float | np.ndarray,
    bvh: BVH,
    tmin: float | np.ndarray = 0.0,
) -> np.ndarray:
    """Occlusion of R rays on all cores: (R,) bool, True when something lies in (tmin, tmax)."""
    o, d, lo, hi = _rays(origins, directions, tmin, tmax)
    _check_depth(bvh)
    out = np.empty(o.shape[0], np.bool_)
    nodes, nodes_i, tris, _ = bvh.kernel_arrays()
    _cpu_batch().any_batch(o, d, lo, hi, nodes, nodes_i, tris, out)
    return out


# ---------------------------------------------------------------------------------------------
# CUDA target


def cuda_simulated() -> bool:
    """True when numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def explain_device(requested: str = "auto") -> tuple[str, str]:
    """``(device, reason)`` for a requested device: "auto", "cpu" or "cuda"."""
    if requested not in DEVICES:
        raise ConfigError(f"device {requested!r} is not one of {', '.join(DEVICES)}", where="device")
    if requested == "cpu":
        return "cpu", "the CPU was asked for"
    try:
        from numba import cuda

        available = bool(cuda.is_available())
    except Exception as exc:  # pragma: no cover - a broken CUDA install
        available, why = False, f"numba.cuda failed to load ({exc})"
    else:
        why = "numba.cuda.is_available() is False (no CUDA driver or no GPU)"
    if requested == "cuda":
        if not available:
            raise ConfigError(f"CUDA was asked for but {why}", where="device", hint="use device='cpu' or 'auto'")
        if cuda_simulated():
            return "cuda", "CUDA was asked for (numba's CUDA simulator is on: slow, for tests)"
        return "cuda", "CUDA was asked for and a GPU is available"
    if available and not cuda_simulated():
        name = ""
        try:
            name = cuda.get_current_device().name
            name = name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # pragma: no cover
            name = "a CUDA GPU"
        return "cuda", f"auto: {name or 'a CUDA GPU'} is available"
    if available:
        return "cpu", "auto: only numba's CUDA simulator is on, which is far slower than the CPU"
    return "cpu", f"auto: {why}"


def select_device(requested: str = "auto") -> str:
    """The device to trace on, "cpu" or "cuda", for a requested "auto", "cpu" or "cuda"; logs why."""
    device, reason = explain_device(requested)
    log.info("ray tracing device: %s (%s)", device, reason)
    return device


_cuda: Any = None  # numba.cuda once cuda_tracer() ran: a module global, see cuda_tracer()


@functools.lru_cache(maxsize=1)
def cuda_tracer() -> SimpleNamespace:
    """The device functions compiled for CUDA, plus the kernels (built once per process).

    The traversal stack is :func:`cuda_local`'s ``alloca`` array, the same code that
    ``cuda.local.array`` emits (``cuda.local`` itself cannot be handed over as a value: numba
    types it only as an attribute of the ``cuda`` module). The kernels reach ``numba.cuda``
    through the module global ``_cuda``, because numba's CUDA simulator swaps its per-thread
    fake module into a kernel's globals (not into closure variables); under the simulator the
    tracer gets the simulator's stand-in for ``cuda.local``.
    """
    global _cuda
    from numba import cuda

    _cuda = cuda
    if cuda_simulated():  # pragma: no cover - only under NUMBA_ENABLE_CUDASIM=1 (tested in a subprocess)
        from numba.cuda.simulator.kernelapi import FakeCUDALocal

        local: Any = FakeCUDALocal()
    else:
        local = cuda_local()
    tracer = build_tracer(functools.partial(cuda.jit, device=True, fastmath=True), local)
    closest_hit = tracer.closest_hit
    any_hit = tracer.any_hit
    random_uniform = tracer.random_uniform

    @cuda.jit(fastmath=True)
    def trace_closest_kernel(origins, directions, tmin, tmax, nodes, nodes_i, tris, tri_index, out_t, out_tri, out_u, out_v):  # type: ignore[no-untyped-def]
        i = _cuda.grid(1)
        if i < origins.shape[0]:
            t, k, u, v = closest_hit(
                origins[i, 0], origins[i, 1], origins[i, 2], directions[i, 0], directions[i, 1], directions[i, 2],
                tmin[i], tmax[i], nodes, nodes_i, tris, tri_index,
            )  # fmt: skip
            out_t[i] = t
            out_tri[i] = k
            out_u[i] = u
            out_v[i] = v

    @cuda.jit(fastmath=True)
    def trace_any_kernel(origins, directions, tmin, tmax, nodes, nodes_i, tris, out_hit):  # type: ignore[no-untyped-def]
        i = _cuda.grid(1)
        if i < origins.shape[0]:
            out_hit[i] = any_hit(
                origins[i, 0], origins[i, 1], origins[i, 2], directions[i, 0], directions[i, 1], directions[i, 2],
                tmin[i], tmax[i], nodes, nodes_i, tris,
            )  # fmt: skip

    @cuda.jit
    def random_kernel(seed, index, sample, dim, out):  # type: ignore[no-untyped-def]
        i = _cuda.grid(1)
        if i < out.shape[0]:
            out[i] = random_uniform(seed, index[i], sample[i], dim[i])

    sobol_2d = tracer.sobol_2d

    @cuda.jit
    def sobol_kernel(seed, index, sample, pair, out):  # type: ignore[no-untyped-def]
        i = _cuda.grid(1)
        if i < out.shape[0]:
            u1, u2 = sobol_2d(seed, index[i], sample[i], pair[i])
            out[i, 0] = u1
            out[i, 1] = u2

    tracer.trace_closest_kernel = trace_closest_kernel
    tracer.trace_any_kernel = trace_any_kernel
    tracer.random_kernel = random_kernel
    tracer.sobol_kernel = sobol_kernel
    return tracer


class CudaBVH:
    """A BVH uploaded to the GPU once (``cuda.to_device``); pass it to the CUDA trace functions."""

    def __init__(self, bvh: BVH) -> None:
        from numba import cuda

        _check_depth(bvh)
        nodes, _nodes_i, tris, tri_index = bvh.kernel_arrays()
        self.bvh = bvh
        self.nodes = cuda.to_device(nodes)
        # An int32 view of the same device memory where the device array supports it.
        self.nodes_i = self.nodes.view(np.int32) if hasattr(self.nodes, "view") else cuda.to_device(_nodes_i)
        self.tris = cuda.to_device(tris)
        self.tri_index = cuda.to_device(tri_index)

    def arrays(self) -> tuple[Any, Any, Any, Any]:
        return self.nodes, self.nodes_i, self.tris, self.tri_index


def _launch_shape(n: int, threads: int) -> tuple[int, int]:
    return max(1, (n + threads - 1) // threads), threads


def trace_closest_cuda(
    origins: np.ndarray,
    directions: np.ndarray,
    tmax: float | np.ndarray,
    scene: CudaBVH | BVH,
    tmin: float | np.ndarray = 0.0,
    threads_per_block: int = 128,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Closest hits on the GPU, one thread per ray; same results as :func:`trace_closest_cpu`."""
    from numba import cuda

    o, d, lo, hi = _rays(origins, directions, tmin, tmax)
    gpu = scene if isinstance(scene, CudaBVH) else CudaBVH(scene)
    n = o.shape[0]
    tracer = cuda_tracer()
    out_t = cuda.device_array(n, np.float32)
    out_tri = cuda.device_array(n, np.int32)
    out_u = cuda.device_array(n, np.float32)
    out_v = cuda.device_array(n, np.float32)
    if n:
        blocks, threads = _launch_shape(n, threads_per_block)
        tracer.trace_closest_kernel[blocks, threads](
            cuda.to_device(o), cuda.to_device(d), cuda.to_device(lo), cuda.to_device(hi), *gpu.arrays(),
            out_t, out_tri, out_u, out_v,
        )  # fmt: skip
    return out_t.copy_to_host(), out_tri.copy_to_host(), out_u.copy_to_host(), out_v.copy_to_host()


def trace_any_cuda(
    origins: np.ndarray,
    directions: np.ndarray,
    tmax: float | np.ndarray,
    scene: CudaBVH | BVH,
    tmin: float | np.ndarray = 0.0,
    threads_per_block: int = 128,
) -> np.ndarray:
    """Occlusion on the GPU, one thread per ray; same results as :func:`trace_any_cpu`."""
    from numba import cuda

    o, d, lo, hi = _rays(origins, directions, tmin, tmax)
    gpu = scene if isinstance(scene, CudaBVH) else CudaBVH(scene)
    n = o.shape[0]
    out = cuda.device_array(n, np.bool_)
    if n:
        blocks, threads = _launch_shape(n, threads_per_block)
        nodes, nodes_i, tris, _ = gpu.arrays()
        cuda_tracer().trace_any_kernel[blocks, threads](
            cuda.to_device(o), cuda.to_device(d), cuda.to_device(lo), cuda.to_device(hi), nodes, nodes_i, tris, out
        )
    return out.copy_to_host()


def random_uniform_cuda(seed: int, index: np.ndarray, sample: np.ndarray, dim: np.ndarray) -> np.ndarray:
    """``random_uniform`` evaluated on the GPU for arrays of counters (for checks against the CPU)."""
    from numba import cuda

    index = np.ascontiguousarray(index, np.int64)
    sample = np.ascontiguousarray(np.broadcast_to(sample, index.shape), np.int64)
    dim = np.ascontiguousarray(np.broadcast_to(dim, index.shape), np.int64)
    out = cuda.device_array(index.shape[0], np.float32)
    blocks, threads = _launch_shape(index.shape[0], 128)
    cuda_tracer().random_kernel[blocks, threads](np.int64(seed), cuda.to_device(index), cuda.to_device(sample), cuda.to_device(dim), out)
    return out.copy_to_host()


@functools.lru_cache(maxsize=1)
def _cpu_random_batch() -> Callable[..., Any]:
    import numba
    from numba import prange

    random_uniform = cpu_tracer().random_uniform

    @numba.njit(parallel=True, cache=True)
    def batch(seed, index, sample, dim, out):  # type: ignore[no-untyped-def]
        for i in prange(out.shape[0]):
            out[i] = random_uniform(seed, index[i], sample[i], dim[i])

    return batch


def random_uniform_cpu(seed: int, index: np.ndarray, sample: np.ndarray, dim: np.ndarray) -> np.ndarray:
    """``random_uniform`` evaluated on the CPU for arrays of counters (broadcast against ``index``)."""
    index = np.ascontiguousarray(index, np.int64)
    sample = np.ascontiguousarray(np.broadcast_to(sample, index.shape), np.int64)
    dim = np.ascontiguousarray(np.broadcast_to(dim, index.shape), np.int64)
    out = np.empty(index.shape[0], np.float32)
    _cpu_random_batch()(np.int64(seed), index, sample, dim, out)
    return out


def _counters(index: np.ndarray, *others: np.ndarray | int) -> tuple[np.ndarray, ...]:
    """The counters as contiguous 1-D int64 arrays broadcast against each other."""
    arrays = np.broadcast_arrays(*(np.atleast_1d(np.asarray(a, np.int64)) for a in (index, *others)))
    return tuple(np.array(a, np.int64) for a in arrays)  # copies: writable, contiguous


def sobol_2d_cuda(seed: int, index: np.ndarray, sample: np.ndarray | int, pair: np.ndarray | int) -> np.ndarray:
    """``sobol_2d`` evaluated on the GPU for arrays of counters: (n, 2) float32 (for checks against the CPU)."""
    from numba import cuda

    index, sample, pair = _counters(index, sample, pair)
    out = cuda.device_array((index.shape[0], 2), np.float32)
    if index.shape[0]:
        blocks, threads = _launch_shape(index.shape[0], 128)
        cuda_tracer().sobol_kernel[blocks, threads](np.int64(seed), cuda.to_device(index), cuda.to_device(sample),
                                                    cuda.to_device(pair), out)
    return out.copy_to_host()


@functools.lru_cache(maxsize=1)
def _cpu_sobol_batch() -> Callable[..., Any]:
    import numba
    from numba import prange

    tracer = cpu_tracer()
    sobol_2d = tracer.sobol_2d
    sobol_bits = tracer.sobol_bits
    owen_scramble = tracer.owen_scramble

    @numba.njit(parallel=True, cache=True)
    def points(seed, index, sample, pair, out):  # type: ignore[no-untyped-def]
        for i in prange(out.shape[0]):
            u1, u2 = sobol_2d(seed, index[i], sample[i], pair[i])
            out[i, 0] = u1
            out[i, 1] = u2

    @numba.njit(parallel=True, cache=True)
    def raw(index, scramble_seed, out):  # type: ignore[no-untyped-def]
        for i in prange(out.shape[0]):
            x0, x1 = sobol_bits(index[i])
            out[i, 0] = x0
            out[i, 1] = x1
            out[i, 2] = owen_scramble(index[i], scramble_seed[i])

    return SimpleNamespace(points=points, raw=raw)


def sobol_2d_cpu(seed: int, index: np.ndarray, sample: np.ndarray | int, pair: np.ndarray | int) -> np.ndarray:
    """``sobol_2d(seed, index, sample, pair)`` on the CPU for arrays of counters (broadcast against
    ``index``): (n, 2) float32 points in [0, 1)²."""
    index, sample, pair = _counters(index, sample, pair)
    out = np.empty((index.shape[0], 2), np.float32)
    _cpu_sobol_batch().points(np.int64(seed), index, sample, pair, out)
    return out


def sobol_bits_cpu(index: np.ndarray, scramble_seed: np.ndarray | int = 0) -> np.ndarray:
    """(n, 3) int64: the unscrambled 32-bit Sobol' words ``sobol_bits(index)`` of dimensions 0 and 1,
    and ``owen_scramble(index, scramble_seed)`` (the device functions, for tests)."""
    index, scramble_seed = _counters(index, scramble_seed)
    out = np.empty((index.shape[0], 3), np.int64)
    _cpu_sobol_batch().raw(index, scramble_seed, out)
    return out


def trace_closest(
    origins: np.ndarray,
    directions: np.ndarray,
    tmax: float | np.ndarray,
    bvh: BVH | CudaBVH,
    tmin: float | np.ndarray = 0.0,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Closest hits on ``device`` ("cpu", "cuda" or "auto")."""
    if select_device(device) == "cuda":
        return trace_closest_cuda(origins, directions, tmax, bvh, tmin)
    return trace_closest_cpu(origins, directions, tmax, bvh.bvh if isinstance(bvh, CudaBVH) else bvh, tmin)


def trace_any(
    origins: np.ndarray,
    directions: np.ndarray,
    tmax: float | np.ndarray,
    bvh: BVH | CudaBVH,
    tmin: float | np.ndarray = 0.0,
    device: str = "cpu",
) -> np.ndarray:
    """Occlusion on ``device`` ("cpu", "cuda" or "auto")."""
    if select_device(device) == "cuda":
        return trace_any_cuda(origins, directions, tmax, bvh, tmin)
    return trace_any_cpu(origins, directions, tmax, bvh.bvh if isinstance(bvh, CudaBVH) else bvh, tmin)
