"""Lightmap post-processing: dilation into padding texels, OIDN denoising, RGBM encoding.

Everything works on float32 (H, W, C) images in linear light; ``mask`` arrays (H, W) bool say
which texels were baked. ``pyoidn`` is imported only when denoising.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from engine.errors import InputError

log = logging.getLogger(__name__)

_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _as_image(image: Any, what: str) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or min(array.shape) < 1:
        raise InputError(f"{what} has shape {array.shape}, expected (H, W, C)", where="lightmap post-processing")
    return array


def _check_mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(shape[:2]):
        raise InputError(f"mask has shape {mask.shape}, expected {tuple(shape[:2])} like the image",
                         where="lightmap post-processing")
    return mask


def dilate(image: np.ndarray, mask: np.ndarray, iterations: int) -> np.ndarray:
    """Grow the valid texels (``mask``) outwards by ``iterations`` rings into the invalid ones.

    Each ring sets an invalid texel that touches valid ones (8-neighbourhood) to their mean,
    so bilinear filtering and mipmaps at chart borders read baked values instead of black.
    Texels the rings do not reach keep their values. Returns a new float32 image of the same
    shape (2-D images stay 2-D).
    """
    squeeze = np.asarray(image).ndim == 2
    out = _as_image(image, "image").copy()
    valid = _check_mask(mask, out.shape).copy()
    if iterations < 0:
        raise InputError(f"iterations {iterations} must be 0 or more", where="dilate")
    height, width = valid.shape
    for _ in range(int(iterations)):
        if valid.all() or not valid.any():
            break
        weights = np.pad(valid, 1).astype(np.float32)
        values = np.pad(np.where(valid[:, :, None], out, 0.0), ((1, 1), (1, 1), (0, 0)))
        total = np.zeros_like(out)
        count = np.zeros(valid.shape, np.float32)
        for dy, dx in _NEIGHBOURS:
            rows, cols = slice(1 + dy, 1 + dy + height), slice(1 + dx, 1 + dx + width)
            total += values[rows, cols]
            count += weights[rows, cols]
        grow = ~valid & (count > 0)
        if not grow.any():
            break
        out[grow] = total[grow] / count[grow][:, None]
        valid |= grow
    return out[:, :, 0] if squeeze else out


def fill_invalid(image: np.ndarray, mask: np.ndarray, iterations: int = 16) -> np.ndarray:
    """Dilate ``iterations`` rings, then set the texels still unreached to the mean of the valid ones."""
    out = dilate(image, mask, iterations)
    mask = np.asarray(mask, dtype=bool)
    if mask.any():
        reached = dilate(mask.astype(np.float32), mask, iterations) > 0.5
        out[~reached] = np.asarray(image, np.float32)[mask].mean(axis=0)
    return out


def denoise_lightmap(
    color: np.ndarray,
    *,
    albedo: np.ndarray | None = None,
    normal: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    quality: str = "high",
) -> np.ndarray:
    """Denoise an HDR lightmap with Intel Open Image Denoise on the CPU; returns float32 like ``color``.

    Without auxiliary images this runs OIDN's ``RTLightmap`` filter (trained for HDR lightmaps).
    OIDN's RTLightmap accepts no albedo or normal images, so when ``albedo`` or ``normal``
    (linear [0, 1] and unit [-1, 1], (H, W, 3)) are given it runs the ``RT`` filter in HDR mode
    with them instead. ``color`` is (H, W, 3) or (H, W, 4) (alpha is kept as it is); negative
    and non-finite values are clamped to 0 first. With ``mask`` (baked texels), the unbaked
    texels are filled from their neighbours first so that empty black texels do not darken
    chart borders; they come back filled.
    """
    try:
        import pyoidn
    except ImportError:  # pragma: no cover - depends on the install
        raise InputError("denoising lightmaps needs pyoidn", hint="pip install 'optimizer-engine[bake]'") from None
    image = _as_image(color, "color")
    if image.shape[2] not in (3, 4):
        raise InputError(f"color has {image.shape[2]} channels, expected 3 or 4", where="denoise_lightmap")
    rgb = np.nan_to_num(image[:, :, :3], nan=0.0, posinf=0.0, neginf=0.0)
    rgb = np.ascontiguousarray(np.maximum(rgb, 0.0), dtype=np.float32)
    if mask is not None:
        rgb = np.ascontiguousarray(fill_invalid(rgb, _check_mask(mask, rgb.shape)))
    aux: dict[str, np.ndarray] = {}
    for name, value in (("albedo", albedo), ("normal", normal)):
        if value is not None:
            array = _as_image(value, name)
            if array.shape != rgb.shape:
                raise InputError(f"{name} has shape {array.shape}, expected {rgb.shape} like color",
                                 where="denoise_lightmap")
            array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
            aux[name] = np.ascontiguousarray(np.clip(array, 0.0, 1.0) if name == "albedo" else np.clip(array, -1, 1))
    if aux:
        out = pyoidn.denoise(rgb, aux.get("albedo"), aux.get("normal"), hdr=True, quality=quality,
                             filter_type=pyoidn.OIDN_FILTER_TYPE_RT)
    else:
        out = pyoidn.denoise(rgb, quality=quality, filter_type=pyoidn.OIDN_FILTER_TYPE_RT_LIGHTMAP)
    out = np.maximum(np.asarray(out, dtype=np.float32), 0.0)
    if image.shape[2] == 4:
        out = np.concatenate([out, image[:, :, 3:]], axis=2)
    return out


def encode_rgbm(hdr: np.ndarray, max_range: float = 8.0) -> np.ndarray:
    """Linear HDR (H, W, 3|4) → RGBM uint8 (H, W, 4): rgb / (m · max_range) in RGB, the multiplier m in A.

    Decode with ``rgb · a · max_range`` (all in 0..1): values above ``max_range`` clip. The
    multiplier is rounded up to the next 8-bit step so that RGB never needs to exceed 1.
    """
    if not max_range > 0:
        raise InputError(f"max_range {max_range} must be above 0", where="encode_rgbm")
    image = _as_image(hdr, "hdr")
    rgb = np.clip(np.nan_to_num(image[:, :, :3], nan=0.0), 0.0, max_range) / np.float32(max_range)
    m = np.clip(rgb.max(axis=2), 1.0 / 255.0, 1.0)
    m = np.ceil(m * 255.0) / 255.0
    out = np.empty((*image.shape[:2], 4), np.uint8)
    out[:, :, :3] = np.clip(np.rint(rgb / m[:, :, None] * 255.0), 0, 255).astype(np.uint8)
    out[:, :, 3] = np.rint(m * 255.0).astype(np.uint8)
    return out


def decode_rgbm(rgbm: np.ndarray, max_range: float = 8.0) -> np.ndarray:
    """RGBM uint8 (H, W, 4) → linear float32 (H, W, 3)."""
    data = np.asarray(rgbm)
    if data.ndim != 3 or data.shape[2] != 4:
        raise InputError(f"RGBM image has shape {data.shape}, expected (H, W, 4)", where="decode_rgbm")
    scaled = data.astype(np.float32) / 255.0
    return scaled[:, :, :3] * scaled[:, :, 3:4] * np.float32(max_range)
