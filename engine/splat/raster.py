"""CPU twin of gsplat's ``rasterization``: 3D Gaussians → images, pure PyTorch, differentiable.

Same inputs, outputs and math as ``gsplat.rasterization`` (1.5.3, pinhole cameras, 3DGS), so one
trainer runs on CUDA (gsplat) and on CPU (this module) unchanged; :func:`rasterization` picks one
by the tensors' device.

Conventions (gsplat's): ``means`` (N, 3) world; ``quats`` (N, 4) wxyz, normalised here;
``scales`` (N, 3) and ``opacities`` (N,) already activated; ``viewmats`` (C, 4, 4) world-to-camera
in OpenCV axes (x right, y down, z forward); ``Ks`` (C, 3, 3); pixel centres at +0.5.

Pipeline and the gsplat rules it reproduces:

1. **Projection** (EWA), autograd in torch on (C, N) tensors: Σ = R S Sᵀ Rᵀ; camera-space
   covariance; the Jacobian of the perspective map with x/z, y/z clamped to the field of view
   widened by 0.3·tan(fov/2) on each side (gsplat's ``persp_proj``); 2D covariance + ``eps2d``·I
   (optionally the antialiasing compensation); conic = inverse. Culled (radii = 0): depth outside
   [near, far], det ≤ 0, opacity < 1/255, both radii ≤ ``radius_clip``, box outside the image.
   Radii are gsplat's opacity-aware boxes: ceil(min(3.33, √(2 ln(255·o)))·√Σ₂ᴰ_ii) per axis.
2. **Colours**: post-activation (N, D) / (C, N, D), or SH coefficients evaluated with gsplat's
   basis (degree ≤ 4) in the direction normalise(mean − camera centre), then max(c + 0.5, 0).
3. **Compositing** front to back in depth order, per pixel: α = min(0.999, o·exp(−σ)), skipped
   below 1/255; a Gaussian that would bring the transmittance to ≤ 1e-4 ends the pixel and is not
   drawn (gsplat's exclusive early stop); colour = Σ α_k T_k c_k (+ T·background), alpha = 1 − T.

Speed and memory: no N×H×W tensor. Gaussians are sorted by depth and binned to small screen tiles
(8 px) by their boxes, pairs whose ellipse {α ≥ 1/255} misses the tile are dropped (exact
ellipse-rectangle test), all vectorised; tiles with similar counts are batched together (padded to
the batch's largest count, chunked to ``max_chunk_elements`` pixel-Gaussian pairs per batch), and
each batch is composited by one custom autograd function whose backward recomputes the alphas
instead of storing them, so memory stays at a few chunks whatever the scene size. Inside a tile,
ln o − σ is one matrix product: a quadratic in the pixel's offset from the tile centre (basis 1, u,
v, u², v², uv) with per-(tile, Gaussian) coefficients, which autograd differentiates back to
``means2d``, conics and opacities. Binning only skips pairs with α < 1/255, so the result equals an
all-pairs rendering (the tests check this against a brute-force reference, to 1e-9 in float64).
gsplat's "σ < 0: skip" test is not repeated: the conic is positive definite, so σ ≥ 0 up to
rounding.

``meta`` carries what gsplat's strategies read: ``means2d`` (its ``.grad`` after backward is
dL/dmeans2d summed over pixels, as gsplat's; ``.absgrad`` the sum of per-pixel absolute gradients
when ``absgrad=True``), ``radii`` (int32, (C, N, 2) or packed (nnz, 2)), ``gaussian_ids``,
``camera_ids``, ``depths``, ``conics``, ``opacities``, ``width``, ``height``, ``n_cameras``,
``tile_size`` and friends. gsplat's sort keys (``isect_ids``, ``flatten_ids``, ``isect_offsets``)
are not produced: nothing downstream reads them. gsplat's ``DefaultStrategy`` runs on this meta on
CPU; its ``MCMCStrategy`` does not: ``inject_noise_to_position`` (``quat_scale_to_covar_preci``)
and ``relocate``/``sample_add`` (``compute_relocation``) call gsplat's CUDA extension.
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from engine.errors import ConfigError, InputError

log = logging.getLogger(__name__)

ALPHA_THRESHOLD = 1.0 / 255.0  #: gsplat's ALPHA_THRESHOLD: dimmer splats are skipped
ALPHA_MAX = 0.999  #: gsplat clamps α to this (rasterize_to_pixels_3dgs, 1.5.3)
TRANSMITTANCE_MIN = 1e-4  #: a pixel stops before the Gaussian that would bring T to ≤ this
EXTEND_MAX = 3.33  #: box half-size in standard deviations (gsplat's cap)
FOV_MARGIN = 0.3  #: the Jacobian's x/z, y/z are clamped to the FOV widened by this · tan(fov/2)
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
EXP_FLOOR = -80.0  #: exp(−80) ≈ 2e-35: a normal float32 far below 1/255
DEFAULT_CPU_TILE = 8  #: internal tile edge in pixels (smaller than gsplat's 16: fewer wasted pairs on CPU)
DEFAULT_CHUNK_ELEMENTS = 1 << 22  #: tile pixels × Gaussians per batch (4M: ~16 MB per float32 temporary)

# gsplat's real SH basis (Sloan, "Efficient Spherical Harmonic Evaluation", JCGT 2013), degrees 0..4.
SH_C0 = 0.2820947917738781
SH_C1 = 0.48860251190292


class Projection(NamedTuple):
    """Per camera and Gaussian (C, N, …) results of :func:`project_gaussians` (zeros where culled)."""

    radii: Tensor  #: (C, N, 2) int32, 0 where culled
    means2d: Tensor  #: (C, N, 2) pixels
    depths: Tensor  #: (C, N) camera-space z
    conics: Tensor  #: (C, N, 3) inverse 2D covariance (xx, xy, yy)
    compensations: Tensor | None  #: (C, N) antialiasing factor, only when asked for


# --------------------------------------------------------------------------------------------
# projection


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """World covariances R·diag(s²)·Rᵀ (N, 3, 3) from quaternions wxyz (normalised here) and scales."""
    w, x, y, z = (quats / quats.norm(dim=-1, keepdim=True)).unbind(-1)
    rot = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape((*quats.shape[:-1], 3, 3))
    m = rot * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def project_gaussians(
    means: Tensor,
    quats: Tensor | None,
    scales: Tensor | None,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,  # noqa: N803 - gsplat's name
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    antialiased: bool = False,
    covars: Tensor | None = None,
) -> Projection:
    """EWA projection of N Gaussians into C pinhole cameras, as gsplat's ``fully_fused_projection``.

    Differentiable w.r.t. means, quats, scales (or covars), viewmats and Ks; radii are not.
    Entries of culled Gaussians are zero.
    """
    dtype = means.dtype
    cov3d = covars if covars is not None else quat_scale_to_covar(quats, scales)  # type: ignore[arg-type]
    rot = viewmats[:, :3, :3]
    means_c = torch.einsum("cij,nj->cni", rot, means) + viewmats[:, None, :3, 3]  # (C, N, 3)
    cov_c = rot[:, None] @ cov3d[None] @ rot.transpose(-1, -2)[:, None]  # (C, N, 3, 3)
    x, y, z = means_c.unbind(-1)
    in_depth = (z >= near_plane) & (z <= far_plane)
    z = torch.where(in_depth, z, torch.ones_like(z))  # keep culled entries finite (no NaN gradients)

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + FOV_MARGIN * tan_fovx
    lim_x_neg = cx / fx + FOV_MARGIN * tan_fovx
    lim_y_pos = (height - cy) / fy + FOV_MARGIN * tan_fovy
    lim_y_neg = cy / fy + FOV_MARGIN * tan_fovy
    rz = 1.0 / z
    tx = z * torch.clamp(x * rz, min=-lim_x_neg, max=lim_x_pos)
    ty = z * torch.clamp(y * rz, min=-lim_y_neg, max=lim_y_pos)
    # J = [[fx/z, 0, -fx·tx/z²], [0, fy/z, -fy·ty/z²]]; cov2d = J Σc Jᵀ written out.
    j00, j02 = fx * rz, -fx * tx * rz * rz
    j11, j12 = fy * rz, -fy * ty * rz * rz
    s00, s01, s02 = cov_c[..., 0, 0], cov_c[..., 0, 1], cov_c[..., 0, 2]
    s11, s12, s22 = cov_c[..., 1, 1], cov_c[..., 1, 2], cov_c[..., 2, 2]
    c00 = j00 * j00 * s00 + 2 * j00 * j02 * s02 + j02 * j02 * s22
    c01 = j00 * j11 * s01 + j00 * j12 * s02 + j02 * j11 * s12 + j02 * j12 * s22
    c11 = j11 * j11 * s11 + 2 * j11 * j12 * s12 + j12 * j12 * s22
    mean2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)

    det_orig = c00 * c11 - c01 * c01
    c00 = c00 + eps2d
    c11 = c11 + eps2d
    det = c00 * c11 - c01 * c01
    ok_det = det > 0
    det = torch.where(ok_det, det, torch.ones_like(det))
    conics = torch.stack([c11 / det, -c01 / det, c00 / det], dim=-1)
    compensations = None
    opac = opacities[None, :].expand_as(det)
    if antialiased:
        compensations = torch.sqrt(torch.clamp_min(det_orig / det, 0.0))
        opac = opac * compensations

    with torch.no_grad():
        o = opac.detach()
        ok_opac = o >= ALPHA_THRESHOLD
        extend = torch.sqrt(2.0 * torch.log(torch.clamp_min(o, ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
        extend = torch.clamp(extend, max=EXTEND_MAX)
        rx = torch.ceil(extend * torch.sqrt(torch.clamp_min(c00.detach(), 0.0)))
        ry = torch.ceil(extend * torch.sqrt(torch.clamp_min(c11.detach(), 0.0)))
        mx, my = mean2d.detach().unbind(-1)
        on_image = ~((mx + rx <= 0) | (mx - rx >= width) | (my + ry <= 0) | (my - ry >= height))
        keep = in_depth & ok_det & ok_opac & ~((rx <= radius_clip) & (ry <= radius_clip)) & on_image
        radii = torch.where(keep[..., None], torch.stack([rx, ry], -1), 0.0).to(torch.int32)
    zero = torch.zeros((), dtype=dtype, device=means.device)
    return Projection(
        radii=radii,
        means2d=torch.where(keep[..., None], mean2d, zero),
        depths=torch.where(keep, z, zero),
        conics=torch.where(keep[..., None], conics, zero),
        compensations=None if compensations is None else torch.where(keep, compensations, zero),
    )


# --------------------------------------------------------------------------------------------
# spherical harmonics


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """gsplat's ``spherical_harmonics``: Σ_k Y_k(normalise(dirs))·coeffs[..., k, :] for k < (degree+1)².

    ``dirs`` (..., 3), ``coeffs`` (..., K, 3) with K ≥ (degree+1)²; returns (..., 3) (without the +0.5).
    """
    if not 0 <= degree <= 4:
        raise ConfigError(f"SH degree {degree} is not supported", where="sh_degree", hint="use 0 to 4")
    bases: list[Tensor | float] = [SH_C0]
    if degree >= 1:
        d = dirs / dirs.norm(dim=-1, keepdim=True)
        x, y, z = d.unbind(-1)
        bases += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        z2 = z * z
        f_c1, f_s1 = x * x - y * y, 2.0 * x * y
        t0b = -1.092548430592079 * z
        bases += [0.5462742152960395 * f_s1, t0b * y, 0.9461746957575601 * z2 - 0.3153915652525201,
                  t0b * x, 0.5462742152960395 * f_c1]
    if degree >= 3:
        t0c = -2.285228997322329 * z2 + 0.4570457994644658
        t1b = 1.445305721320277 * z
        f_c2, f_s2 = x * f_c1 - y * f_s1, x * f_s1 + y * f_c1
        sh12 = z * (1.865881662950577 * z2 - 1.119528997770346)
        bases += [-0.5900435899266435 * f_s2, t1b * f_s1, t0c * y, sh12, t0c * x, t1b * f_c1,
                  -0.5900435899266435 * f_c2]
    if degree >= 4:
        t0d = z * (-4.683325804901025 * z2 + 2.007139630671868)
        t1c = 3.31161143515146 * z2 - 0.47308734787878
        t2b = -1.770130769779931 * z
        f_c3, f_s3 = x * f_c2 - y * f_s2, x * f_s2 + y * f_c2
        sh6 = 0.9461746957575601 * z2 - 0.3153915652525201
        bases += [0.6258357354491763 * f_s3, t2b * f_s2, t1c * f_s1, t0d * y,
                  1.984313483298443 * z * sh12 - 1.006230589874905 * sh6,
                  t0d * x, t1c * f_c1, t2b * f_c2, 0.6258357354491763 * f_c3]
    out = coeffs[..., 0, :] * SH_C0
    for k in range(1, len(bases)):  # at most 24 basis functions, each vectorised over all Gaussians
        out = out + bases[k][..., None] * coeffs[..., k, :]  # type: ignore[index]
    return out


# --------------------------------------------------------------------------------------------
# tile compositing (custom autograd function: recomputes alphas in backward)


def _tile_basis(tile: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(P, 6) basis −[1, u, v, u², v², uv] of the pixel centres' offsets (u, v) from the tile centre.

    Negated so that ``basis @ coef`` is ln o − σ directly (one pass less per pixel-Gaussian pair).
    """
    offsets = torch.arange(tile, dtype=dtype, device=device) + 0.5 - 0.5 * tile
    v, u = torch.meshgrid(offsets, offsets, indexing="ij")  # pixel p = row·tile + col
    u, v = u.reshape(-1), v.reshape(-1)
    return -torch.stack([torch.ones_like(u), u, v, u * u, v * v, u * v], dim=-1)


def _below(value: float, dtype: torch.dtype) -> float:
    """The largest number of ``dtype`` below ``value`` (so that a strict '>' keeps ``value`` itself)."""
    below = torch.nextafter(torch.tensor(value, dtype=dtype), torch.tensor(-math.inf, dtype=dtype))
    return float(below)


def _blend(coef: Tensor, basis: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """α (clamped, zero below 1/255), T before each Gaussian ([..., :-1] of (G, P, K+1)), stop mask, weights α·T."""
    # o·exp(−σ), (G, P, K); the clamp keeps exp out of float32's subnormal range, where it is ~20× slower
    alpha = torch.matmul(basis, coef).clamp_(min=EXP_FLOOR).exp_()
    torch.nn.functional.threshold_(alpha, _below(ALPHA_THRESHOLD, alpha.dtype), 0.0)
    alpha.clamp_(max=ALPHA_MAX)
    g, p, k = alpha.shape
    trans = alpha.new_empty(g, p, k + 1)
    trans[..., 0] = 1.0
    torch.sub(alpha.new_ones(()), alpha, out=trans[..., 1:])
    trans.cumprod_(-1)
    stopped = trans[..., 1:] <= TRANSMITTANCE_MIN  # this one and all behind it are not drawn
    weights = torch.mul(alpha, trans[..., :-1]).masked_fill_(stopped, 0.0)
    return alpha, trans, stopped, weights


class _CompositeTiles(torch.autograd.Function):
    """Front-to-back compositing of a batch of tiles: coef (G, 6, K), colours (G, K, D) → (G, P, D), (G, P).

    The backward pass recomputes the (G, P, K) alphas from the small inputs rather than keeping them.
    """

    @staticmethod
    def forward(ctx: Any, coef: Tensor, colors: Tensor, basis: Tensor, absgrad_sink: Tensor | None,
                absgrad_rows: Tensor | None) -> tuple[Tensor, Tensor]:
        weights = _blend(coef, basis)[3]
        # one product gives colour and Σ weights (= 1 − T_final): a column of ones after the colours
        out = torch.bmm(weights, torch.cat([colors, colors.new_ones((*colors.shape[:-1], 1))], -1))
        color, alpha = out[..., :-1], out[..., -1]
        ctx.save_for_backward(coef, colors, basis, color, alpha)
        ctx.absgrad = (absgrad_sink, absgrad_rows)
        return color, alpha

    @staticmethod
    def backward(ctx: Any, g_color: Tensor, g_alpha: Tensor) -> tuple[Tensor | None, ...]:
        coef, colors, basis, color, out_alpha = ctx.saved_tensors
        alpha, trans, stopped, weights = _blend(coef, basis)
        v_colors = torch.bmm(weights.transpose(1, 2), g_color)
        q = torch.bmm(g_color, colors.transpose(1, 2))  # (G, P, K): c_k · dL/dC_p
        # dL/dα_k = T_k q_k + (T_final dL/dA − Σ_{j>k} w_j q_j) / (1 − α_k), with Σ_{j>k} = Σ_all − Σ_{j≤k}
        upto = torch.mul(weights, q).cumsum_(-1)
        upto.add_(((1.0 - out_alpha) * g_alpha - (color * g_color).sum(-1))[..., None])
        v_alpha = torch.mul(trans[..., :-1], q).addcdiv_(upto, torch.sub(alpha.new_ones(()), alpha))
        # dα/d(ln o − σ) = α where drawn and not clamped (gsplat passes no gradient through the 0.999 clamp)
        g = alpha.masked_fill_(alpha >= ALPHA_MAX, 0.0).mul_(v_alpha).masked_fill_(stopped, 0.0)
        v_coef = torch.matmul(basis.transpose(0, 1), g)  # (G, 6, K)
        sink, rows = ctx.absgrad
        if sink is not None:
            # per pixel dσ/dμx = −(c1 + 2 c3 u + c5 v), dσ/dμy = −(c2 + c5 u + 2 c4 v); gsplat sums |·| over pixels
            lin_x = torch.stack([coef[:, 1], 2 * coef[:, 3], coef[:, 5]], 1)
            lin_y = torch.stack([coef[:, 2], coef[:, 5], 2 * coef[:, 4]], 1)
            ax = torch.matmul(basis[:, :3], lin_x).mul_(g).abs_().sum(1)
            ay = torch.matmul(basis[:, :3], lin_y).mul_(g).abs_().sum(1)
            sink.index_add_(0, rows.reshape(-1), torch.stack([ax, ay], -1).reshape(-1, 2).to(sink.dtype))
        return v_coef, v_colors, None, None, None


# --------------------------------------------------------------------------------------------
# one camera


def _min_sigma_on_rect(mx: Tensor, my: Tensor, conics: Tensor, x_lo: Tensor, x_hi: Tensor, y_lo: Tensor,
                       y_hi: Tensor) -> Tensor:
    """min of σ = ½(a dx² + c dy²) + b dx dy over the rectangle [x_lo, x_hi] × [y_lo, y_hi] (per pair).

    0 when the mean is inside; otherwise the minimum lies on an edge, where σ is a 1D quadratic
    minimised at a clamped vertex.
    """
    a, b, c = conics.unbind(-1)

    def sigma(dx: Tensor, dy: Tensor) -> Tensor:
        return 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy

    best = None
    for x_edge in (x_lo, x_hi):  # vertical edges: dy* = −b dx / c
        dx = x_edge - mx
        y = torch.clamp(my - b * dx / c, min=y_lo, max=y_hi)
        value = sigma(dx, y - my)
        best = value if best is None else torch.minimum(best, value)
    for y_edge in (y_lo, y_hi):  # horizontal edges: dx* = −b dy / a
        dy = y_edge - my
        x = torch.clamp(mx - b * dy / a, min=x_lo, max=x_hi)
        best = torch.minimum(best, sigma(x - mx, dy))  # type: ignore[arg-type]
    inside = (mx >= x_lo) & (mx <= x_hi) & (my >= y_lo) & (my <= y_hi)
    return torch.where(inside, torch.zeros_like(best), best)  # type: ignore[arg-type]


def _render_camera(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    colors: Tensor,
    depths: Tensor,
    radii: Tensor,
    rows: Tensor,
    width: int,
    height: int,
    *,
    tile: int,
    max_chunk_elements: int,
    absgrad_sink: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Composite the n visible Gaussians of one camera: (H, W, D) colour (no background), (H, W, 1) alpha."""
    device, dtype = means2d.device, means2d.dtype
    n, channels = colors.shape
    tiles_x, tiles_y = math.ceil(width / tile), math.ceil(height / tile)
    n_tiles, n_pix = tiles_x * tiles_y, tile * tile

    # --- bin: depth order, boxes → (tile, Gaussian) pairs sorted by tile then depth
    with torch.no_grad():
        order = torch.sort(depths.detach(), stable=True).indices
        mx, my = means2d.detach()[order].unbind(-1)
        rad = radii[order].to(dtype)
        x0 = torch.floor((mx - rad[:, 0]) / tile).clamp(0, tiles_x).long()
        x1 = torch.ceil((mx + rad[:, 0]) / tile).clamp(0, tiles_x).long()
        y0 = torch.floor((my - rad[:, 1]) / tile).clamp(0, tiles_y).long()
        y1 = torch.ceil((my + rad[:, 1]) / tile).clamp(0, tiles_y).long()
        span_x = (x1 - x0).clamp_min(0)
        per_gauss = span_x * (y1 - y0).clamp_min(0)
        n_pairs = int(per_gauss.sum())
        rank = torch.repeat_interleave(torch.arange(n, device=device), per_gauss)
        local = torch.arange(n_pairs, device=device) - (torch.cumsum(per_gauss, 0) - per_gauss)[rank]
        span = span_x[rank].clamp_min(1)
        tile_of_pair = (y0[rank] + local // span) * tiles_x + x0[rank] + local % span
        # drop pairs whose ellipse {α ≥ 1/255} misses the tile's pixel centres (the box corners)
        con = conics.detach()[order][rank]
        reach = torch.log(opacities.detach()[order][rank] / ALPHA_THRESHOLD)  # α ≥ 1/255 ⇔ σ ≤ ln(255·o)
        lo_x = (tile_of_pair % tiles_x).to(dtype) * tile + 0.5
        lo_y = (tile_of_pair // tiles_x).to(dtype) * tile + 0.5
        sigma_min = _min_sigma_on_rect(mx[rank], my[rank], con, lo_x, lo_x + (tile - 1), lo_y, lo_y + (tile - 1))
        keep = sigma_min <= reach * (1 + 1e-4) + 1e-4  # a small margin: never drop a pair that draws
        tile_of_pair, rank = tile_of_pair[keep], rank[keep]
        n_pairs = len(rank)
        by_tile = torch.sort(tile_of_pair, stable=True).indices
        pair_gauss = order[rank[by_tile]]  # index into the camera's visible arrays
        counts = torch.bincount(tile_of_pair, minlength=n_tiles)
        starts = torch.cumsum(counts, 0) - counts

    basis = _tile_basis(tile, dtype, device)
    counts_np = counts.cpu().numpy()
    tile_order = np.argsort(-counts_np, kind="stable")
    sorted_counts = counts_np[tile_order]
    n_busy = int(np.count_nonzero(sorted_counts))

    # per (tile, Gaussian) pair, in tile-then-depth order: σ − ln o = coef · [1, u, v, u², v², uv] with
    # (u, v) the pixel's offset from its tile centre (small numbers: float32 keeps σ accurate)
    pair_tile = tile_of_pair[by_tile]
    centre = torch.stack([(pair_tile % tiles_x).to(dtype), (pair_tile // tiles_x).to(dtype)], -1).add_(0.5).mul_(tile)
    mu, mv = (means2d.index_select(0, pair_gauss) - centre).unbind(-1)
    a, b, c = conics.index_select(0, pair_gauss).unbind(-1)
    pair_coef = torch.stack(
        [
            0.5 * a * mu * mu + b * mu * mv + 0.5 * c * mv * mv - torch.log(opacities).index_select(0, pair_gauss),
            -(a * mu + b * mv),
            -(b * mu + c * mv),
            0.5 * a,
            0.5 * c,
            b,
        ],
        dim=-1,
    )  # (n_pairs, 6)
    pad_coef = torch.zeros(6, dtype=dtype, device=device)
    pad_coef[0] = 100.0  # exp(−100) < 1/255: padding slots draw nothing
    pair_coef = torch.cat([pair_coef, pad_coef[None]])  # row n_pairs: the padding slot
    pair_colors = torch.cat([colors.index_select(0, pair_gauss), colors.new_zeros(1, channels)])
    pair_rows = None
    if absgrad_sink is not None:
        pair_rows = torch.cat([rows.index_select(0, pair_gauss), rows.new_full((1,), absgrad_sink.shape[0] - 1)])

    out_colors: list[Tensor] = []
    out_alphas: list[Tensor] = []
    elements = 0
    i = 0
    while i < n_busy:  # batches of tiles with similar counts (a few dozen at most)
        k = int(sorted_counts[i])
        per_batch_cap = max(1, max_chunk_elements // (n_pix * k))
        similar_end = int(np.searchsorted(-sorted_counts, -math.ceil(0.75 * k), side="right"))
        small_end = i + max(1, (1 << 16) // (n_pix * k))  # tiny batches: padding costs less than a loop turn
        j = min(n_busy, i + per_batch_cap, max(similar_end, small_end))
        tiles = torch.as_tensor(tile_order[i:j], device=device)
        slot = torch.arange(k, device=device)
        flat = torch.where(slot[None, :] < counts[tiles][:, None], starts[tiles][:, None] + slot[None, :], n_pairs)
        flat = flat.reshape(-1)
        coef = pair_coef.index_select(0, flat).reshape(j - i, k, 6).transpose(1, 2)
        cols = pair_colors.index_select(0, flat).reshape(j - i, k, channels)
        sink_rows = None if pair_rows is None else pair_rows.index_select(0, flat)
        col, alp = _CompositeTiles.apply(coef, cols, basis, absgrad_sink, sink_rows)
        out_colors.append(col)
        out_alphas.append(alp)
        elements += (j - i) * k * n_pix
        i = j
    if n_busy < n_tiles:
        out_colors.append(torch.zeros(n_tiles - n_busy, n_pix, channels, dtype=dtype, device=device))
        out_alphas.append(torch.zeros(n_tiles - n_busy, n_pix, dtype=dtype, device=device))
    inverse = torch.empty(n_tiles, dtype=torch.long, device=device)
    inverse[torch.as_tensor(tile_order, device=device)] = torch.arange(n_tiles, device=device)
    color = torch.cat(out_colors)[inverse]
    alpha = torch.cat(out_alphas)[inverse]

    def to_image(t: Tensor) -> Tensor:
        d = t.shape[-1]
        img = t.reshape(tiles_y, tiles_x, tile, tile, d).permute(0, 2, 1, 3, 4)
        return img.reshape(tiles_y * tile, tiles_x * tile, d)[:height, :width]

    log.debug("camera: %d visible Gaussians, %d tile pairs, %d busy tiles, %d pixel pairs", n, n_pairs, n_busy,
              elements)
    return to_image(color), to_image(alpha[..., None])


# --------------------------------------------------------------------------------------------
# public entry points


def _check_inputs(means: Tensor, quats: Tensor | None, scales: Tensor | None, opacities: Tensor,
                  colors: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,  # noqa: N803
                  sh_degree: int | None, covars: Tensor | None, render_mode: str,
                  backgrounds: Tensor | None) -> None:
    where = "rasterize_dense"

    def bad(problem: str, hint: str) -> InputError:
        return InputError(problem, where=where, hint=hint)

    if means.ndim != 2 or means.shape[-1] != 3:
        raise bad(f"means has shape {tuple(means.shape)}, expected (N, 3)",
                  "the CPU rasterizer takes one scene without batch dimensions")
    n = means.shape[0]
    if covars is None:
        if quats is None or scales is None or quats.shape != (n, 4) or scales.shape != (n, 3):
            raise bad(f"quats/scales have shapes {None if quats is None else tuple(quats.shape)}/"
                      f"{None if scales is None else tuple(scales.shape)}, expected ({n}, 4)/({n}, 3)",
                      "give one wxyz quaternion and three activated scales per Gaussian")
    elif covars.shape != (n, 3, 3):
        raise bad(f"covars has shape {tuple(covars.shape)}, expected ({n}, 3, 3)", "one 3×3 covariance per Gaussian")
    if opacities.shape != (n,):
        raise bad(f"opacities has shape {tuple(opacities.shape)}, expected ({n},)", "activated opacities in [0, 1]")
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4):
        raise bad(f"viewmats has shape {tuple(viewmats.shape)}, expected (C, 4, 4)",
                  "world-to-camera matrices in OpenCV axes")
    cams = viewmats.shape[0]
    if Ks.shape != (cams, 3, 3):
        raise bad(f"Ks has shape {tuple(Ks.shape)}, expected ({cams}, 3, 3)", "one intrinsic matrix per camera")
    if sh_degree is None:
        if not ((colors.ndim == 2 and colors.shape[0] == n) or (colors.ndim == 3 and colors.shape[:2] == (cams, n))):
            raise bad(f"colors has shape {tuple(colors.shape)}, expected ({n}, D) or ({cams}, {n}, D)",
                      "pass sh_degree when colors are SH coefficients")
    else:
        ok = (colors.ndim == 3 and colors.shape[0] == n) or (colors.ndim == 4 and colors.shape[:2] == (cams, n))
        if not ok or colors.shape[-1] != 3 or colors.shape[-2] < (sh_degree + 1) ** 2:
            raise bad(f"colors has shape {tuple(colors.shape)} for sh_degree {sh_degree}",
                      f"expected ({n}, K, 3) or ({cams}, {n}, K, 3) with K ≥ {(sh_degree + 1) ** 2}")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise bad(f"image size {width}×{height} is not two positive integers", "pass width and height in pixels")
    if render_mode not in RENDER_MODES:
        raise ConfigError(f"render_mode {render_mode!r} is not supported", where=where,
                          hint=f"use one of {', '.join(RENDER_MODES)}")
    if backgrounds is not None and (backgrounds.ndim != 2 or backgrounds.shape[0] != cams):
        raise bad(f"backgrounds has shape {tuple(backgrounds.shape)}, expected ({cams}, D)", "one colour per camera")
    for name, t in (("means", means), ("quats", quats), ("scales", scales), ("covars", covars),
                    ("opacities", opacities), ("colors", colors), ("viewmats", viewmats), ("Ks", Ks)):
        if t is not None and not bool(torch.isfinite(t.detach()).all()):
            raise bad(f"{name} contains NaN or Inf", "the optimisation diverged or the input is corrupt")


def rasterize_dense(
    means: Tensor,
    quats: Tensor | None,
    scales: Tensor | None,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,  # noqa: N803 - gsplat's name
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    packed: bool = True,
    tile_size: int = 16,
    backgrounds: Tensor | None = None,
    render_mode: str = "RGB",
    absgrad: bool = False,
    rasterize_mode: str = "classic",
    covars: Tensor | None = None,
    cpu_tile_size: int = DEFAULT_CPU_TILE,
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Render C views of N Gaussians like ``gsplat.rasterization``: ((C, H, W, X), (C, H, W, 1), meta).

    X is D for "RGB", 1 for "D"/"ED", D + 1 for "RGB+D"/"RGB+ED". ``packed`` selects gsplat's packed
    meta layout ((nnz, …) with ``camera_ids``/``gaussian_ids``) or the dense (C, N, …) one; pass the
    same flag to ``DefaultStrategy.step_post_backward``. ``tile_size`` only shapes the meta
    (``tile_width``, ``tiles_per_gauss``); compositing uses ``cpu_tile_size`` tiles and at most
    ``max_chunk_elements`` pixel-Gaussian pairs per batch. Works on any torch device.
    """
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, covars,
                  render_mode, backgrounds)
    if rasterize_mode not in ("classic", "antialiased"):
        raise ConfigError(f"rasterize_mode {rasterize_mode!r} is not supported", where="rasterize_dense",
                          hint="use 'classic' or 'antialiased'")
    if cpu_tile_size < 1 or max_chunk_elements < 1:
        raise ConfigError("cpu_tile_size and max_chunk_elements must be positive", where="rasterize_dense")
    device, dtype = means.device, means.dtype
    n, cams = means.shape[0], viewmats.shape[0]
    proj = project_gaussians(
        means, quats, scales, opacities, viewmats, Ks, width, height, near_plane=near_plane, far_plane=far_plane,
        eps2d=eps2d, radius_clip=radius_clip, antialiased=rasterize_mode == "antialiased", covars=covars,
    )
    visible = (proj.radii > 0).all(dim=-1)  # (C, N)
    cam_ids, gauss_ids = torch.nonzero(visible, as_tuple=True)  # camera-major, as gsplat packs
    opac_full = opacities[None, :].expand(cams, n)
    if proj.compensations is not None:
        opac_full = opac_full * proj.compensations

    meta: dict[str, Any] = {}
    if packed:
        means2d = proj.means2d[cam_ids, gauss_ids]
        pair_means2d = means2d
        meta.update(batch_ids=torch.zeros_like(cam_ids), camera_ids=cam_ids, gaussian_ids=gauss_ids,
                    radii=proj.radii[cam_ids, gauss_ids], depths=proj.depths[cam_ids, gauss_ids],
                    conics=proj.conics[cam_ids, gauss_ids], opacities=opac_full[cam_ids, gauss_ids])
        rows = torch.arange(len(cam_ids), device=device)
    else:
        means2d = proj.means2d
        pair_means2d = means2d[cam_ids, gauss_ids]
        meta.update(batch_ids=None, camera_ids=None, gaussian_ids=None, radii=proj.radii, depths=proj.depths,
                    conics=proj.conics, opacities=opac_full)
        rows = cam_ids * n + gauss_ids
    if means2d.requires_grad:
        means2d.retain_grad()
    meta["means2d"] = means2d
    absgrad_sink = None
    if absgrad:
        absgrad_sink = torch.zeros(means2d.numel() // 2 + 1, 2, dtype=dtype, device=device)  # last row: padding
        means2d.absgrad = absgrad_sink[:-1].view(means2d.shape)  # filled in by the backward pass

    # per visible pair: colours (post-activation), depth, conic, opacity
    pair_depths = proj.depths[cam_ids, gauss_ids]
    if sh_degree is None:
        pair_colors = colors[gauss_ids] if colors.ndim == 2 else colors[cam_ids, gauss_ids]
    else:
        campos = torch.linalg.inv(viewmats)[:, :3, 3]
        coeffs = colors[gauss_ids] if colors.ndim == 3 else colors[cam_ids, gauss_ids]
        dirs = means[gauss_ids] - campos[cam_ids]
        pair_colors = torch.clamp_min(eval_sh(sh_degree, dirs, coeffs) + 0.5, 0.0)
    bg = backgrounds
    if render_mode in ("RGB+D", "RGB+ED"):
        pair_colors = torch.cat([pair_colors, pair_depths[:, None]], dim=-1)
        if bg is not None:
            bg = torch.cat([bg, torch.zeros(cams, 1, dtype=bg.dtype, device=bg.device)], dim=-1)
    elif render_mode in ("D", "ED"):
        pair_colors = pair_depths[:, None]
        if bg is not None:
            bg = torch.zeros(cams, 1, dtype=bg.dtype, device=bg.device)
    pair_conics = proj.conics[cam_ids, gauss_ids]
    pair_opac = opac_full[cam_ids, gauss_ids]
    pair_radii = proj.radii[cam_ids, gauss_ids]

    bounds = [0, *torch.cumsum(torch.bincount(cam_ids, minlength=cams), 0).tolist()]
    images, alphas = [], []
    for cam in range(cams):  # cameras: a handful per step
        s = slice(bounds[cam], bounds[cam + 1])
        img, alp = _render_camera(
            pair_means2d[s], pair_conics[s], pair_opac[s], pair_colors[s], pair_depths[s], pair_radii[s], rows[s],
            width, height, tile=cpu_tile_size, max_chunk_elements=max_chunk_elements, absgrad_sink=absgrad_sink,
        )
        if bg is not None:
            img = img + (1.0 - alp) * bg[cam]
        images.append(img)
        alphas.append(alp)
    render_colors, render_alphas = torch.stack(images), torch.stack(alphas)
    if proj.means2d.requires_grad and not render_alphas.requires_grad:
        # nothing visible: keep the images in the graph (as gsplat's are) so that backward() works, with zero gradients
        anchor = proj.means2d.sum() * 0.0
        render_colors, render_alphas = render_colors + anchor, render_alphas + anchor
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [render_colors[..., :-1], render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], dim=-1
        )

    with torch.no_grad():
        tile_width, tile_height = math.ceil(width / tile_size), math.ceil(height / tile_size)
        mx, my = proj.means2d.detach().unbind(-1)
        rx, ry = proj.radii.to(dtype).unbind(-1)
        span_x = (torch.ceil((mx + rx) / tile_size).clamp(0, tile_width)
                  - torch.floor((mx - rx) / tile_size).clamp(0, tile_width))
        span_y = (torch.ceil((my + ry) / tile_size).clamp(0, tile_height)
                  - torch.floor((my - ry) / tile_size).clamp(0, tile_height))
        tiles_per_gauss = torch.where(visible, span_x * span_y, 0).to(torch.int32)
        if packed:
            tiles_per_gauss = tiles_per_gauss[cam_ids, gauss_ids]
    meta.update(tile_width=tile_width, tile_height=tile_height, tiles_per_gauss=tiles_per_gauss, width=width,
                height=height, tile_size=tile_size, n_batches=1, n_cameras=cams)
    return render_colors, render_alphas, meta


def rasterization(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,  # noqa: N803 - gsplat's name
    width: int,
    height: int,
    **options: Any,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """``gsplat.rasterization`` on CUDA tensors, :func:`rasterize_dense` otherwise (same arguments).

    gsplat is imported only when the tensors are on a CUDA device. Options only gsplat has
    (``camera_model`` other than pinhole, distortion, ``with_ut``, ``distributed``, …) are refused
    on CPU with a ConfigError; ``sparse_grad``, ``segmented`` and ``channel_chunk`` are CUDA
    tuning knobs and are ignored.
    """
    if means.is_cuda:
        import gsplat  # heavy, CUDA-only: imported when used

        options.pop("cpu_tile_size", None)
        options.pop("max_chunk_elements", None)
        return gsplat.rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, **options)
    for ignored in ("sparse_grad", "segmented", "channel_chunk"):
        options.pop(ignored, None)
    cuda_only = {
        "camera_model": "pinhole", "distributed": False, "with_ut": False, "with_eval3d": False,
        "radial_coeffs": None, "tangential_coeffs": None, "thin_prism_coeffs": None, "ftheta_coeffs": None,
        "viewmats_rs": None,
    }
    for name, default in cuda_only.items():
        value = options.pop(name, default)
        if value is not default and value != default:
            raise ConfigError(f"{name}={value!r} needs gsplat on a CUDA device", where="rasterization",
                              hint="the CPU rasterizer supports pinhole cameras without distortion")
    rolling = options.pop("rolling_shutter", None)
    if rolling is not None and getattr(rolling, "name", str(rolling)).upper() != "GLOBAL":
        raise ConfigError(f"rolling_shutter={rolling!r} needs gsplat on a CUDA device", where="rasterization",
                          hint="the CPU rasterizer models a global shutter")
    known = set(inspect.signature(rasterize_dense).parameters)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown rasterization option(s): {', '.join(unknown)}", where="rasterization",
                          hint="see gsplat.rasterization for the argument names")
    return rasterize_dense(means, quats, scales, opacities, colors, viewmats, Ks, width, height, **options)
