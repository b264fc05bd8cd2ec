"""The CUDA kernels against the CPU ones, under numba's CUDA simulator (in a subprocess).

``NUMBA_ENABLE_CUDASIM=1`` must be set before ``numba.cuda`` is first imported, so the CUDA
side runs in a child process that writes its results to an ``.npz``; this process computes
the CPU side and compares. The simulator runs the very same Python source as the GPU would
(one Python thread per CUDA thread), so this checks the kernels' logic, the launch code and
the host wrappers; the real GPU check is ``bench/gpu_check.py``.

A second test compiles the CUDA kernels to PTX with the real CUDA target when libNVVM is
installed (no GPU needed), which the simulator cannot check: typing and lowering for CUDA.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine.bake import kernels
from engine.bake.bvh import build_bvh

ROOT = Path(__file__).resolve().parents[2]


def scene_and_rays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """~100 triangles (a soup plus a closed box around part of it) and 64 rays."""
    rng = np.random.default_rng(42)
    soup = (rng.random((88, 1, 3)) * 4.0 + rng.normal(scale=0.5, size=(88, 3, 3))).astype(np.float32)
    c = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], np.float32) * 2 + 1
    f = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                  [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]])  # fmt: skip
    tri = np.concatenate([soup, c[f]])
    origins = rng.uniform(-0.5, 4.5, (64, 3)).astype(np.float32)
    directions = rng.standard_normal((64, 3)).astype(np.float32)
    directions[:8] = (2.0 - origins[:8])  # some rays straight at the box centre
    return tri, origins, directions


CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {tests!r})
    from test_kernels_cuda_sim import scene_and_rays
    from engine.bake import kernels
    from engine.bake.bvh import build_bvh

    start = time.perf_counter()
    tri, origins, directions = scene_and_rays()
    bvh = build_bvh(tri)
    gpu = kernels.CudaBVH(bvh)
    tmax = np.full(len(origins), 6.0, np.float32)
    t, k, u, v = kernels.trace_closest_cuda(origins, directions, tmax, gpu, tmin=0.01, threads_per_block=32)
    hit = kernels.trace_any_cuda(origins, directions, tmax, gpu, tmin=0.01, threads_per_block=32)
    index = np.arange(64) * 7919 + (1 << 33)
    rand = kernels.random_uniform_cuda(99, index, np.arange(64) % 5, np.arange(64) % 3)
    sobol = kernels.sobol_2d_cuda(99, index, np.arange(64) * 37 + 5, np.arange(64) % 4)
    auto = kernels.select_device("auto")
    forced = kernels.select_device("cuda")
    np.savez({out!r}, t=t, k=k, u=u, v=v, hit=hit, rand=rand, sobol=sobol, index=index,
             devices=np.array([auto, forced]), seconds=time.perf_counter() - start)
    """
)


def run_child(code: str, env_extra: dict[str, str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_cuda_simulator_matches_cpu(tmp_path: Path) -> None:
    out = tmp_path / "sim.npz"
    code = CHILD.format(root=str(ROOT), tests=str(Path(__file__).parent), out=str(out))
    proc = run_child(code, {"NUMBA_ENABLE_CUDASIM": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    sim = np.load(out)

    tri, origins, directions = scene_and_rays()
    bvh = build_bvh(tri)
    tmax = np.full(len(origins), 6.0, np.float32)
    t, k, u, v = kernels.trace_closest_cpu(origins, directions, tmax, bvh, tmin=0.01)
    hit = kernels.trace_any_cpu(origins, directions, tmax, bvh, tmin=0.01)
    assert (k >= 0).sum() >= 16 and (k < 0).sum() >= 4  # the test has both hits and misses
    np.testing.assert_array_equal(sim["k"], k)
    both = k >= 0
    np.testing.assert_allclose(sim["t"][both], t[both], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sim["u"][both], u[both], atol=1e-5)
    np.testing.assert_allclose(sim["v"][both], v[both], atol=1e-5)
    assert np.all(np.isinf(sim["t"][~both]))
    np.testing.assert_array_equal(sim["hit"], hit)
    np.testing.assert_array_equal(sim["hit"], k >= 0)
    # the counter-based RNG gives the same bits on both targets
    rand = kernels.random_uniform_cpu(99, sim["index"], np.arange(64) % 5, np.arange(64) % 3)
    np.testing.assert_array_equal(sim["rand"], rand)
    # and so do the Owen-scrambled Sobol' points
    sobol = kernels.sobol_2d_cpu(99, sim["index"], np.arange(64) * 37 + 5, np.arange(64) % 4)
    assert sobol.shape == (64, 2) and len(np.unique(sobol)) > 120
    np.testing.assert_array_equal(sim["sobol"], sobol)
    # under the simulator "auto" stays on the CPU; "cuda" is honoured
    assert sim["devices"].tolist() == ["cpu", "cuda"]
    assert float(sim["seconds"]) < 30.0


PTX_CHILD = textwrap.dedent(
    """
    import sys, types
    sys.path.insert(0, {root!r})
    try:
        from numba.cuda.cudadrv.nvvm import NVVM
        NVVM()
    except Exception as exc:
        print("SKIP", type(exc).__name__, exc)
        raise SystemExit(0)
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda, types as T
    # Device functions ask the current GPU for its compute capability: there is no GPU here.
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
    from engine.bake import kernels

    tr = kernels.cuda_tracer()
    f1, i1, f2 = T.Array(T.float32, 1, "C"), T.Array(T.int32, 1, "C"), T.Array(T.float32, 2, "C")
    sig = (f2, f2, f1, f1, f1, i1, f1, i1, f1, i1, f1, f1)
    ptx, _ = cuda.compile_ptx(tr.trace_closest_kernel.py_func, sig, cc=(9, 0), fastmath=True)
    assert ".f64" not in ptx, "double precision crept into the closest-hit kernel"
    cuda.compile_ptx(tr.trace_any_kernel.py_func, (f2, f2, f1, f1, f1, i1, f1, T.Array(T.boolean, 1, "C")), cc=(9, 0))
    i64 = T.Array(T.int64, 1, "C")
    cuda.compile_ptx(tr.random_kernel.py_func, (T.int64, i64, i64, i64, f1), cc=(9, 0))
    cuda.compile_ptx(tr.sobol_kernel.py_func, (T.int64, i64, i64, i64, f2), cc=(9, 0))
    f = T.float32
    for name, args in [
        ("sample_cosine_hemisphere", (f, f, f, f, f)), ("sample_uniform_hemisphere", (f, f, f, f, f)),
        ("sample_uniform_sphere", (f, f)), ("sample_triangle", (f, f)), ("sample_disk", (f, f)),
        ("sample_rect", (f, f)), ("sample_cone", (f, f, f, f, f, f)), ("orthonormal_basis", (f, f, f)),
        ("intersect_triangle", (f, f, f, f, f, f, f1, T.int64, f, f)),
    ]:
        cuda.compile_ptx(getattr(tr, name).py_func, args, device=True, cc=(9, 0))
    print("OK", len(ptx))
    """
)


def test_cuda_kernels_compile_to_ptx() -> None:
    """Real CUDA typing and lowering (needs libNVVM, e.g. CUDA_HOME or a conda/pip NVIDIA toolkit)."""
    proc = run_child(PTX_CHILD.format(root=str(ROOT)), {"NUMBA_ENABLE_CUDASIM": "0"}, timeout=300.0)
    assert proc.returncode == 0, proc.stderr[-4000:]
    if proc.stdout.startswith("SKIP"):
        pytest.skip(f"libNVVM not found: {proc.stdout.strip()[5:]}")
    assert proc.stdout.startswith("OK")
