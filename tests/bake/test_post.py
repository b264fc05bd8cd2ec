"""Lightmap post-processing: dilation, OIDN denoising, RGBM encoding."""

from __future__ import annotations

import numpy as np
import pytest

from engine.bake.post import decode_rgbm, denoise_lightmap, dilate, encode_rgbm, fill_invalid
from engine.bake.texels import rasterize_texels
from engine.bake.uv import lightmap_layout
from engine.errors import InputError
from engine.scene import Scene
from tests.conftest import unit_box


def test_dilate_grows_one_ring_per_iteration() -> None:
    image = np.zeros((32, 32, 3), np.float32)
    mask = np.zeros((32, 32), bool)
    mask[10:20, 10:20] = True
    image[mask] = (0.2, 0.4, 0.6)
    image[~mask] = 99.0  # garbage in the padding
    out = dilate(image, mask, 3)
    grown = np.zeros_like(mask)
    grown[7:23, 7:23] = True
    np.testing.assert_allclose(out[grown], np.tile([0.2, 0.4, 0.6], (grown.sum(), 1)), atol=1e-6)
    assert (out[~grown] == 99.0).all()  # not reached: left as it was
    np.testing.assert_array_equal(image[0, 0], 99.0)  # the input is not changed


def test_dilate_averages_the_valid_neighbours() -> None:
    image = np.zeros((5, 5), np.float32)
    mask = np.zeros((5, 5), bool)
    image[2, 1], image[2, 3] = 1.0, 3.0
    mask[2, 1] = mask[2, 3] = True
    out = dilate(image, mask, 1)
    assert out.shape == (5, 5)
    assert out[2, 2] == pytest.approx(2.0) and out[1, 0] == pytest.approx(1.0)


def test_dilation_fills_the_padding_of_a_layout() -> None:
    padding = 3
    layout = lightmap_layout(Scene((unit_box("box"),)), padding=padding)
    texels = rasterize_texels(layout)
    (image,) = texels.scatter(1.0 + 0.5 * texels.normal, fill=0.0)  # 0.5..1.5
    mask = texels.mask(0)
    out = dilate(image, mask, padding)
    # every texel within `padding` texels of a baked one now holds a value in the baked range
    near = dilate(mask.astype(np.float32), mask, padding) > 0.5
    assert near.sum() > mask.sum()
    for dy in range(-padding, padding + 1):
        for dx in range(-padding, padding + 1):
            shifted = np.zeros_like(mask)  # mask moved by (dy, dx), without wrapping around
            h, w = mask.shape
            shifted[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
                mask[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
            assert near[shifted].all()
    assert (out[near] >= 0.5 - 1e-6).all() and (out[near] <= 1.5 + 1e-6).all()
    filled = fill_invalid(image, mask, 2)
    assert (filled > 0).all()


def test_rgbm_round_trip() -> None:
    rng = np.random.default_rng(1)
    hdr = (rng.random((64, 64, 3)) ** 3 * 8.0).astype(np.float32)
    encoded = encode_rgbm(hdr)
    assert encoded.dtype == np.uint8 and encoded.shape == (64, 64, 4)
    decoded = decode_rgbm(encoded)
    peak = hdr.max(axis=2, keepdims=True)
    # error is a fraction of a step of the multiplier-scaled channel: below 0.5/255 of the texel's peak (+ m step)
    assert np.all(np.abs(decoded - hdr) <= peak * (0.6 / 255.0) + 8.0 / 255.0 * 0.01 + 1e-6)
    bright = peak[..., 0] > 0.1
    assert np.median(np.abs(decoded - hdr)[bright] / peak[bright]) < 0.002
    clipped = decode_rgbm(encode_rgbm(np.full((1, 1, 3), 20.0, np.float32)))
    np.testing.assert_allclose(clipped, 8.0, rtol=1e-6)
    np.testing.assert_allclose(decode_rgbm(encode_rgbm(np.zeros((2, 2, 3), np.float32))), 0.0)


def test_oidn_reduces_noise_on_a_constant_lightmap() -> None:
    rng = np.random.default_rng(0)
    clean = np.full((128, 128, 3), 0.5, np.float32)
    noisy = np.maximum(clean + rng.normal(0.0, 0.15, clean.shape).astype(np.float32), 0.0)
    out = denoise_lightmap(noisy)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert out.var() < 0.1 * noisy.var()
    assert out.mean() == pytest.approx(noisy.mean(), rel=0.05)


def test_oidn_with_mask_alpha_and_auxiliary_images() -> None:
    rng = np.random.default_rng(2)
    noisy = np.zeros((64, 64, 4), np.float32)
    mask = np.zeros((64, 64), bool)
    mask[8:56, 8:56] = True
    noisy[mask, :3] = 1.0 + rng.normal(0.0, 0.3, (mask.sum(), 3))
    noisy[..., 3] = 0.25
    out = denoise_lightmap(noisy, mask=mask)
    assert out.shape == (64, 64, 4) and (out[..., 3] == 0.25).all()
    # the empty border does not darken the chart's edge
    assert out[mask, :3].mean() == pytest.approx(noisy[mask, :3].mean(), rel=0.05)
    assert out[8, 8:56, :3].mean() > 0.8
    albedo = np.full((64, 64, 3), 0.7, np.float32)
    normal = np.zeros((64, 64, 3), np.float32)
    normal[..., 2] = 1.0
    guided = denoise_lightmap(noisy[..., :3], albedo=albedo, normal=normal, mask=mask)
    assert guided[mask].var() < noisy[mask, :3].var()


def test_bad_images_are_input_errors() -> None:
    with pytest.raises(InputError):
        denoise_lightmap(np.zeros((4, 4, 2), np.float32))
    with pytest.raises(InputError):
        dilate(np.zeros((4, 4, 3), np.float32), np.zeros((3, 3), bool), 1)
    with pytest.raises(InputError):
        denoise_lightmap(np.zeros((4, 4, 3), np.float32), albedo=np.zeros((2, 2, 3), np.float32))
