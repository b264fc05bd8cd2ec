"""Sampling plan of the Trust Engine: which views and image tiles a verifier checks.

Size
    The original design's formula, n = ⌈10 · (1 + 2·complexity) · (1 + 10·(confidence − 0.9))⌉
    units (10 for a trivial scene at 90 % confidence, 57 for the most complex one at 99 %). The
    product is rounded to 9 decimals before the ceiling so that float noise (0.92 − 0.9 is
    0.020000000000000018) does not add a unit. If a fraction p of the units is defective, a
    sample of n drawn with replacement misses all of them with probability (1 − p)^n, so it
    detects the defect with probability 1 − (1 − p)^n (:func:`detection_probability`). Without
    replacement (what :func:`draw_sample` does) detection is a little more likely
    (:func:`detection_probability_without_replacement`, hypergeometric); the binomial figure is
    the conservative one the reports quote.

Units
    A unit is one tile of one held-out view. :class:`TileGrid` cuts an H × W image into
    ⌈H/t⌉ × ⌈W/t⌉ square tiles of side t that cover every pixel: the last row and column of
    tiles are shifted inwards to stay inside the image (overlapping their neighbours) rather than
    being cut short or left out, so a producer cannot hide defects in an unsampled border and
    every tile has the same size (one metric batch).

Seeds and the threat model
    The producer (the node that made the result) wants to know which units will be checked, to
    make those right and cut corners elsewhere. Each verifier samples from its own seed,
    ``verifier_seed(verification_id, verifier_public_key)``: SHA-256 over a domain-separation tag
    and the two length-prefixed inputs, first 8 bytes as an unsigned 64-bit integer.

    * The coordinator draws the verification id at random (≥ 128 bits) after the producer has
      committed to its result (the result hash), so the producer cannot predict any verifier's
      sample while it can still change the result.
    * The verifier's public key makes every verifier's sample different: satisfying one sample
      does not satisfy the others, and the chance that all k verifiers miss a defect multiplies.
    * The seed is a function of public values only, so a verifier cannot pick a convenient sample
      (to frame a producer or to skip work): it discloses the seed in its vote and anyone
      recomputes the seed and the sample (:func:`draw_sample` is deterministic).
    * Not covered: a coordinator colluding with the producer could try many verification ids
      until the verifiers' samples miss the defects (grinding). Bounding that needs randomness
      the coordinator cannot choose, e.g. seeds from the verifier's deterministic Ed25519
      signature over the verification id (a VRF-like construction), or ids from a public beacon.

Determinism across machines
    Each unit gets one raw 64-bit output of numpy's PCG64 bit generator seeded with the seed, and
    the sample is the n units with the smallest keys (ties, practically impossible, go to the
    lower unit index): a uniformly random subset, without replacement. PCG64 guarantees that a
    fixed seed always gives the same integer stream; ``Generator`` methods such as ``choice``
    carry no such guarantee across numpy releases, which could make a disclosed seed re-check
    differently on another peer's numpy (a test pins one sample to catch that).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import ConfigError, InputError

SEED_DOMAIN = b"optimizer/trust/sample-seed/v1"
DEFAULT_DEFECT_FRACTIONS = (0.01, 0.05, 0.1, 0.2)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"{name} must be a number, got {value!r}", where="sampling plan")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be finite, got {number}", where="sampling plan")
    return number


def _count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < minimum:
        raise ConfigError(f"{name} must be an integer ≥ {minimum}, got {value!r}", where="sampling plan")
    return int(value)


def sample_size(complexity: float, confidence: float = 0.95) -> int:
    """Units to check: ⌈10·(1 + 2·complexity)·(1 + 10·(confidence − 0.9))⌉, complexity in [0, 1], confidence in [0.9, 1)."""
    complexity = _number(complexity, "complexity")
    confidence = _number(confidence, "confidence")
    if not 0.0 <= complexity <= 1.0:
        raise ConfigError(f"complexity {complexity} is outside [0, 1]", where="sampling plan")
    if not 0.9 <= confidence < 1.0:
        raise ConfigError(f"confidence {confidence} is outside [0.9, 1)", where="sampling plan",
                          hint="the original formula is defined from 90 % confidence up")
    raw = 10.0 * (1.0 + 2.0 * complexity) * (1.0 + 10.0 * (confidence - 0.9))
    return math.ceil(round(raw, 9))


def detection_probability(p: float, n: int) -> float:
    """Chance that n units drawn (with replacement) hit at least one defect when a fraction p is defective."""
    p = _number(p, "defect fraction p")
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"defect fraction {p} is outside [0, 1]", where="sampling plan")
    n = _count(n, "n", 0)
    return 1.0 - (1.0 - p) ** n


def detection_probability_without_replacement(defective: int, units: int, n: int) -> float:
    """Exact chance (hypergeometric) that n distinct units out of ``units`` include one of ``defective``."""
    units = _count(units, "units", 1)
    defective = _count(defective, "defective", 0)
    n = _count(n, "n", 0)
    if defective > units or n > units:
        raise ConfigError(f"defective ({defective}) and n ({n}) must not exceed units ({units})", where="sampling plan")
    clean = units - defective
    if n > clean:
        return 1.0
    i = np.arange(n, dtype=np.float64)
    return float(1.0 - np.exp(np.sum(np.log1p(-defective / (units - i)))))


def verifier_seed(verification_id: str, verifier_public_key: bytes) -> int:
    """A verifier's sample seed: SHA-256(domain ‖ len ‖ id ‖ len ‖ key), first 8 bytes big-endian (see the module docstring)."""
    if not isinstance(verification_id, str) or not verification_id:
        raise InputError("verification id must be a non-empty string", where="sample seed")
    if not isinstance(verifier_public_key, bytes | bytearray | memoryview) or len(bytes(verifier_public_key)) == 0:
        raise InputError("verifier public key must be non-empty bytes (the raw 32-byte Ed25519 key)",
                         where="sample seed")
    ident = verification_id.encode("utf-8")
    key = bytes(verifier_public_key)
    digest = hashlib.sha256(SEED_DOMAIN + b"\0" + len(ident).to_bytes(8, "big") + ident
                            + len(key).to_bytes(8, "big") + key).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass(frozen=True)
class TileGrid:
    """Square tiles of side ``tile`` covering an ``height`` × ``width`` image (edge tiles shifted inwards)."""

    height: int
    width: int
    tile: int

    def __post_init__(self) -> None:
        for name in ("height", "width", "tile"):
            object.__setattr__(self, name, _count(getattr(self, name), name, 1))
        if self.tile > min(self.height, self.width):
            raise ConfigError(f"tile {self.tile} is larger than the {self.height}×{self.width} image",
                              where="sampling plan", hint="use a tile no larger than the image's shorter side")

    @property
    def rows(self) -> int:
        return -(-self.height // self.tile)

    @property
    def cols(self) -> int:
        return -(-self.width // self.tile)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def origins(self, tiles: np.ndarray | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Top-left pixel (y0, x0) of each tile index (row-major), shifted inwards at the far edges."""
        index = np.asarray(tiles, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.count):
            raise InputError(f"tile index outside [0, {self.count})", where="sampling plan")
        y0 = np.minimum((index // self.cols) * self.tile, self.height - self.tile)
        x0 = np.minimum((index % self.cols) * self.tile, self.width - self.tile)
        return y0, x0

    def to_dict(self) -> dict[str, int]:
        return {"height": self.height, "width": self.width, "tile": self.tile}


@dataclass(frozen=True)
class SamplingPlan:
    """The units one verifier checks: ``chosen`` (view id, tile index) pairs, drawn from ``seed``."""

    n: int
    units: int
    chosen: tuple[tuple[int, int], ...]
    seed: int
    views: tuple[int, ...]
    tiles_per_view: int
    grid: TileGrid | None = None

    def detection_table(self, ps: Sequence[float] = DEFAULT_DEFECT_FRACTIONS) -> list[dict[str, float]]:
        """For each defect fraction p: 1 − (1 − p)^n (the quoted, conservative figure) and the exact chance for
        this plan, ⌈p·units⌉ defective units drawn without replacement."""
        rows = []
        for p in ps:
            binomial = detection_probability(p, self.n)
            defective = math.ceil(round(p * self.units, 9))
            exact = detection_probability_without_replacement(defective, self.units, self.n)
            rows.append({"defect_fraction": float(p), "detection_probability": binomial,
                         "defective_units": defective, "detection_probability_without_replacement": exact})
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe disclosure of the plan (a vote carries the seed; this is for reports)."""
        return {"n": self.n, "units": self.units, "seed": self.seed, "views": list(self.views),
                "tiles_per_view": self.tiles_per_view, "grid": self.grid.to_dict() if self.grid else None,
                "chosen": [list(pair) for pair in self.chosen]}


def _rank_keys(seed: int, units: int) -> np.ndarray:
    """One raw 64-bit PCG64 output per unit, from the seed (numpy keeps this stream stable across releases)."""
    return np.random.PCG64(seed).random_raw(units)


def _smallest_keys(keys: np.ndarray, n: int) -> np.ndarray:
    """Sorted indices of the n smallest keys, ties at the cut going to the lower index (O(units))."""
    cut = np.partition(keys, n - 1)[n - 1]
    below = np.flatnonzero(keys < cut)
    at_cut = np.flatnonzero(keys == cut)[: n - below.size]
    return np.sort(np.concatenate([below, at_cut]))


def draw_sample(seed: int, views: int | Sequence[int], tiles: int | TileGrid | tuple[int, int, int],
                n: int) -> SamplingPlan:
    """Draw n distinct (view, tile) units, deterministically from ``seed``; n is capped at the unit count.

    ``views`` is a view count (ids 0..V−1) or the held-out view ids; ``tiles`` is the number of tiles
    per view, a :class:`TileGrid`, or ``(height, width, tile)``. Units are numbered view-major
    (unit = view position × tiles per view + tile), and ``chosen`` is sorted by unit.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= int(seed) < 2**64:
        raise InputError(f"seed {seed!r} is not an integer in [0, 2^64)", where="sampling plan")
    seed = int(seed)
    if isinstance(views, int | np.integer) and not isinstance(views, bool):
        view_ids = tuple(range(_count(views, "views", 1)))
    elif isinstance(views, Sequence) and not isinstance(views, str | bytes):
        view_ids = tuple(_count(v, "view id", 0) for v in views)
        if not view_ids or len(set(view_ids)) != len(view_ids):
            raise ConfigError(f"view ids {list(view_ids)} must be non-empty and distinct", where="sampling plan")
    else:
        raise ConfigError(f"views must be a count or a list of view ids, got {views!r}", where="sampling plan")
    grid: TileGrid | None
    if isinstance(tiles, TileGrid):
        grid = tiles
    elif isinstance(tiles, tuple | list):
        if len(tiles) != 3:
            raise ConfigError(f"tile grid {tiles!r} is not (height, width, tile)", where="sampling plan")
        grid = TileGrid(*tiles)
    else:
        grid = None
    tiles_per_view = grid.count if grid is not None else _count(tiles, "tiles per view", 1)
    n = _count(n, "n", 1)
    units = len(view_ids) * tiles_per_view
    n = min(n, units)
    picked = _smallest_keys(_rank_keys(seed, units), n)
    chosen = tuple((view_ids[int(u) // tiles_per_view], int(u) % tiles_per_view) for u in picked)
    return SamplingPlan(n=n, units=units, chosen=chosen, seed=seed, views=view_ids,
                        tiles_per_view=tiles_per_view, grid=grid)


def crop_tiles(images: np.ndarray | Sequence[np.ndarray] | Mapping[int, np.ndarray], plan: SamplingPlan) -> np.ndarray:
    """The plan's tiles as one (n, tile, tile, C) array, in ``plan.chosen`` order.

    ``images[view_id]`` must be that view's (H, W, C) image: an array (V, H, W, C) indexed by view
    id, a list, or a mapping {view id: image}.
    """
    grid = plan.grid
    if grid is None:
        raise ConfigError("the plan has no tile grid (it was drawn with a tile count)", where="crop tiles",
                          hint="draw the sample with a TileGrid or (height, width, tile)")
    view_ids = np.array([v for v, _ in plan.chosen], dtype=np.int64)
    y0, x0 = grid.origins([t for _, t in plan.chosen])
    offsets = np.arange(grid.tile)
    rows = (y0[:, None] + offsets)[:, :, None]
    cols = (x0[:, None] + offsets)[:, None, :]
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[1:3] != (grid.height, grid.width):
            raise InputError(f"images have shape {images.shape}, not (V, {grid.height}, {grid.width}, C)",
                             where="crop tiles")
        if view_ids.size and view_ids.max() >= images.shape[0]:
            raise InputError(f"view {int(view_ids.max())} is not among the {images.shape[0]} images", where="crop tiles")
        return images[view_ids[:, None, None], rows, cols]
    tiles = []
    for k, view in enumerate(int(v) for v in view_ids):  # one slice per sampled tile (n is small)
        try:
            image = np.asarray(images[view])
        except (KeyError, IndexError) as exc:
            raise InputError(f"no image for view {view}", where="crop tiles") from exc
        if image.ndim != 3 or image.shape[:2] != (grid.height, grid.width):
            raise InputError(f"view {view} has shape {image.shape}, not ({grid.height}, {grid.width}, C)",
                             where="crop tiles")
        tiles.append(image[rows[k, :, 0][:, None], cols[k, 0, :][None, :]])
    return np.stack(tiles)
