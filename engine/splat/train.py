"""3D Gaussian splatting trainer: gsplat's rasterizer and strategies on CUDA, our dense twin on CPU.

:func:`train_gaussians` fits Gaussians to posed RGBA views the way 3DGS does (Kerbl et al. 2023,
gsplat's ``simple_trainer``): one random training view per step, loss
``0.8·L1 + 0.2·(1 − SSIM)``, Adam per parameter group with 3DGS's learning rates (the means'
rate scaled by the scene's size and decayed exponentially to 1 % over the run), spherical
harmonics enabled one degree at a time, and gsplat's ``DefaultStrategy`` (clone, split, prune,
opacity reset) or ``MCMCStrategy`` (CUDA only: its relocation is a CUDA kernel) to grow and
prune. Rasterization goes through :func:`engine.splat.raster.rasterization`: gsplat on CUDA
tensors, our dense PyTorch rasterizer otherwise, with the same outputs (what the strategies
read included).

Transparent backgrounds: the targets are straight-alpha RGBA; every step composites the target
over a random background colour and renders with the same background, so the Gaussians learn
coverage instead of painting the background in. Evaluation composites over white.

Schedules are 3DGS's for its 30k-step runs, scaled to ``steps``: refinement starts at 1/14 and
stops at half the run (3DGS: 500 and 15k of 30k), refines every 1/70 of the run (at least every
25 steps), resets opacity every 3000 steps only when the run is long enough for it to recover,
and adds an SH degree every 1/(2·(degree+1)) of the run up to 1000 steps (3DGS: 1000).

Checkpoints (``checkpoint``): parameters, optimiser moments, the strategy's state, the step and
the random generators, written atomically every ``checkpoint_every`` steps and when stopped;
a later call with the same checkpoint path resumes where it stopped. A non-finite loss or
parameter stops training with :class:`TrainingDiverged` (never exported).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ConfigError, InputError, OptimizerError
from engine.progress import Progress, no_progress

log = logging.getLogger(__name__)

SH_C0 = 0.28209479177387814
STRATEGIES = ("default", "mcmc")


class TrainingDiverged(OptimizerError):
    """The loss or a parameter became NaN/inf: the run is stopped and nothing is exported."""


class TrainingCancelled(OptimizerError):
    """``cancel()`` returned True; the checkpoint (if any) holds the last state."""


@dataclass(frozen=True)
class TrainSettings:
    """How to train. ``steps`` is the step budget; ``time_budget_s`` stops earlier when set."""

    steps: int = 7000
    sh_degree: int = 3
    ssim_lambda: float = 0.2
    strategy: str = "default"
    max_gaussians: int = 1_000_000
    device: str = "auto"
    seed: int = 0
    time_budget_s: float | None = None
    checkpoint_every: int = 500
    lr_means: float = 1.6e-4
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shn: float = 2.5e-3 / 20

    def __post_init__(self) -> None:
        where = "splat settings"
        for name, low in (("steps", 1), ("sh_degree", 0), ("max_gaussians", 1), ("checkpoint_every", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"{name} must be an integer ≥ {low}, got {value!r}", where=where)
        if self.sh_degree > 3:
            raise ConfigError(f"sh_degree must be 0 to 3, got {self.sh_degree}", where=where)
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy is {self.strategy!r}, expected one of {', '.join(STRATEGIES)}", where=where)
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device is {self.device!r}, expected auto, cpu or cuda", where=where)
        if not 0.0 <= self.ssim_lambda <= 1.0:
            raise ConfigError(f"ssim_lambda must be in [0, 1], got {self.ssim_lambda}", where=where)
        budget = self.time_budget_s
        if budget is not None and not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
            raise ConfigError(f"time_budget_s must be a positive number or None, got {budget!r}", where=where)


@dataclass
class TrainResult:
    """What training made: the parameters as numpy arrays (INRIA's activations: log scales,
    opacity logits, SH coefficients) and how it went."""

    means: np.ndarray
    scales_log: np.ndarray
    quats: np.ndarray
    opacity_logit: np.ndarray
    sh_dc: np.ndarray
    sh_rest: np.ndarray
    steps: int
    seconds: float
    device: str
    resumed_from: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_by: str = "steps"

    @property
    def count(self) -> int:
        return int(self.means.shape[0])

    def cloud(self) -> Any:
        """The result as an :class:`engine.splat.ply.GaussianCloud` (for PLY export)."""
        from engine.splat.ply import GaussianCloud

        return GaussianCloud(means=self.means, scales_log=self.scales_log, quats=self.quats,
                             opacity_logit=self.opacity_logit, sh_dc=self.sh_dc, sh_rest=self.sh_rest)


# ---------------------------------------------------------------------------------------------
# losses and metrics (torch)


def _gaussian_window(size: int, sigma: float, channels: int, torch: Any, like: Any) -> Any:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(img1: Any, img2: Any, *, window: int = 11, sigma: float = 1.5, data_range: float = 1.0,
         valid: bool = False) -> Any:
    """Mean SSIM (Wang et al. 2004: Gaussian window 11, σ 1.5, K1 0.01, K2 0.03) of (..., H, W, C)
    images; differentiable. Zero-padded like 3DGS's loss, or with ``valid`` averaged only where
    the window fits (the metric, as scikit-image computes it with Gaussian weights)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    a = img1.reshape(-1, *img1.shape[-3:]).permute(0, 3, 1, 2)
    b = img2.reshape(-1, *img2.shape[-3:]).permute(0, 3, 1, 2)
    channels = a.shape[1]
    kernel = _gaussian_window(window, sigma, channels, torch, a)
    pad = 0 if valid else window // 2

    def blur(x: Any) -> Any:
        return F.conv2d(x, kernel, padding=pad, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return value.mean()


def psnr(img1: Any, img2: Any, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, data_range]."""
    mse = float(((img1 - img2) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


# ---------------------------------------------------------------------------------------------
# schedules


@dataclass(frozen=True)
class Schedule:
    """Refinement and SH steps for a run of ``steps`` (see the module docstring)."""

    refine_start: int
    refine_stop: int
    refine_every: int
    reset_every: int
    sh_every: int

    @classmethod
    def for_steps(cls, steps: int, sh_degree: int) -> Schedule:
        refine_every = max(25, min(100, steps // 70))
        reset_every = 3000 if steps >= 6000 else steps * 10  # no reset unless it has time to recover
        sh_every = max(1, min(1000, steps // (2 * (sh_degree + 1))))
        return cls(refine_start=max(refine_every, min(500, steps // 14)), refine_stop=max(1, min(15_000, steps // 2)),
                   refine_every=refine_every, reset_every=reset_every, sh_every=sh_every)


def resolve_device(requested: str) -> str:
    """"cuda" when asked for (error if there is none) or when "auto" finds a GPU, else "cpu"."""
    import torch

    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise ConfigError("device cuda was asked for, but torch sees no CUDA GPU", where="--device",
                          hint="use --device cpu or auto")
    return "cpu"


# ---------------------------------------------------------------------------------------------
# the trainer


def _inverse_sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 1e-4, 1 - 1e-4)
    return np.log(x / (1 - x))


def _make_params(init: Any, sh_degree: int, device: str, torch: Any) -> Any:
    n = init.count
    sh0 = ((np.asarray(init.colors_srgb, np.float32) - 0.5) / SH_C0)[:, None, :]
    k = (sh_degree + 1) ** 2 - 1
    values = {
        "means": np.asarray(init.means, np.float32),
        "scales": np.log(np.maximum(np.asarray(init.scales, np.float32), 1e-7)),
        "quats": np.asarray(init.quats, np.float32),
        "opacities": _inverse_sigmoid(np.asarray(init.opacities, np.float32)),
        "sh0": sh0.astype(np.float32),
        "shN": np.zeros((n, k, 3), np.float32),
    }
    return torch.nn.ParameterDict(
        {name: torch.nn.Parameter(torch.from_numpy(np.array(v, np.float32)).to(device)) for name, v in values.items()})


def _make_optimizers(params: Any, settings: TrainSettings, scene_scale: float, torch: Any) -> dict[str, Any]:
    rates = {"means": settings.lr_means * scene_scale, "scales": settings.lr_scales, "quats": settings.lr_quats,
             "opacities": settings.lr_opacities, "sh0": settings.lr_sh0, "shN": settings.lr_shn}
    return {name: torch.optim.Adam([{"params": params[name], "lr": rate, "name": name}], eps=1e-15)
            for name, rate in rates.items()}


def _strategy(settings: TrainSettings, schedule: Schedule, device: str) -> Any:
    from gsplat.strategy import DefaultStrategy, MCMCStrategy

    if settings.strategy == "mcmc":
        if device != "cuda":
            raise ConfigError("the MCMC strategy needs CUDA (gsplat's relocation is a CUDA kernel)",
                              where="strategy", hint="use strategy default on the CPU")
        return MCMCStrategy(cap_max=settings.max_gaussians, refine_start_iter=schedule.refine_start,
                            refine_stop_iter=max(schedule.refine_stop, settings.steps), refine_every=schedule.refine_every)
    return DefaultStrategy(refine_start_iter=schedule.refine_start, refine_stop_iter=schedule.refine_stop,
                           refine_every=schedule.refine_every, reset_every=schedule.reset_every,
                           verbose=False)


def _save_checkpoint(path: Path, state: dict[str, Any], torch: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def train_gaussians(
    init: Any,
    images: np.ndarray,
    viewmats: np.ndarray,
    Ks: np.ndarray,  # noqa: N803 - gsplat's name
    train_views: Any,
    settings: TrainSettings | None = None,
    *,
    checkpoint: str | Path | None = None,
    progress: Progress = no_progress,
    cancel: Callable[[], bool] | None = None,
    eval_views: Any = None,
    eval_every: int = 0,
) -> TrainResult:
    """Fit Gaussians starting from ``init`` (a :class:`engine.splat.init.GaussianInit`) to the
    straight-alpha sRGB ``images`` (C, H, W, 4) float in [0, 1] seen through OpenCV ``viewmats``
    (C, 4, 4) and ``Ks`` (C, 3, 3); only ``train_views`` are used. With ``eval_every`` the
    PSNR on ``eval_views`` is measured every that many steps into ``history`` ("eval_psnr";
    its time is not counted in ``seconds``)."""
    import torch

    from engine.splat.raster import rasterization

    settings = settings or TrainSettings()
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 4:
        raise ConfigError(f"images must be (C, H, W, 4) RGBA, got shape {images.shape}", where="training views")
    if not np.isfinite(images).all():
        raise ConfigError("images contain NaN or inf", where="training views")
    train_views = np.asarray(train_views, np.int64).ravel()
    if train_views.size == 0:
        raise ConfigError("no training view", where="training views")
    if init.count == 0:
        raise ConfigError("no initial Gaussian", where="init")
    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)
    generator = np.random.default_rng(settings.seed)
    height, width = images.shape[1:3]
    means = np.asarray(init.means, np.float64)
    scene_scale = float(np.linalg.norm(means - means.mean(axis=0), axis=1).max() * 1.1) or 1.0
    schedule = Schedule.for_steps(settings.steps, settings.sh_degree)

    params = _make_params(init, settings.sh_degree, device, torch)
    optimizers = _make_optimizers(params, settings, scene_scale, torch)
    strategy = _strategy(settings, schedule, device)
    strategy.check_sanity(params, optimizers)
    strategy_state = (strategy.initialize_state(scene_scale=scene_scale) if settings.strategy == "default"
                      else strategy.initialize_state())
    start_step = 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and ckpt_path.is_file():
        saved = torch.load(ckpt_path, map_location=device, weights_only=False)
        if saved.get("settings") != asdict(settings) or saved.get("views") != images.shape[0]:
            raise ConfigError("the checkpoint was made with other settings or views", where=str(ckpt_path),
                              hint="delete it to start over, or resume with the same settings")
        params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.to(device)) for k, v in saved["params"].items()})
        optimizers = _make_optimizers(params, settings, scene_scale, torch)
        for name, opt in optimizers.items():
            opt.load_state_dict(saved["optimizers"][name])
        strategy_state = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in saved["strategy"].items()}
        start_step = int(saved["step"])
        generator = np.random.default_rng()
        generator.bit_generator.state = saved["numpy_rng"]
        torch.set_rng_state(saved["torch_rng"])
        log.info("resumed from step %d (%d Gaussians)", start_step, params["means"].shape[0])

    targets = torch.from_numpy(np.array(images)).to(device)
    view_t = torch.from_numpy(np.array(viewmats, np.float32)).to(device)
    k_t = torch.from_numpy(np.array(Ks, np.float32)).to(device)
    decay = 0.01 ** (1.0 / max(settings.steps, 1))
    for group in optimizers["means"].param_groups:
        group["lr"] = settings.lr_means * scene_scale * decay**start_step
    packed = False
    history: list[dict[str, float]] = []
    eval_seconds = 0.0
    started = time.perf_counter()
    stopped_by = "steps"

    def state_dict(step: int) -> dict[str, Any]:
        return {"step": step, "settings": asdict(settings), "views": images.shape[0],
                "params": {k: v.detach().cpu() for k, v in params.items()},
                "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                "strategy": {k: (v.detach().cpu() if torch.is_tensor(v) else v) for k, v in strategy_state.items()},
                "numpy_rng": generator.bit_generator.state, "torch_rng": torch.get_rng_state()}

    step = start_step
    progress("train", start_step / settings.steps, f"{params['means'].shape[0]} Gaussians on {device}")
    while step < settings.steps:
        if cancel is not None and cancel():
            if ckpt_path is not None:
                _save_checkpoint(ckpt_path, state_dict(step), torch)
            raise TrainingCancelled(f"training cancelled at step {step}")
        if settings.time_budget_s is not None and time.perf_counter() - started > settings.time_budget_s:
            stopped_by = "time budget"
            break
        view = int(train_views[generator.integers(train_views.size)])
        target = targets[view]
        background = torch.rand(3, device=device)
        target_rgb = target[..., :3] * target[..., 3:] + background * (1 - target[..., 3:])
        degree = min(step // schedule.sh_every, settings.sh_degree)
        colors = torch.cat([params["sh0"], params["shN"]], 1)
        try:
            renders, _alphas, info = rasterization(
                params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
                colors, view_t[view:view + 1], k_t[view:view + 1], width, height, sh_degree=degree,
                backgrounds=background[None], packed=packed, absgrad=False)
        except InputError:
            activated = (*params.values(), torch.exp(params["scales"].detach()))
            if not all(torch.isfinite(p).all() for p in activated):
                raise TrainingDiverged(f"a parameter became NaN or inf at step {step}: training stopped, "
                                       "nothing exported") from None
            raise
        strategy.step_pre_backward(params, optimizers, strategy_state, step, info)
        rendered = renders[0, ..., :3]
        l1 = (rendered - target_rgb).abs().mean()
        loss = (1 - settings.ssim_lambda) * l1 + settings.ssim_lambda * (1 - ssim(rendered[None], target_rgb[None]))
        if settings.strategy == "mcmc":
            loss = loss + 0.01 * torch.sigmoid(params["opacities"]).mean() + 0.01 * torch.exp(params["scales"]).mean()
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"the loss became {loss.item()} at step {step}: training stopped, nothing exported")
        loss.backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        if settings.strategy == "mcmc":
            strategy.step_post_backward(params, optimizers, strategy_state, step, info,
                                        lr=optimizers["means"].param_groups[0]["lr"])
        else:
            strategy.step_post_backward(params, optimizers, strategy_state, step, info, packed=packed)
        for group in optimizers["means"].param_groups:
            group["lr"] *= decay
        step += 1
        if params["means"].shape[0] > settings.max_gaussians:
            _prune_to(params, optimizers, strategy_state, settings.max_gaussians, torch)
        if step % 50 == 0 or step == settings.steps:
            if not all(torch.isfinite(p).all() for p in params.values()):
                raise TrainingDiverged(f"a parameter became NaN or inf at step {step}: training stopped, nothing exported")
            entry = {"step": step, "loss": loss.item(), "l1": l1.item(), "gaussians": int(params["means"].shape[0]),
                     "seconds": round(time.perf_counter() - started, 3)}
            history.append(entry)
            progress("train", step / settings.steps,
                     f"step {step}/{settings.steps}, loss {entry['loss']:.4f}, {entry['gaussians']} Gaussians")
        if eval_every and eval_views is not None and (step % eval_every == 0 or step == settings.steps):
            mark = time.perf_counter()
            snapshot = _snapshot(params, step, 0.0, device, start_step, [], "")
            measured = evaluate(snapshot, images, viewmats, Ks, eval_views, device=device)
            history.append({"step": step, "eval_psnr": measured["psnr"], "eval_ssim": measured["ssim"],
                            "gaussians": int(params["means"].shape[0]),
                            "seconds": round(mark - started - eval_seconds, 3)})
            eval_seconds += time.perf_counter() - mark
        if ckpt_path is not None and step % settings.checkpoint_every == 0:
            _save_checkpoint(ckpt_path, state_dict(step), torch)
    if ckpt_path is not None:
        _save_checkpoint(ckpt_path, state_dict(step), torch)
    if not all(torch.isfinite(p).all() for p in params.values()):
        raise TrainingDiverged("a parameter became NaN or inf: training stopped, nothing exported")

    return _snapshot(params, step, time.perf_counter() - started - eval_seconds, device, start_step, history,
                     stopped_by)


def _snapshot(params: Any, step: int, seconds: float, device: str, start_step: int, history: list[dict[str, float]],
              stopped_by: str) -> TrainResult:
    def out(name: str) -> np.ndarray:
        return params[name].detach().cpu().numpy().astype(np.float32)

    quats = out("quats")
    quats /= np.maximum(np.linalg.norm(quats, axis=1, keepdims=True), 1e-12)
    return TrainResult(means=out("means"), scales_log=out("scales"), quats=quats, opacity_logit=out("opacities"),
                       sh_dc=out("sh0")[:, 0, :], sh_rest=out("shN"), steps=step, seconds=seconds, device=device,
                       resumed_from=start_step, history=history, stopped_by=stopped_by)


def _prune_to(params: Any, optimizers: dict[str, Any], state: dict[str, Any], cap: int, torch: Any) -> None:
    """Keep the ``cap`` most opaque Gaussians (the cap on memory)."""
    from gsplat.strategy.ops import remove

    opacity = torch.sigmoid(params["opacities"].detach())
    order = torch.argsort(opacity, descending=True)
    mask = torch.ones_like(opacity, dtype=torch.bool)
    mask[order[:cap]] = False
    remove(params=params, optimizers=optimizers, state=state, mask=mask)


def render_gaussians(result: TrainResult, viewmats: np.ndarray, Ks: np.ndarray, width: int, height: int,  # noqa: N803
                     *, background: tuple[float, float, float] = (1.0, 1.0, 1.0), device: str = "auto",
                     chunk: int = 8) -> np.ndarray:
    """Render the trained Gaussians at full SH degree: (C, H, W, 4) float32 (RGB over
    ``background``, alpha)."""
    import torch

    from engine.splat.raster import rasterization

    device = resolve_device(device)
    sh = np.concatenate([result.sh_dc[:, None, :], result.sh_rest], 1)
    degree = round(math.sqrt(sh.shape[1])) - 1

    def t(a: np.ndarray) -> Any:
        return torch.from_numpy(np.array(a, np.float32)).to(device)

    means, quats, scales = t(result.means), t(result.quats), torch.exp(t(result.scales_log))
    opacities, colors = torch.sigmoid(t(result.opacity_logit)), t(sh)
    views = np.asarray(viewmats, np.float32)
    out = np.zeros((views.shape[0], height, width, 4), np.float32)
    with torch.no_grad():
        for first in range(0, views.shape[0], chunk):
            last = min(first + chunk, views.shape[0])
            count = last - first
            bg = torch.tensor(background, dtype=torch.float32, device=device).expand(count, 3)
            rgb, alpha, _ = rasterization(means, quats, scales, opacities, colors, t(views[first:last]),
                                          t(np.asarray(Ks, np.float32)[first:last]), width, height,
                                          sh_degree=degree, backgrounds=bg, packed=False)
            out[first:last, ..., :3] = rgb[..., :3].clamp(0, 1).cpu().numpy()
            out[first:last, ..., 3:] = alpha.cpu().numpy()
    return out


def evaluate(result: TrainResult, images: np.ndarray, viewmats: np.ndarray, Ks: np.ndarray,  # noqa: N803
             views: Any, *, device: str = "auto") -> dict[str, Any]:
    """PSNR and SSIM of the trained Gaussians on ``views`` (composited over white, sRGB in [0, 1])."""
    import torch

    views = np.asarray(views, np.int64).ravel()
    if views.size == 0:
        return {"views": 0, "psnr": None, "ssim": None}
    images = np.asarray(images, np.float32)
    height, width = images.shape[1:3]
    rendered = render_gaussians(result, np.asarray(viewmats)[views], np.asarray(Ks)[views], width, height,
                                device=device)
    target = images[views]
    target_rgb = target[..., :3] * target[..., 3:] + (1 - target[..., 3:])
    per_view = []
    for i in range(views.size):
        a = torch.from_numpy(rendered[i, ..., :3])
        b = torch.from_numpy(target_rgb[i])
        per_view.append({"view": int(views[i]), "psnr": round(psnr(a, b), 3), "ssim": round(float(ssim(a, b, valid=True)), 5)})
    return {"views": int(views.size), "psnr": round(float(np.mean([v["psnr"] for v in per_view])), 3),
            "ssim": round(float(np.mean([v["ssim"] for v in per_view])), 5), "per_view": per_view,
            "rendered": rendered}
