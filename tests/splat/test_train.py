"""The trainer on the CPU twin: SSIM, learning a known target, deterministic checkpoints and resume,
divergence and cancellation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gsplat")

from engine.errors import ConfigError  # noqa: E402
from engine.splat.init import GaussianInit, init_random  # noqa: E402
from engine.splat.raster import rasterization  # noqa: E402
from engine.splat.rig import plan_rig  # noqa: E402
from engine.splat.train import (  # noqa: E402
    Schedule,
    TrainingCancelled,
    TrainingDiverged,
    TrainSettings,
    evaluate,
    psnr,
    ssim,
    train_gaussians,
)

SIZE = 32


# --------------------------------------------------------------------------------------------
# SSIM and PSNR


def test_ssim_of_constant_images_is_the_luminance_term() -> None:
    a = torch.full((16, 16, 3), 0.2)
    b = torch.full((16, 16, 3), 0.6)
    c1 = 0.01**2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)  # no variance: the luminance term alone
    assert float(ssim(a, b, valid=True)) == pytest.approx(expected, abs=3e-4)  # float32 variances
    assert abs(float(ssim(a, b)) - expected) > 0.01  # the loss's zero padding darkens the border
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-6)


def test_ssim_falls_with_noise_and_is_symmetric() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(32, 32, 3, generator=generator)
    values = [float(ssim(image, (image + s * torch.randn(32, 32, 3, generator=generator)).clamp(0, 1)))
              for s in (0.01, 0.05, 0.2)]
    assert values[0] > values[1] > values[2] > 0
    other = (image + 0.1).clamp(0, 1)
    assert float(ssim(image, other)) == pytest.approx(float(ssim(other, image)), abs=1e-6)


def test_psnr() -> None:
    a = torch.zeros(8, 8, 3)
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)
    assert psnr(a, a) == float("inf")


# --------------------------------------------------------------------------------------------
# a known target: views of random Gaussians rendered by the rasterizer itself


def _target_problem(count: int = 150, views: int = 8) -> tuple[GaussianInit, np.ndarray, np.ndarray, np.ndarray, object]:
    truth = init_random((-1, -1, -1), (1, 1, 1), count, seed=3)
    rng = np.random.default_rng(1)
    truth = GaussianInit(means=truth.means, scales=truth.scales * 1.5, quats=truth.quats,
                         colors=rng.uniform(0.1, 0.9, (count, 3)), opacities=np.full(count, 0.9),
                         normals=truth.normals)
    rig = plan_rig((-1, -1, -1), (1, 1, 1), kind="object", views=views, width=SIZE, test_every=4,
                   upper_hemisphere=False)
    with torch.no_grad():
        rgb, alpha, _ = rasterization(
            torch.tensor(truth.means), torch.tensor(truth.quats), torch.tensor(truth.scales),
            torch.tensor(truth.opacities), torch.tensor(truth.colors_srgb), torch.tensor(rig.viewmats),
            torch.tensor(rig.Ks), SIZE, SIZE, packed=False)
    straight = np.concatenate([(rgb / alpha.clamp(min=1e-6)).clamp(0, 1).numpy(), alpha.numpy()], -1)
    start = init_random((-1, -1, -1), (1, 1, 1), count, seed=4)
    return start, straight.astype(np.float32), np.asarray(rig.viewmats), np.asarray(rig.Ks), rig


def test_training_learns_the_target_views() -> None:
    start, images, viewmats, Ks, rig = _target_problem()  # noqa: N806
    settings = TrainSettings(steps=150, sh_degree=0, device="cpu", seed=0)
    before = evaluate(_as_result(start), images, viewmats, Ks, rig.train, device="cpu")["psnr"]
    result = train_gaussians(start, images, viewmats, Ks, rig.train, settings)
    after = evaluate(result, images, viewmats, Ks, rig.train, device="cpu")
    assert result.steps == 150 and result.device == "cpu"
    assert after["psnr"] > before + 4.0, (before, after["psnr"])
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert np.isfinite(result.means).all() and result.sh_rest.shape == (result.count, 0, 3)


def _as_result(init: GaussianInit):  # type: ignore[no-untyped-def]
    from engine.splat.train import SH_C0, TrainResult

    return TrainResult(means=np.array(init.means), scales_log=np.log(init.scales), quats=np.array(init.quats),
                       opacity_logit=np.log(init.opacities / (1 - init.opacities)),
                       sh_dc=(init.colors_srgb - 0.5) / SH_C0, sh_rest=np.zeros((init.count, 0, 3), np.float32),
                       steps=0, seconds=0.0, device="cpu", resumed_from=0)


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    start, images, viewmats, Ks, rig = _target_problem(count=60, views=6)  # noqa: N806
    settings = TrainSettings(steps=30, sh_degree=1, device="cpu", seed=5, checkpoint_every=10)
    straight = train_gaussians(start, images, viewmats, Ks, rig.train, settings)
    checkpoint = tmp_path / "ckpt.pt"
    calls = iter(range(1000))
    with pytest.raises(TrainingCancelled, match="step 20"):
        train_gaussians(start, images, viewmats, Ks, rig.train, settings, checkpoint=checkpoint,
                        cancel=lambda: next(calls) >= 20)
    assert checkpoint.is_file()
    resumed = train_gaussians(start, images, viewmats, Ks, rig.train, settings, checkpoint=checkpoint)
    assert resumed.resumed_from == 20 and resumed.steps == 30
    np.testing.assert_array_equal(resumed.means, straight.means)
    np.testing.assert_array_equal(resumed.sh_rest, straight.sh_rest)
    other = TrainSettings(steps=40, sh_degree=1, device="cpu", seed=5, checkpoint_every=10)
    with pytest.raises(ConfigError, match="other settings"):
        train_gaussians(start, images, viewmats, Ks, rig.train, other, checkpoint=checkpoint)


def test_divergence_stops_training() -> None:
    start, images, viewmats, Ks, rig = _target_problem(count=40, views=4)  # noqa: N806
    settings = TrainSettings(steps=20, sh_degree=0, device="cpu", lr_means=1e30, lr_scales=1e30)
    with pytest.raises(TrainingDiverged, match="nothing exported"):
        train_gaussians(start, images, viewmats, Ks, rig.train, settings)


def test_bad_inputs_and_settings() -> None:
    start, images, viewmats, Ks, rig = _target_problem(count=10, views=4)  # noqa: N806
    with pytest.raises(ConfigError, match="RGBA"):
        train_gaussians(start, images[..., :3], viewmats, Ks, rig.train, TrainSettings(steps=1, device="cpu"))
    bad = images.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        train_gaussians(start, bad, viewmats, Ks, rig.train, TrainSettings(steps=1, device="cpu"))
    with pytest.raises(ConfigError, match="steps"):
        TrainSettings(steps=0)
    with pytest.raises(ConfigError, match="strategy"):
        TrainSettings(strategy="fancy")
    with pytest.raises(ConfigError, match="MCMC strategy needs CUDA"):
        train_gaussians(start, images, viewmats, Ks, rig.train, TrainSettings(steps=1, device="cpu", strategy="mcmc"))


def test_schedule_scales_with_the_run() -> None:
    long = Schedule.for_steps(30_000, 3)
    assert (long.refine_start, long.refine_stop, long.refine_every, long.reset_every, long.sh_every) == \
        (500, 15_000, 100, 3000, 1000)
    short = Schedule.for_steps(600, 3)
    assert short.refine_start < short.refine_stop <= 300 and short.reset_every > 600 and short.sh_every == 75
