"""The CPU rasterizer (engine.splat.raster) against analytic cases, finite differences, an independent
brute-force numpy renderer and gsplat's own densification strategy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.errors import ConfigError, InputError
from engine.splat.raster import eval_sh, rasterization, rasterize_dense


@pytest.fixture(autouse=True)
def one_thread():
    """These scenes are tiny: one thread avoids thread wake-ups that dominate (and vary) on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

# --------------------------------------------------------------------------------------------
# scenes


def camera(width: int, height: int, focal: float, *, cams: int = 1, dtype: torch.dtype = torch.float64,
           seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """viewmats (C, 4, 4) and Ks (C, 3, 3): camera 0 at the origin looking down +z, others slightly turned."""
    rng = np.random.default_rng(seed)
    viewmats = np.tile(np.eye(4), (cams, 1, 1))
    for c in range(1, cams):
        angle = rng.uniform(-0.15, 0.15)
        rot = np.array([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]])
        viewmats[c, :3, :3] = rot
        viewmats[c, :3, 3] = rng.uniform(-0.1, 0.1, 3)
    k = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    return torch.tensor(viewmats, dtype=dtype), torch.tensor(np.tile(k, (cams, 1, 1)), dtype=dtype)


def random_scene(n: int, *, seed: int = 0, dtype: torch.dtype = torch.float64, depth: tuple[float, float] = (2.0, 4.0),
                 spread: float = 0.5, log_scale: float = -2.5, opacity: tuple[float, float] = (0.3, 0.8),
                 channels: int = 3) -> list[torch.Tensor]:
    """means, quats, scales, opacities, colours of n random anisotropic Gaussians in front of camera 0."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(*depth, n)
    means = np.c_[rng.uniform(-spread, spread, (n, 2)) * z[:, None], z]
    quats = rng.normal(size=(n, 4))
    scales = np.exp(rng.normal(log_scale, 0.4, (n, 3)))
    opacities = rng.uniform(*opacity, n)
    colors = rng.uniform(0, 1, (n, channels))
    return [torch.tensor(a, dtype=dtype) for a in (means, quats, scales, opacities, colors)]


# --------------------------------------------------------------------------------------------
# an independent brute-force renderer (numpy, float64, every Gaussian at every pixel)


def reference_render(means, quats, scales, opacities, colors, viewmat, k, width, height, *, eps2d=0.3,
                     near=0.01, background=None):
    """gsplat's math written out plainly: EWA projection, then sequential front-to-back blending per Gaussian."""
    means, quats, scales, opacities, colors = (np.asarray(a, np.float64) for a in
                                               (means, quats, scales, opacities, colors))
    viewmat, k = np.asarray(viewmat, np.float64), np.asarray(k, np.float64)
    q = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    w, x, y, z = q.T
    rot = np.empty((len(q), 3, 3))
    rot[:, 0] = np.c_[w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)]
    rot[:, 1] = np.c_[2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)]
    rot[:, 2] = np.c_[2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z]
    cov = np.einsum("nij,nj,nkj->nik", rot, scales**2, rot)
    r, t = viewmat[:3, :3], viewmat[:3, 3]
    pc = means @ r.T + t
    cov_c = r @ cov @ r.T
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    lim_x = (cx / fx + 0.3 * width / (2 * fx), (width - cx) / fx + 0.3 * width / (2 * fx))
    lim_y = (cy / fy + 0.3 * height / (2 * fy), (height - cy) / fy + 0.3 * height / (2 * fy))
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    image = np.zeros((height, width, colors.shape[1]))
    trans = np.ones((height, width))
    done = np.zeros((height, width), bool)
    for i in np.argsort(pc[:, 2], kind="stable"):  # one Gaussian at a time, all pixels at once
        px, py, pz = pc[i]
        if pz < near:
            continue
        tx = pz * np.clip(px / pz, -lim_x[0], lim_x[1])
        ty = pz * np.clip(py / pz, -lim_y[0], lim_y[1])
        jac = np.array([[fx / pz, 0, -fx * tx / pz**2], [0, fy / pz, -fy * ty / pz**2]])
        cov2 = jac @ cov_c[i] @ jac.T + eps2d * np.eye(2)
        if np.linalg.det(cov2) <= 0 or opacities[i] < 1 / 255:
            continue
        conic = np.linalg.inv(cov2)
        dx, dy = fx * px / pz + cx - xs, fy * py / pz + cy - ys
        sigma = 0.5 * (conic[0, 0] * dx * dx + conic[1, 1] * dy * dy) + conic[0, 1] * dx * dy
        alpha = np.minimum(0.999, opacities[i] * np.exp(-sigma))
        use = (sigma >= 0) & (alpha >= 1 / 255) & ~done
        next_t = trans * (1 - alpha)
        stop = use & (next_t <= 1e-4)
        done |= stop
        use &= ~stop
        image += np.where(use, alpha * trans, 0)[..., None] * colors[i]
        trans = np.where(use, next_t, trans)
    if background is not None:
        image += trans[..., None] * np.asarray(background)
    return image, 1 - trans


# --------------------------------------------------------------------------------------------
# (f) tiles against brute force


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_tiled_render_matches_brute_force(dtype: torch.dtype, tol: float) -> None:
    width, height = 37, 29  # not a multiple of the tile size
    means, quats, scales, opac, colors = random_scene(120, seed=1, dtype=dtype, opacity=(0.05, 0.99))
    scales[:5] *= 8  # a few large splats covering many tiles
    scales[5:10, 0] *= 20  # needles
    means[10:14, 0] = torch.tensor([1.1, -1.1, 1.3, -1.3], dtype=dtype) * means[10:14, 2]  # beyond the FOV limit
    scales[10:14] = 0.4
    viewmats, ks = camera(width, height, 30.0, dtype=dtype)
    bg = torch.tensor([[0.2, 0.5, 0.9]], dtype=dtype)
    img, alpha, _ = rasterize_dense(means, quats, scales, opac, colors, viewmats, ks, width, height, backgrounds=bg)
    ref_img, ref_alpha = reference_render(means, quats, scales, opac, colors, viewmats[0], ks[0], width, height,
                                          background=bg[0])
    assert ref_alpha.max() > 0.99 and ref_alpha.min() < 0.5  # a scene with both opaque and thin areas
    np.testing.assert_allclose(img[0].numpy(), ref_img, atol=tol, rtol=0)
    np.testing.assert_allclose(alpha[0, ..., 0].numpy(), ref_alpha, atol=tol, rtol=0)


def test_tile_size_and_chunking_do_not_change_the_image() -> None:
    means, quats, scales, opac, colors = random_scene(300, seed=2, opacity=(0.1, 0.99))
    viewmats, ks = camera(40, 32, 35.0)
    base = rasterize_dense(means, quats, scales, opac, colors, viewmats, ks, 40, 32)[0]
    for tile, chunk in ((16, 1 << 22), (4, 1 << 22), (8, 500), (5, 1)):
        other = rasterize_dense(means, quats, scales, opac, colors, viewmats, ks, 40, 32, cpu_tile_size=tile,
                                max_chunk_elements=chunk)[0]
        torch.testing.assert_close(other, base, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------------------------
# (a) finite differences


def _gradcheck(fn, inputs) -> None:
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradients_match_finite_differences() -> None:
    means, quats, scales, opac, colors = random_scene(5, seed=3, spread=0.25, log_scale=-1.0)
    means[4, 0], scales[4] = 0.9 * means[4, 2], 0.6  # x/z beyond gsplat's FOV limit: the clamped Jacobian
    viewmats, ks = camera(8, 8, 8.0)
    bg = torch.tensor([[0.3, 0.1, 0.7]], dtype=torch.float64)
    inputs = [t.clone().requires_grad_() for t in (means, quats, scales, opac, colors, bg)]

    def render(m, q, s, o, c, b):
        img, alpha, _ = rasterize_dense(m, q, s, o, c, viewmats, ks, 8, 8, backgrounds=b, render_mode="RGB+ED")
        return img, alpha

    _, alpha = render(*inputs)
    assert alpha.min() > 0.0 and alpha.max() < 0.99  # splats cover every pixel, nothing saturates
    _gradcheck(render, inputs)


def test_sh_gradients_match_finite_differences() -> None:
    means, quats, scales, opac, _ = random_scene(3, seed=4, spread=0.25, log_scale=-1.0)
    coeffs = torch.tensor(np.random.default_rng(4).normal(0, 0.3, (3, 9, 3)))
    viewmats, ks = camera(6, 6, 6.0, cams=2)
    mix = torch.tensor(np.random.default_rng(5).normal(size=(2, 6, 6, 3)))
    inputs = [t.clone().requires_grad_() for t in (means, quats, scales, opac, coeffs, viewmats)]

    def render(m, q, s, o, c, v):  # a random mix of the channels keeps the check short
        img, alpha, _ = rasterize_dense(m, q, s, o, c, v, ks, 6, 6, sh_degree=2, packed=False)
        return (img * mix).sum(-1), alpha

    _gradcheck(render, inputs)


def test_antialiased_gradients_match_finite_differences() -> None:
    means, quats, scales, opac, colors = random_scene(4, seed=5, spread=0.25, log_scale=-2.2)
    viewmats, ks = camera(8, 8, 8.0)
    inputs = [t.clone().requires_grad_() for t in (means, quats, scales, opac, colors)]

    def render(m, q, s, o, c):
        return rasterize_dense(m, q, s, o, c, viewmats, ks, 8, 8, rasterize_mode="antialiased")[:2]

    _gradcheck(render, inputs)


# --------------------------------------------------------------------------------------------
# (b) one isotropic Gaussian facing the camera


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_isotropic_gaussian_profile_is_analytic(dtype: torch.dtype, tol: float) -> None:
    width = height = 48
    focal, depth, scale, opacity = 40.0, 2.0, 0.12, 0.8
    means = torch.tensor([[0.0, 0.0, depth]], dtype=dtype)
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=dtype)
    scales = torch.full((1, 3), scale, dtype=dtype)
    viewmats, ks = camera(width, height, focal, dtype=dtype)
    img, alpha, meta = rasterize_dense(means, quats, scales, torch.tensor([opacity], dtype=dtype),
                                       torch.ones(1, 1, dtype=dtype), viewmats, ks, width, height, packed=False)
    var = (focal * scale / depth) ** 2 + 0.3  # projected variance + eps2d
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    r2 = (xs - width / 2) ** 2 + (ys - height / 2) ** 2
    expected = opacity * np.exp(-r2 / (2 * var))
    expected[expected < 1 / 255] = 0
    np.testing.assert_allclose(alpha[0, ..., 0].numpy(), expected, atol=tol, rtol=0)
    np.testing.assert_allclose(img[0, ..., 0].numpy(), expected, atol=tol, rtol=0)
    # gsplat's opacity-aware box: ceil(min(3.33, sqrt(2 ln(255 o))) sqrt(var))
    radius = math.ceil(min(3.33, math.sqrt(2 * math.log(255 * opacity))) * math.sqrt(var))
    assert meta["radii"][0, 0].tolist() == [radius, radius]
    torch.testing.assert_close(meta["means2d"][0, 0], torch.tensor([width / 2, height / 2], dtype=dtype))
    torch.testing.assert_close(meta["conics"][0, 0], torch.tensor([1 / var, 0.0, 1 / var], dtype=dtype))


# --------------------------------------------------------------------------------------------
# (c) occlusion, blending, early stop


def _two_splats(depths, opacities, colors):
    n = len(depths)
    means = torch.tensor([[0.0, 0.0, d] for d in depths], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]] * n, dtype=torch.float64)
    scales = torch.full((n, 3), 0.3, dtype=torch.float64)
    return means, quats, scales, torch.tensor(opacities, dtype=torch.float64), torch.tensor(colors, dtype=torch.float64)


def test_near_splat_occludes_far_one_whatever_the_input_order() -> None:
    viewmats, ks = camera(16, 16, 10.0)
    red, green = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    near_first = rasterize_dense(*_two_splats([2.0, 3.0], [0.9, 0.7], [red, green]), viewmats, ks, 16, 16)
    far_first = rasterize_dense(*_two_splats([3.0, 2.0], [0.7, 0.9], [green, red]), viewmats, ks, 16, 16)
    torch.testing.assert_close(near_first[0], far_first[0], atol=1e-14, rtol=0)
    centre = near_first[0][0, 8, 8]  # pixel centre (8.5, 8.5) is close to the projected means (8, 8)
    a1, a2 = near_first[2]["opacities"][:2]  # packed: camera 0, Gaussians 0 and 1
    assert centre[0] > 5 * centre[1] > 0  # red in front, green shows through
    # exact two-layer blending at that pixel
    sig_near = 0.5 * (0.5**2 + 0.5**2) / ((10 * 0.3 / 2.0) ** 2 + 0.3)
    sig_far = 0.5 * (0.5**2 + 0.5**2) / ((10 * 0.3 / 3.0) ** 2 + 0.3)
    alpha_near, alpha_far = float(a1) * math.exp(-sig_near), float(a2) * math.exp(-sig_far)
    torch.testing.assert_close(centre, torch.tensor([alpha_near, (1 - alpha_near) * alpha_far, 0.0],
                                                    dtype=torch.float64), atol=1e-12, rtol=0)


def test_weights_and_transmittance_sum_to_one() -> None:
    means, quats, scales, opac, _ = random_scene(200, seed=6, opacity=(0.05, 0.95))
    viewmats, ks = camera(24, 24, 20.0)
    ones = torch.ones(200, 1, dtype=torch.float64)
    img, alpha, _ = rasterize_dense(means, quats, scales, opac, ones, viewmats, ks, 24, 24,
                                    backgrounds=torch.ones(1, 1, dtype=torch.float64))
    torch.testing.assert_close(img, torch.ones_like(img), atol=1e-12, rtol=0)  # Σ α_k T_k + T_final = 1
    img0, _, _ = rasterize_dense(means, quats, scales, opac, ones, viewmats, ks, 24, 24)
    torch.testing.assert_close(img0, alpha, atol=1e-12, rtol=0)  # Σ α_k T_k = 1 − T_final


def test_pixel_stops_before_the_splat_that_would_make_it_opaque() -> None:
    """gsplat's exclusive early stop: after 0.999, the next 0.999 would leave T = 1e-6 ≤ 1e-4, so it is not drawn."""
    viewmats, ks = camera(16, 16, 10.0)
    splats = _two_splats([2.0, 3.0, 4.0], [1.0, 1.0, 1.0], [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    splats[2][:] = 5.0  # wide: o·exp(−σ) > 0.999 at the centre pixel, so α clamps to 0.999
    img, alpha, _ = rasterize_dense(*splats, viewmats, ks, 16, 16)
    torch.testing.assert_close(img[0, 8, 8], torch.tensor([0.999, 0, 0], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(alpha[0, 8, 8, 0], torch.tensor(0.999, dtype=torch.float64))
    # T: 1 → ~0.01 → ~5e-4 (> 1e-4: drawn) → ~5e-5 (≤ 1e-4: the third is not drawn)
    splats = _two_splats([2.0, 3.0, 4.0], [0.99, 0.95, 0.9], [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    splats[2][:] = 5.0
    img, alpha, _ = rasterize_dense(*splats, viewmats, ks, 16, 16)
    a1, a2 = (o * math.exp(-0.25 / ((10 * 5.0 / z) ** 2 + 0.3)) for o, z in ((0.99, 2.0), (0.95, 3.0)))
    torch.testing.assert_close(img[0, 8, 8], torch.tensor([a1, (1 - a1) * a2, 0], dtype=torch.float64),
                               atol=1e-12, rtol=0)


# --------------------------------------------------------------------------------------------
# (d) spherical harmonics


def _sh_numpy(dirs: np.ndarray, coeffs: np.ndarray, degree: int) -> np.ndarray:
    """The Inria 3DGS form of the real SH basis (independent of gsplat's Sloan form), degrees 0..3."""
    c0, c1 = 0.28209479177387814, 0.4886025119029199
    c2 = [1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396]
    c3 = [-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
          1.445305721320277, -0.5900435899266435]
    d = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
    x, y, z = d[:, 0:1], d[:, 1:2], d[:, 2:3]
    out = c0 * coeffs[:, 0]
    if degree >= 1:
        out = out - c1 * y * coeffs[:, 1] + c1 * z * coeffs[:, 2] - c1 * x * coeffs[:, 3]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out = (out + c2[0] * xy * coeffs[:, 4] + c2[1] * yz * coeffs[:, 5] + c2[2] * (2 * zz - xx - yy) * coeffs[:, 6]
               + c2[3] * xz * coeffs[:, 7] + c2[4] * (xx - yy) * coeffs[:, 8])
    if degree >= 3:
        out = (out + c3[0] * y * (3 * xx - yy) * coeffs[:, 9] + c3[1] * xy * z * coeffs[:, 10]
               + c3[2] * y * (4 * zz - xx - yy) * coeffs[:, 11] + c3[3] * z * (2 * zz - 3 * xx - 3 * yy) * coeffs[:, 12]
               + c3[4] * x * (4 * zz - xx - yy) * coeffs[:, 13] + c3[5] * z * (xx - yy) * coeffs[:, 14]
               + c3[6] * x * (xx - 3 * yy) * coeffs[:, 15])
    return out


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_sh_matches_the_inria_basis(degree: int) -> None:
    rng = np.random.default_rng(degree)
    dirs, coeffs = rng.normal(size=(500, 3)) * 3, rng.normal(size=(500, 16, 3))
    ours = eval_sh(degree, torch.tensor(dirs), torch.tensor(coeffs)).numpy()
    np.testing.assert_allclose(ours, _sh_numpy(dirs, coeffs, degree), atol=1e-12)


def test_sh_basis_is_orthonormal_up_to_degree_4() -> None:
    # Gauss-Legendre in cos θ × uniform φ integrates polynomials of this degree exactly
    nodes, weights = np.polynomial.legendre.leggauss(12)
    phi = np.arange(24) * 2 * np.pi / 24
    ct, ph = np.meshgrid(nodes, phi, indexing="ij")
    st = np.sqrt(1 - ct**2)
    dirs = np.stack([st * np.cos(ph), st * np.sin(ph), ct], -1).reshape(-1, 3)
    w = (np.repeat(weights, 24) * 2 * np.pi / 24)
    basis = eval_sh(4, torch.tensor(dirs)[:, None, :].expand(-1, 25, 3),
                    torch.eye(25, dtype=torch.float64)[None, :, :, None].expand(len(dirs), 25, 25, 3))[..., 0].numpy()
    gram = np.einsum("p,pi,pj->ij", w, basis, basis)
    np.testing.assert_allclose(gram, np.eye(25), atol=1e-10)


def test_sh_colours_in_the_render() -> None:
    """Degree 0: colour = 0.5 + C0·dc; degree 1: view dependent, evaluated towards mean − camera centre."""
    width = height = 16
    means = torch.tensor([[0.3, -0.2, 3.0]], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64)
    scales = torch.full((1, 3), 0.5, dtype=torch.float64)
    opac = torch.tensor([0.999], dtype=torch.float64)  # the centre pixel clamps to α = 0.999
    viewmats, ks = camera(width, height, 12.0, cams=2, seed=7)
    coeffs = torch.tensor(np.random.default_rng(7).normal(0, 0.4, (1, 4, 3)))
    for degree in (0, 1):
        img, alpha, meta = rasterize_dense(means, quats, scales, opac, coeffs, viewmats, ks, width, height,
                                           sh_degree=degree, packed=False)
        for cam in range(2):
            campos = torch.linalg.inv(viewmats[cam])[:3, 3].numpy()
            expected = np.maximum(_sh_numpy(means.numpy() - campos, coeffs.numpy(), degree)[0] + 0.5, 0)
            u, v = (int(a) for a in meta["means2d"][cam, 0].detach())
            np.testing.assert_allclose(img[cam, v, u].numpy() / alpha[cam, v, u].numpy(), expected, atol=1e-12)
    assert not np.allclose(img[0, 8, 8].numpy(), img[1, 8, 8].numpy(), atol=1e-3)  # degree 1 depends on the view


# --------------------------------------------------------------------------------------------
# gsplat's own PyTorch reference (gsplat.cuda._torch_impl runs on CPU)


def test_projection_and_sh_match_gsplats_torch_reference() -> None:
    from gsplat.cuda import _torch_impl as ref

    from engine.splat.raster import project_gaussians, quat_scale_to_covar

    means, quats, scales, opac, _ = random_scene(200, seed=18, spread=0.9)
    means[:10, 0] = 1.2 * means[:10, 2]  # beyond the FOV limit
    viewmats, ks = camera(40, 30, 30.0, cams=2)
    covars = quat_scale_to_covar(quats, scales)
    ref_covars = ref._quat_scale_to_covar_preci(quats, scales, compute_preci=False)[0]
    torch.testing.assert_close(covars, ref_covars, atol=1e-14, rtol=1e-12)
    ours = project_gaussians(means, quats, scales, opac, viewmats, ks, 40, 30, antialiased=True)
    radii, means2d, depths, conics, comp = ref._fully_fused_projection(means, ref_covars, viewmats, ks, 40, 30,
                                                                       calc_compensations=True)
    visible = (ours.radii > 0).all(-1)
    assert 100 < visible.sum() < 400 and not (visible & ~(radii > 0).all(-1)).any()
    for mine, theirs in ((ours.means2d, means2d), (ours.depths, depths), (ours.conics, conics),
                         (ours.compensations, comp)):
        torch.testing.assert_close(mine[visible], theirs[visible], atol=1e-12, rtol=1e-10)
    dirs, coeffs = torch.randn(100, 3, dtype=torch.float64), torch.randn(100, 25, 3, dtype=torch.float64)
    for degree in range(5):
        torch.testing.assert_close(eval_sh(degree, dirs, coeffs), ref._spherical_harmonics(degree, dirs, coeffs))


# --------------------------------------------------------------------------------------------
# render modes, cameras, packing


def test_render_modes_and_depth() -> None:
    means, quats, scales, opac, colors = random_scene(60, seed=8)
    viewmats, ks = camera(20, 20, 16.0, cams=2)
    rgb, alpha, _ = rasterize_dense(means, quats, scales, opac, colors, viewmats, ks, 20, 20)
    rgbd, _, _ = rasterize_dense(means, quats, scales, opac, colors, viewmats, ks, 20, 20, render_mode="RGB+D")
    ed, _, _ = rasterize_dense(means, quats, scales, opac, colors, viewmats, ks, 20, 20, render_mode="ED")
    d, _, meta = rasterize_dense(means, quats, scales, opac, colors, viewmats, ks, 20, 20, render_mode="D",
                                 backgrounds=torch.ones(2, 3, dtype=torch.float64))
    assert rgbd.shape == (2, 20, 20, 4) and d.shape == ed.shape == (2, 20, 20, 1)
    torch.testing.assert_close(rgbd[..., :3], rgb)
    torch.testing.assert_close(rgbd[..., 3:], d)
    covered = alpha > 0.5
    torch.testing.assert_close(ed[covered], (d / alpha.clamp_min(1e-10))[covered])
    # expected depth lies within the depths of the visible Gaussians
    assert meta["depths"].min() - 1e-9 <= ed[covered].min() and ed[covered].max() <= meta["depths"].max() + 1e-9


def test_packed_and_dense_layouts_agree() -> None:
    means, quats, scales, opac, colors = random_scene(80, seed=9, spread=0.7)
    viewmats, ks = camera(24, 20, 18.0, cams=3)
    packed = rasterize_dense(means, quats, scales, opac, colors, viewmats, ks, 24, 20, packed=True)
    dense = rasterize_dense(means, quats, scales, opac, colors, viewmats, ks, 24, 20, packed=False)
    torch.testing.assert_close(packed[0], dense[0], atol=1e-13, rtol=0)
    pm, dm = packed[2], dense[2]
    cam, gid = pm["camera_ids"], pm["gaussian_ids"]
    visible = (dm["radii"] > 0).all(-1)
    assert visible.sum() == len(gid) < 3 * 80  # some Gaussians are off screen in some views
    for key in ("radii", "means2d", "depths", "conics", "opacities", "tiles_per_gauss"):
        torch.testing.assert_close(pm[key], dm[key][cam, gid])
    # every camera renders like the same camera alone
    for c in range(3):
        alone = rasterize_dense(means, quats, scales, opac, colors, viewmats[c:c + 1], ks[c:c + 1], 24, 20)[0]
        torch.testing.assert_close(alone[0], dense[0][c], atol=1e-13, rtol=0)


def test_per_camera_colours_and_wide_channels() -> None:
    means, quats, scales, opac, _ = random_scene(30, seed=10)
    viewmats, ks = camera(16, 16, 14.0, cams=2)
    colors = torch.rand(2, 30, 40, dtype=torch.float64)  # more channels than gsplat's channel chunk of 32
    img, _, _ = rasterize_dense(means, quats, scales, opac, colors, viewmats, ks, 16, 16)
    for c in range(2):
        alone = rasterize_dense(means, quats, scales, opac, colors[c], viewmats[c:c + 1], ks[c:c + 1], 16, 16)[0]
        torch.testing.assert_close(img[c], alone[0])


def test_nothing_visible_renders_the_background_and_backpropagates() -> None:
    means, quats, scales, opac, colors = random_scene(10, seed=17)
    means[:, 2] *= -1  # all behind the camera
    viewmats, ks = camera(16, 16, 14.0)
    params = [t.requires_grad_() for t in (means, quats, scales, opac, colors)]
    bg = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)
    img, alpha, meta = rasterize_dense(*params, viewmats, ks, 16, 16, backgrounds=bg)
    assert len(meta["gaussian_ids"]) == 0 and (alpha == 0).all()
    torch.testing.assert_close(img, bg[:, None, None, :].expand(1, 16, 16, 3))
    img.sum().backward()  # the trainer's loss.backward() must not fail on an empty view
    assert (params[0].grad == 0).all()


def test_culling_rules() -> None:
    viewmats, ks = camera(32, 32, 30.0)
    means = torch.tensor([[0, 0, 3.0], [0, 0, -3.0], [0, 0, 0.005], [50, 0, 3.0], [0.1, 0, 3.0], [0, 0.1, 3.0]],
                         dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]] * 6, dtype=torch.float64)
    scales = torch.full((6, 3), 0.05, dtype=torch.float64)
    opac = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5 / 255, 0.5], dtype=torch.float64)
    _, _, meta = rasterize_dense(means, quats, scales, opac, torch.ones(6, 3, dtype=torch.float64), viewmats, ks,
                                 32, 32, packed=False, far_plane=10.0)
    # visible; behind; nearer than near_plane; off screen; below 1/255 opacity; visible
    assert ((meta["radii"][0] > 0).all(-1)).tolist() == [True, False, False, False, False, True]
    _, _, meta = rasterize_dense(means, quats, scales, opac, torch.ones(6, 3, dtype=torch.float64), viewmats, ks,
                                 32, 32, packed=False, radius_clip=10.0)
    assert not (meta["radii"] > 0).any()  # every radius is below the clip


# --------------------------------------------------------------------------------------------
# (e) meta and gsplat's DefaultStrategy


def test_meta_contents() -> None:
    means, quats, scales, opac, colors = random_scene(50, seed=11)
    viewmats, ks = camera(20, 18, 16.0, cams=2, dtype=torch.float32)
    params = [t.float().requires_grad_() for t in (means, quats, scales, opac, colors)]
    img, alpha, meta = rasterize_dense(*params, viewmats, ks, 20, 18, packed=False, absgrad=True)
    assert img.shape == (2, 18, 20, 3) and alpha.shape == (2, 18, 20, 1) and img.dtype == torch.float32
    assert meta["radii"].shape == (2, 50, 2) and meta["radii"].dtype == torch.int32
    assert meta["means2d"].shape == (2, 50, 2) and meta["depths"].shape == (2, 50)
    assert meta["conics"].shape == (2, 50, 3) and meta["opacities"].shape == (2, 50)
    assert (meta["width"], meta["height"], meta["n_cameras"], meta["tile_size"]) == (20, 18, 2, 16)
    assert (meta["tile_width"], meta["tile_height"]) == (2, 2) and meta["tiles_per_gauss"].shape == (2, 50)
    assert meta["gaussian_ids"] is None
    (img.square().sum() + alpha.sum()).backward()
    grad = meta["means2d"].grad
    assert grad is not None and grad.shape == (2, 50, 2)
    visible = (meta["radii"] > 0).all(-1)
    assert (grad[visible].abs().sum(-1) > 0).all() and (grad[~visible] == 0).all()
    absgrad = meta["means2d"].absgrad
    assert absgrad.shape == (2, 50, 2) and (absgrad >= grad.abs() - 1e-6).all()
    assert (absgrad > grad.abs() + 1e-4).any()  # opposite signs at different pixels cancel only in .grad
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_absgrad_is_the_sum_of_per_pixel_absolute_gradients() -> None:
    means, quats, scales, opac, colors = random_scene(4, seed=12, spread=0.25, log_scale=-1.8)
    viewmats, ks = camera(6, 6, 6.0)
    img, _, meta = rasterize_dense(means.requires_grad_(), quats, scales, opac, colors, viewmats, ks, 6, 6,
                                   absgrad=True)
    weights = torch.rand(6, 6, 3, dtype=torch.float64)
    (img[0] * weights).sum().backward(retain_graph=True)
    got = meta["means2d"].absgrad.clone()
    expected = torch.zeros_like(got)
    for v in range(6):
        for u in range(6):
            (g,) = torch.autograd.grad((img[0, v, u] * weights[v, u]).sum(), meta["means2d"], retain_graph=True)
            expected += g.abs()
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-9)


def _strategy_params(n: int, seed: int) -> tuple[dict[str, torch.nn.Parameter], dict[str, torch.optim.Optimizer]]:
    means, quats, scales, opac, colors = random_scene(n, seed=seed, dtype=torch.float32, log_scale=-3.0)
    params = {
        "means": means, "quats": quats, "scales": torch.log(scales), "opacities": torch.logit(opac),
        "colors": colors,
    }
    params = {k: torch.nn.Parameter(v) for k, v in params.items()}
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    return params, optimizers


def test_default_strategy_runs_on_our_meta() -> None:
    from gsplat import DefaultStrategy

    params, optimizers = _strategy_params(300, seed=13)
    viewmats, ks = camera(32, 32, 28.0, cams=2, dtype=torch.float32)
    target = torch.rand(2, 32, 32, 3)
    for packed in (False, True):
        n_start = len(params["means"])
        absgrad = packed  # both layouts, both gradient kinds
        strategy = DefaultStrategy(refine_start_iter=2, refine_every=3, reset_every=1000, absgrad=absgrad)
        strategy.check_sanity(params, optimizers)
        state = strategy.initialize_state(scene_scale=1.0)
        for step in range(8):  # refinements at steps 3 and 6
            img, _, info = rasterize_dense(params["means"], params["quats"], torch.exp(params["scales"]),
                                           torch.sigmoid(params["opacities"]), params["colors"], viewmats, ks, 32, 32,
                                           packed=packed, absgrad=absgrad)
            strategy.step_pre_backward(params, optimizers, state, step, info)
            loss = (img - target).abs().mean()
            loss.backward()
            strategy.step_post_backward(params, optimizers, state, step, info, packed=packed)
            for opt in optimizers.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
        assert state["count"].shape == (len(params["means"]),) and state["count"].sum() > 0  # step 7 counted
        assert len(params["means"]) > n_start
        assert all(len(p) == len(params["means"]) for p in params.values())


def test_default_strategy_duplicates_splits_and_prunes_as_expected() -> None:
    from gsplat import DefaultStrategy

    params, optimizers = _strategy_params(40, seed=14)
    with torch.no_grad():
        params["scales"][:20] = math.log(0.005)  # small: duplicated when their gradient is high
        params["scales"][20:] = math.log(0.05)  # large: split when their gradient is high
        params["opacities"][:] = torch.logit(torch.tensor(0.6))
        params["opacities"][[5, 25]] = torch.logit(torch.tensor(0.003))  # below prune_opa (and 1/255: not drawn)
        params["means"][[10, 30], 2] = -5.0  # behind the camera: never seen, gradient 0
    viewmats, ks = camera(32, 32, 28.0, dtype=torch.float32)
    strategy = DefaultStrategy()  # default parameters
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=1.0)
    step = strategy.refine_start_iter + strategy.refine_every  # a refinement step (600)
    img, _, info = rasterize_dense(params["means"], params["quats"], torch.exp(params["scales"]),
                                   torch.sigmoid(params["opacities"]), params["colors"], viewmats, ks, 32, 32,
                                   packed=False)
    strategy.step_pre_backward(params, optimizers, state, step, info)
    (img - 1.0).square().sum().backward()
    # what the strategy will see: |dL/dmeans2d| in normalised screen units, per Gaussian
    grad2d = (info["means2d"].grad[0] * torch.tensor([32 / 2, 32 / 2])).norm(dim=-1)
    high = grad2d > strategy.grow_grad2d
    small = torch.arange(40) < 20
    pruned = torch.zeros(40, dtype=torch.bool)
    pruned[[5, 25]] = True
    assert high[~pruned].sum() >= 30 and not high[[5, 10, 25, 30]].any()  # drawn ones have high gradients
    n_dupli, n_split = int((high & small).sum()), int((high & ~small).sum())
    before = len(params["means"])
    strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
    # duplicated ones are added, split ones replaced by two, low-opacity ones pruned (after growth)
    assert len(params["means"]) == before + n_dupli + n_split - 2
    assert all(len(p) == len(params["means"]) for p in params.values())
    assert (torch.sigmoid(params["opacities"]) >= strategy.prune_opa).all()
    # small ones: the 19 kept originals and their duplicates, and the two halves of every split one
    assert (torch.exp(params["scales"]).max(-1).values < 0.05 / 1.5).sum() == 19 + n_dupli + 2 * n_split


# --------------------------------------------------------------------------------------------
# the dispatching wrapper and bad input


def test_wrapper_dispatches_to_the_cpu_rasterizer() -> None:
    means, quats, scales, opac, colors = random_scene(20, seed=15)
    viewmats, ks = camera(16, 16, 14.0)
    ours = rasterize_dense(means, quats, scales, opac, colors, viewmats, ks, 16, 16, packed=False)
    wrapped = rasterization(means, quats, scales, opac, colors, viewmats, ks, 16, 16, packed=False, sparse_grad=True,
                            camera_model="pinhole")
    torch.testing.assert_close(wrapped[0], ours[0])
    with pytest.raises(ConfigError, match="fisheye"):
        rasterization(means, quats, scales, opac, colors, viewmats, ks, 16, 16, camera_model="fisheye")
    with pytest.raises(ConfigError, match="unknown"):
        rasterization(means, quats, scales, opac, colors, viewmats, ks, 16, 16, antialias=True)


def test_bad_input_is_refused_clearly() -> None:
    means, quats, scales, opac, colors = random_scene(10, seed=16)
    viewmats, ks = camera(16, 16, 14.0)
    with pytest.raises(InputError, match=r"means has shape \(10, 2\)"):
        rasterize_dense(means[:, :2], quats, scales, opac, colors, viewmats, ks, 16, 16)
    with pytest.raises(InputError, match="colors"):
        rasterize_dense(means, quats, scales, opac, colors, viewmats, ks, 16, 16, sh_degree=1)
    with pytest.raises(ConfigError, match="render_mode"):
        rasterize_dense(means, quats, scales, opac, colors, viewmats, ks, 16, 16, render_mode="N")
    bad = means.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        rasterize_dense(bad, quats, scales, opac, colors, viewmats, ks, 16, 16)
