"""The peer verification protocol: a coordinator asks enrolled peers to re-check a result; each answers a signed vote.

Roles
    * The **coordinator** (the node that wants a result checked: ``optimizer verify``, or the ``verify`` job kind)
      draws a random verification id *after* the result is fixed (its hash is part of the task), picks peers from its
      allowlist in an order nobody can predict, sends each the task concurrently, checks every vote it gets back
      (:class:`engine.trust.votes.VoteChecker`), weighs them (:func:`engine.trust.consensus.decide` with ballots from
      the :class:`~engine.trust.reputation.ReputationBook`), recruits more peers while the verdict is DISPUTED (up to
      ``max_verifiers``), records reputations, and appends an ``AuditEntry`` (event ``verification``) and a signed
      checkpoint to its audit log. :func:`verify_result` does all that and returns a :class:`VerificationSummary`.
    * A **peer** (any engine node: ``optimizer serve`` or ``optimizer peer``) answers ``POST /v1/verify``:
      :meth:`PeerVerifier.answer` checks the artifact's hash, derives its own sample seed
      (:func:`engine.trust.sampling.verifier_seed` of the verification id and *its* public key), draws its sample of
      (held-out view, tile) units, re-renders the artifact itself at the sampled views, crops the tiles of its render
      and of the reference views, measures the metrics (:func:`engine.trust.metrics.compare_images`), decides
      pass/fail with the task's thresholds and signs the vote with its node key.

The task (msgpack map, ``TASK_SCHEMA``)
    ``verification_id`` (≥ 128 random bits, hex), ``kind`` (a renderer: ``splat`` today), ``artifact_hash``
    (:func:`artifact_hash` of ``files``), ``files`` (name → bytes: the artifact itself travels inline, at most
    ``MAX_ARTIFACT_BYTES``; a content hash pins it, so where it came from does not matter), ``rig`` (the reference
    camera rig as ``cameras.json`` writes it: the coordinator's rig is authoritative, not one inside the artifact),
    ``references`` (``[[view id, PNG bytes], ...]``: the held-out reference views, 8-bit sRGB RGBA, straight alpha,
    judged over white), ``thresholds`` (:class:`~engine.trust.metrics.QualityThresholds` fields), ``complexity`` and
    ``confidence`` (the sample size, :func:`~engine.trust.sampling.sample_size`), ``tile`` (tile side in pixels),
    ``measure`` (``{"flip": bool, "vmaf": bool}``: optional metrics to measure; a metric not measured is ``null`` in
    the vote and listed with its reason) and ``scene_id``.

The reply (JSON)
    ``{"votes": [signed vote, ...], "report": {...}}``. An honest peer returns exactly one vote; a peer asked again for
    the same verification returns the *same* signed vote (cached), so a retry is never counted twice and never looks
    like equivocation. The coordinator checks every vote in the list: votes are self-authenticating (signed by their
    node), so whoever carried a vote does not matter; a copy of a vote already counted is a replay
    (``replayed_nonce``), two different answers of one node are equivocation. ``report`` is unsigned and advisory:
    why metrics were not measured, which marks failed, the sampled units and the peer's timings
    (``render_ms``, ``metrics_ms``, ``total_ms``), which the coordinator uses to quote its overhead.

Who may ask a peer
    ``/v1/verify`` accepts the node's own bearer token (local use) or a request signed by a key on the peer's own
    allowlist: headers ``X-Optimizer-Node`` (node id), ``X-Optimizer-Timestamp`` (Unix seconds) and
    ``X-Optimizer-Signature`` (base64 Ed25519 over ``REQUEST_DOMAIN``, the method, the path, the timestamp and the
    SHA-256 of the body), within ``REQUEST_SKEW_S`` of the peer's clock. So enrolment is mutual: the coordinator
    enrols the peers whose votes it counts, each peer enrols the coordinators it works for (``optimizer peers add``).
    A replayed request within the window only returns the cached vote again.

Renderers
    :data:`RENDERERS` maps an artifact kind to ``render(artifact_dir, rig, view_ids) -> {view id: (H, W, 3) float32
    sRGB in [0, 1], composited over white}``. ``splat`` re-renders the Gaussians of ``splat.ply`` with the engine's
    PyTorch rasterizer on the CPU (the rig's OpenCV view matrices turned into the file frame, as the splat pipeline
    trained them). ``bake`` re-renders the baked scene as a real-time engine shows it (``scene.glb`` with the
    lightmaps ``atlas_<k>.exr`` looked up at the corner UVs of ``lightmap_uv.npz``:
    :func:`engine.render.lightmapped.render_lightmapped`, CPU) against path-traced reference views of the original
    scene (``BakeSettings.reference_views``). Other kinds register themselves with :func:`register_renderer`.

Result folders (:func:`load_result_dir`) and stored jobs (:func:`artifact_from_job`)
    ``splat``: ``splat.ply`` + ``cameras.json`` (hashed), references ``references/test_<k>.png``. ``bake``:
    ``scene.glb`` + ``lightmap_uv.npz`` + every ``lightmaps/atlas_<k>.exr`` (sent flat as ``atlas_<k>.exr``), the
    rig ``references/cameras.json`` (not part of the hash: the coordinator's rig is authoritative anyway), references
    ``references/view_<k>.png``. A job store keeps ``a/b`` as ``a__b``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import re
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ConfigError, InputError

log = logging.getLogger(__name__)

TASK_SCHEMA = "optimizer.trust.task/1"
SUMMARY_SCHEMA = "optimizer.trust.verification/1"
ARTIFACT_DOMAIN = b"optimizer/trust/artifact/v1"
REQUEST_DOMAIN = b"optimizer-verify-request-v1\x00"
REQUEST_SKEW_S = 60.0
MAX_ARTIFACT_BYTES = 256 * 1024 * 1024
MAX_REFERENCE_BYTES = 64 * 1024 * 1024
MAX_FILES = 64
MAX_VIEWS = 1024
DEFAULT_TILE = 32
DEFAULT_DEADLINE_S = 60.0
DEFAULT_COMPLEXITY = 0.5
DEFAULT_CONFIDENCE = 0.95
HEADER_NODE = "X-Optimizer-Node"
HEADER_TIMESTAMP = "X-Optimizer-Timestamp"
HEADER_SIGNATURE = "X-Optimizer-Signature"

_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_HEX128_RE = re.compile(r"^[0-9a-f]{32,128}$")
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")

# ---------------------------------------------------------------------------------------------
# artifacts and renderers

Renderer = Callable[[Path, Any, Sequence[int]], dict[int, np.ndarray]]
RENDERERS: dict[str, Renderer] = {}
#: The files of each artifact kind that are hashed, sent and re-rendered.
ARTIFACT_FILES: dict[str, tuple[str, ...]] = {}


#: Per kind: (pattern of the result's relative paths that join the artifact besides ``ARTIFACT_FILES``, sent under
#: the name the pattern's first group captures; the rig's path; a reference view's path with ``{view}``).
RESULT_LAYOUT: dict[str, tuple[str | None, str, str]] = {}


def register_renderer(kind: str, files: Sequence[str], render: Renderer, *, extra_files: str | None = None,
                      rig: str = "cameras.json", reference: str = "references/test_{view}.png") -> None:
    """Make ``kind`` verifiable: ``files`` are the artifact's files, ``render`` re-renders it (see the module doc);
    ``extra_files``, ``rig`` and ``reference`` say where its result folder keeps the rest (see ``RESULT_LAYOUT``)."""
    RENDERERS[kind] = render
    ARTIFACT_FILES[kind] = tuple(files)
    RESULT_LAYOUT[kind] = (extra_files, rig, reference)


def _artifact_paths(kind: str, paths: Iterable[str]) -> dict[str, str]:
    """Artifact file name → relative result path, of the files a ``kind`` result holds among ``paths``."""
    chosen = {name: name for name in ARTIFACT_FILES[kind]}
    pattern = RESULT_LAYOUT[kind][0]
    if pattern is not None:
        for path in sorted(paths):
            match = re.fullmatch(pattern, path)
            if match:
                chosen[match.group(1)] = path
    return chosen


def artifact_hash(files: Mapping[str, bytes]) -> str:
    """SHA-256 (hex) of an artifact's files: domain tag, then each name and content length-prefixed, by name."""
    digest = hashlib.sha256(ARTIFACT_DOMAIN)
    for name in sorted(files):
        raw_name = name.encode("utf-8")
        data = bytes(files[name])
        digest.update(len(raw_name).to_bytes(8, "big") + raw_name + len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def render_splat(artifact_dir: Path, rig: Any, view_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """Re-render ``splat.ply`` at ``view_ids`` of ``rig`` on the CPU, over white (the splat pipeline's judging)."""
    from engine.splat.frames import viewmats_to_file_frame
    from engine.splat.ply import read_ply
    from engine.splat.train import render_gaussians

    cloud = read_ply(Path(artifact_dir) / "splat.ply")
    views = np.asarray(list(view_ids), np.int64)
    viewmats = viewmats_to_file_frame(rig.viewmats)[views]
    images = render_gaussians(cloud, viewmats, rig.Ks[views], rig.width, rig.height, device="cpu")
    return {int(v): images[i, ..., :3] for i, v in enumerate(views)}


register_renderer("splat", ("splat.ply", "cameras.json"), render_splat)


def render_bake(artifact_dir: Path, rig: Any, view_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """Re-render a bake at ``view_ids`` of ``rig`` on the CPU as a real-time engine shows it (``scene.glb`` lit by
    ``atlas_<k>.exr`` at the corner UVs of ``lightmap_uv.npz``), sRGB over white like the reference views."""
    from engine.bake.output import read_exr
    from engine.bake.pipeline import read_corner_uvs
    from engine.scene.io import load_scene

    folder = Path(artifact_dir)
    scene = load_scene(folder / "scene.glb")
    corner_uvs = read_corner_uvs(folder / "lightmap_uv.npz")
    count = 1 + max((atlas for atlas, _ in corner_uvs.values()), default=-1)
    atlases = []
    for k in range(count):
        path = folder / f"atlas_{k}.exr"
        if not path.is_file():
            raise InputError(f"the bake has no lightmap atlas_{k}.exr, which its lightmap UVs use",
                             where="verification task.files", hint="send every lightmaps/atlas_<k>.exr of the bake")
        atlases.append(read_exr(path))
    return lightmapped_views(scene, corner_uvs, atlases, rig, view_ids)


def lightmapped_views(scene: Any, corner_uvs: Any, atlases: Sequence[np.ndarray], rig: Any,
                      view_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """A baked scene as a real-time engine shows it from ``view_ids`` of ``rig`` (CPU, 4 rays a pixel,
    seed 0): {view: sRGB over white (H, W, 3) float32}."""
    from engine.bake.output import srgb_encode
    from engine.render.lightmapped import render_lightmapped
    from engine.render.views import to_straight

    views = np.asarray(list(view_ids), np.int64)
    result = render_lightmapped(scene, corner_uvs, atlases, rig.viewmats[views], rig.Ks[views], rig.width,
                                rig.height, aa=4, seed=0, device="cpu")
    straight = to_straight(result.rgba)
    alpha = np.clip(straight[..., 3:], 0.0, 1.0)
    over_white = srgb_encode(np.clip(straight[..., :3], 0.0, 1.0)) * alpha + (1.0 - alpha)
    return {int(v): over_white[i].astype(np.float32) for i, v in enumerate(views)}


register_renderer("bake", ("scene.glb", "lightmap_uv.npz"), render_bake, extra_files=r"lightmaps/(atlas_\d+\.exr)",
                  rig="references/cameras.json", reference="references/view_{view}.png")


def decode_reference_png(data: bytes, *, where: str = "reference view") -> np.ndarray:
    """An 8-bit PNG (RGB or straight-alpha RGBA) as (H, W, 3) float32 sRGB in [0, 1], composited over white."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            if image.format != "PNG":
                raise InputError(f"the image is {image.format}, not PNG", where=where)
            rgba = np.asarray(image.convert("RGBA"), np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"not a readable PNG ({exc})", where=where) from None
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + (1.0 - alpha)


@dataclass(frozen=True)
class Artifact:
    """A result to verify: its kind, its files (name → bytes), the reference rig and the held-out reference views."""

    kind: str
    files: Mapping[str, bytes]
    rig: Mapping[str, Any]  # cameras.json form
    references: Mapping[int, bytes]  # held-out view id → PNG bytes
    scene_id: str | None = None

    @property
    def hash(self) -> str:
        return artifact_hash(self.files)


def result_kind(folder: Path) -> str:
    """The kind of a result folder: ``bake`` when it holds ``lightmap_uv.npz`` and no ``splat.ply``, else ``splat``."""
    return "bake" if (folder / "lightmap_uv.npz").is_file() and not (folder / "splat.ply").is_file() else "splat"


def load_result_dir(result_dir: str | Path) -> Artifact:
    """The artifact in a result folder: a splat (``splat.ply``, ``cameras.json``, ``references/test_<k>.png``) or a
    bake (``scene.glb``, ``lightmap_uv.npz``, ``lightmaps/atlas_<k>.exr``, ``references/cameras.json``,
    ``references/view_<k>.png``)."""
    folder = Path(result_dir).expanduser()
    if not folder.is_dir():
        raise InputError("no such result folder", where=str(folder),
                         hint="pass the folder `optimizer splat` or `optimizer bake` wrote")
    kind = result_kind(folder)
    _, rig_path, reference = RESULT_LAYOUT[kind]
    command = f"`optimizer {kind}`" + (" with reference views" if kind == "bake" else "")
    listed = [p.relative_to(folder).as_posix() for p in folder.glob("*/*") if p.is_file()]
    files: dict[str, bytes] = {}
    for name, relative in _artifact_paths(kind, listed).items():
        path = folder / relative
        if not path.is_file():
            raise InputError(f"the result has no {relative}", where=str(folder),
                             hint=f"verify a {kind} result folder (written by {command})")
        files[name] = path.read_bytes()
    path = folder / rig_path
    try:
        rig = json.loads(path.read_bytes())
    except OSError:
        raise InputError(f"the result has no {rig_path}", where=str(folder),
                         hint=f"results without reference views cannot be verified: run {command}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{rig_path} is not JSON ({exc})", where=str(path)) from None
    if not isinstance(rig, dict) or not isinstance(rig.get("test"), list):
        raise InputError(f"{rig_path} has no list of held-out (test) views", where=str(path))
    references: dict[int, bytes] = {}
    for view in rig["test"]:
        path = folder / reference.format(view=int(view))
        if not path.is_file():
            raise InputError(f"no reference view {path.name}", where=str(path.parent),
                             hint=f"results from before reference views were kept cannot be verified: run {command}")
        references[int(view)] = path.read_bytes()
    summary = folder / f"{kind}.json"
    scene_id = None
    if summary.is_file():
        try:
            scene_id = json.loads(summary.read_text()).get("scene")
        except (ValueError, OSError, AttributeError):
            scene_id = None
    return Artifact(kind, files, rig, references, scene_id if isinstance(scene_id, str) else None)


# ---------------------------------------------------------------------------------------------
# the task


@dataclass(frozen=True)
class VerificationTask:
    """What a coordinator asks a peer to check (see the module docstring)."""

    verification_id: str
    kind: str
    artifact_hash: str
    files: Mapping[str, bytes] = field(repr=False)
    rig: Mapping[str, Any] = field(repr=False)
    references: Mapping[int, bytes] = field(repr=False)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    complexity: float = DEFAULT_COMPLEXITY
    confidence: float = DEFAULT_CONFIDENCE
    tile: int = DEFAULT_TILE
    measure: Mapping[str, bool] = field(default_factory=lambda: {"flip": True, "vmaf": True})
    scene_id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The msgpack-ready map."""
        return {"schema": TASK_SCHEMA, "verification_id": self.verification_id, "kind": self.kind,
                "artifact_hash": self.artifact_hash, "files": {k: bytes(v) for k, v in self.files.items()},
                "rig": dict(self.rig), "references": [[int(v), bytes(png)] for v, png in self.references.items()],
                "thresholds": dict(self.thresholds), "complexity": self.complexity, "confidence": self.confidence,
                "tile": self.tile, "measure": dict(self.measure), "scene_id": self.scene_id}

    def encode(self) -> bytes:
        """msgpack bytes (the body of ``POST /v1/verify``)."""
        import msgpack

        return msgpack.packb(self.to_wire(), use_bin_type=True)

    @classmethod
    def from_wire(cls, data: Any) -> VerificationTask:
        """Parse and check a task map; InputError naming the field when it is not a valid task."""
        where = "verification task"
        if not isinstance(data, Mapping):
            raise InputError(f"a task must be a map, not {type(data).__name__}", where=where)
        if data.get("schema") != TASK_SCHEMA:
            raise InputError(f"schema {data.get('schema')!r} is not {TASK_SCHEMA!r}", where=f"{where}.schema")
        vid = data.get("verification_id")
        if not isinstance(vid, str) or not _HEX128_RE.match(vid):
            raise InputError("verification_id must be 32 to 128 lowercase hex characters (≥ 128 random bits)",
                             where=f"{where}.verification_id")
        kind = data.get("kind")
        if kind not in RENDERERS:
            raise InputError(f"kind {kind!r} cannot be verified here", where=f"{where}.kind",
                             hint=f"this node re-renders: {', '.join(sorted(RENDERERS))}")
        digest = data.get("artifact_hash")
        if not isinstance(digest, str) or not _HASH_RE.match(digest):
            raise InputError("artifact_hash must be 64 lowercase hex characters", where=f"{where}.artifact_hash")
        files = data.get("files")
        if not isinstance(files, Mapping) or not 0 < len(files) <= MAX_FILES:
            raise InputError(f"files must be a map of 1..{MAX_FILES} names to bytes", where=f"{where}.files")
        total = 0
        for name, content in files.items():
            if not isinstance(name, str) or not _FILE_RE.match(name) or not isinstance(content, bytes):
                raise InputError(f"file {str(name)[:80]!r} is not a plain name with bytes", where=f"{where}.files")
            total += len(content)
        if total > MAX_ARTIFACT_BYTES:
            raise InputError(f"the artifact is {total:,} bytes (at most {MAX_ARTIFACT_BYTES:,})", where=f"{where}.files")
        missing = [name for name in ARTIFACT_FILES[kind] if name not in files]
        if missing:
            raise InputError(f"a {kind} artifact needs {', '.join(missing)}", where=f"{where}.files")
        rig = data.get("rig")
        if not isinstance(rig, Mapping):
            raise InputError("rig must be the reference rig (cameras.json form)", where=f"{where}.rig")
        refs = data.get("references")
        if not isinstance(refs, list) or not 0 < len(refs) <= MAX_VIEWS:
            raise InputError(f"references must list 1..{MAX_VIEWS} [view id, PNG bytes] pairs",
                             where=f"{where}.references")
        references: dict[int, bytes] = {}
        size = 0
        for pair in refs:
            if (not isinstance(pair, list | tuple) or len(pair) != 2 or isinstance(pair[0], bool)
                    or not isinstance(pair[0], int) or pair[0] < 0 or not isinstance(pair[1], bytes)
                    or pair[0] in references):
                raise InputError("each reference is a distinct [view id ≥ 0, PNG bytes] pair",
                                 where=f"{where}.references")
            references[pair[0]] = pair[1]
            size += len(pair[1])
        if size > MAX_REFERENCE_BYTES:
            raise InputError(f"the references are {size:,} bytes (at most {MAX_REFERENCE_BYTES:,})",
                             where=f"{where}.references")
        thresholds = data.get("thresholds") or {}
        if not isinstance(thresholds, Mapping):
            raise InputError("thresholds must be a map", where=f"{where}.thresholds")
        measure = data.get("measure") or {}
        if not isinstance(measure, Mapping) or any(k not in ("flip", "vmaf") or not isinstance(v, bool)
                                                   for k, v in measure.items()):
            raise InputError('measure must map "flip" / "vmaf" to booleans', where=f"{where}.measure")
        tile = data.get("tile", DEFAULT_TILE)
        if isinstance(tile, bool) or not isinstance(tile, int) or not 11 <= tile <= 4096:
            raise InputError("tile must be an integer from 11 (SSIM's window) to 4096", where=f"{where}.tile")
        numbers = {}
        for name in ("complexity", "confidence"):
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InputError(f"{name} must be a finite number", where=f"{where}.{name}")
            numbers[name] = float(value)
        scene_id = data.get("scene_id")
        if scene_id is not None and (not isinstance(scene_id, str) or len(scene_id) > 256):
            raise InputError("scene_id must be a short string or null", where=f"{where}.scene_id")
        return cls(vid, kind, digest, dict(files), dict(rig), references, dict(thresholds), numbers["complexity"],
                   numbers["confidence"], tile, {"flip": bool(measure.get("flip", True)),
                                                 "vmaf": bool(measure.get("vmaf", True))}, scene_id)

    @classmethod
    def decode(cls, raw: bytes) -> VerificationTask:
        """Parse msgpack bytes; InputError when they are not a task."""
        import msgpack

        try:
            data = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several types for bad input
            raise InputError(f"not valid msgpack ({type(exc).__name__})", where="verification task") from None
        return cls.from_wire(data)


def new_verification_id() -> str:
    """A fresh verification id: 128 random bits, hex (drawn after the result is fixed)."""
    return secrets.token_hex(16)


# ---------------------------------------------------------------------------------------------
# signed requests (coordinator → peer)


def _request_message(method: str, path: str, timestamp: str, body: bytes) -> bytes:
    return REQUEST_DOMAIN + f"{method.upper()}\n{path}\n{timestamp}\n".encode() + hashlib.sha256(body).hexdigest().encode()


def sign_request(private_key: Any, node_id: str, method: str, path: str, body: bytes, *,
                 now: float | None = None) -> dict[str, str]:
    """The headers that authenticate a request to a peer as coming from ``node_id`` (see the module docstring)."""
    from engine.service.security import sign

    timestamp = f"{time.time() if now is None else now:.3f}"
    signature = sign(private_key, _request_message(method, path, timestamp, body))
    return {HEADER_NODE: node_id, HEADER_TIMESTAMP: timestamp,
            HEADER_SIGNATURE: base64.b64encode(signature).decode("ascii")}


def check_signed_request(headers: Mapping[str, str], method: str, path: str, body: bytes, allowlist: Any, *,
                         now: float | None = None, skew_s: float = REQUEST_SKEW_S) -> str | None:
    """The enrolled node id a request is signed by, or None (unsigned, unknown key, stale or bad signature)."""
    from engine.service.security import verify

    lower = {k.lower(): v for k, v in headers.items()}
    node = lower.get(HEADER_NODE.lower())
    stamp = lower.get(HEADER_TIMESTAMP.lower())
    signature = lower.get(HEADER_SIGNATURE.lower())
    if not node or not stamp or not signature or len(signature) > 128 or len(stamp) > 32:
        return None
    try:
        when = float(stamp)
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return None
    if not math.isfinite(when) or abs((time.time() if now is None else now) - when) > skew_s:
        return None
    try:
        key = allowlist.public_key(node)
    except InputError:
        return None
    if key is None or not verify(key, _request_message(method, path, stamp, body), raw):
        return None
    return node


# ---------------------------------------------------------------------------------------------
# the peer side


class PeerVerifier:
    """Answers verification tasks with signed votes, as one node (its identity and signing key).

    Answers are cached by verification id (``cache_size`` most recent): asked twice, the peer returns the same signed
    vote, never a second one. One verification is computed at a time per id.
    """

    def __init__(self, identity: Any, private_key: Any, *, lpips_weights: str | None = None,
                 cache_size: int = 256) -> None:
        from cryptography.hazmat.primitives import serialization

        self.identity = identity
        self.private_key = private_key
        self.public_key_raw = private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                                    serialization.PublicFormat.Raw)
        self.lpips_weights = lpips_weights
        self.cache_size = cache_size
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def answer(self, task: VerificationTask) -> dict[str, Any]:
        """The reply to ``task``: ``{"votes": [signed vote], "report": {...}}`` (cached per verification id)."""
        with self._guard:
            cached = self._cache.get(task.verification_id)
            if cached is not None and cached["votes"][0]["vote"]["result_hash"] == task.artifact_hash:
                return cached
            lock = self._locks.setdefault(task.verification_id, threading.Lock())
        with lock:
            with self._guard:
                cached = self._cache.get(task.verification_id)
            if cached is None or cached["votes"][0]["vote"]["result_hash"] != task.artifact_hash:
                cached = self.evaluate(task)
                with self._guard:
                    self._cache[task.verification_id] = cached
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        with self._guard:
            self._locks.pop(task.verification_id, None)
        return cached

    def evaluate(self, task: VerificationTask) -> dict[str, Any]:
        """Re-check ``task`` from scratch and sign the vote (no cache)."""
        from engine.trust.votes import new_vote, sign_vote

        try:
            measured = self.measure(task)
        except ConfigError as exc:  # the task's settings (rig, thresholds, sample) are bad input here
            raise InputError(f"{exc.problem}" + (f" ({exc.hint})" if exc.hint else ""),
                             where=f"verification task: {exc.where}" if exc.where else "verification task") from None
        vote = new_vote(task.verification_id, self.identity.node_id, measured["verdict"], measured["metrics"],
                        measured["seed"], task.artifact_hash)
        signed = sign_vote(vote, self.private_key)
        return {"votes": [signed.to_dict()], "report": measured["report"]}

    def measure(self, task: VerificationTask) -> dict[str, Any]:
        """Everything but the signature: seed, sample, re-render, metrics, verdict."""
        from engine.splat.rig import CameraRig
        from engine.trust.metrics import QualityThresholds, compare_images
        from engine.trust.sampling import TileGrid, crop_tiles, draw_sample, sample_size, verifier_seed

        started = time.perf_counter()
        if artifact_hash(task.files) != task.artifact_hash:
            raise InputError("the artifact's files do not hash to the artifact_hash of the task",
                             where="verification task.files", hint="the artifact was altered or truncated on the way")
        thresholds = QualityThresholds.from_dict(task.thresholds)
        rig = CameraRig.from_dict(task.rig)
        views = sorted(task.references)
        if views[-1] >= rig.count:
            raise InputError(f"reference view {views[-1]} is not in the rig's {rig.count} views",
                             where="verification task.references")
        tile = min(task.tile, rig.width, rig.height)
        grid = TileGrid(rig.height, rig.width, tile)
        seed = verifier_seed(task.verification_id, self.public_key_raw)
        plan = draw_sample(seed, views, grid, sample_size(task.complexity, task.confidence))
        sampled = sorted({view for view, _ in plan.chosen})
        references = {v: decode_reference_png(task.references[v], where=f"reference view {v}") for v in sampled}
        for view, image in references.items():
            if image.shape[:2] != (rig.height, rig.width):
                raise InputError(f"reference view {view} is {image.shape[1]}×{image.shape[0]}, the rig "
                                 f"{rig.width}×{rig.height}", where="verification task.references")
        mark = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="optimizer-verify-") as tmp:
            for name, content in task.files.items():
                (Path(tmp) / name).write_bytes(content)
            rendered = RENDERERS[task.kind](Path(tmp), rig, sampled)
        render_ms = (time.perf_counter() - mark) * 1e3
        mark = time.perf_counter()
        ref_tiles = crop_tiles(references, plan).astype(np.float32)
        res_tiles = np.clip(crop_tiles({v: np.asarray(rendered[v], np.float32) for v in sampled}, plan), 0.0, 1.0)
        report = compare_images(ref_tiles, res_tiles, lpips_weights=self.lpips_weights,
                                vmaf=task.measure.get("vmaf", True), flip=task.measure.get("flip", True))
        check = report.check(thresholds)
        metrics_ms = (time.perf_counter() - mark) * 1e3
        verdict = "pass" if check.passed else "fail"
        return {"verdict": verdict, "metrics": report.flat_metrics(), "seed": seed, "report": {
            "node_id": self.identity.node_id, "verdict": verdict, "failures": check.failures,
            "unchecked": check.unchecked, "not_measured": dict(report.not_measured),
            "sample": {"n": plan.n, "units": plan.units, "tile": tile, "tiles_per_view": plan.tiles_per_view,
                       "views": list(plan.views), "chosen": [list(c) for c in plan.chosen]},
            "timings_ms": {"render_ms": round(render_ms, 3), "metrics_ms": round(metrics_ms, 3),
                           "total_ms": round((time.perf_counter() - started) * 1e3, 3)}}}


# ---------------------------------------------------------------------------------------------
# the coordinator side


@dataclass(frozen=True)
class PeerTarget:
    """A peer to ask: where it listens and what the allowlist says about it."""

    node_id: str
    url: str
    capability: float = 1.0
    specialisations: tuple[str, ...] = ()


@dataclass
class VerificationSummary:
    """What :func:`verify_result` found (``to_dict`` is the JSON the CLI prints and the verify job stores)."""

    data: dict[str, Any]

    @property
    def verdict(self) -> str:
        return str(self.data["verdict"])

    @property
    def accepted(self) -> bool:
        return bool(self.data["accepted"])

    def to_dict(self) -> dict[str, Any]:
        return self.data


def peers_from_registry(registry: Any, urls: Iterable[str] | None = None) -> list[PeerTarget]:
    """The enrolled peers (all, or those listening at ``urls``), as targets; InputError for a URL not enrolled."""
    from engine.trust.peers import check_url

    enrolled = registry.list()
    if urls is None:
        return [PeerTarget(p.node_id, p.url, p.capability, p.specialisations) for p in enrolled]
    by_url = {p.url: p for p in enrolled}
    targets = []
    for url in urls:
        wanted = check_url(url)
        peer = by_url.get(wanted)
        if peer is None:
            raise InputError("this peer is not enrolled: its votes could not count", where=wanted,
                             hint="enrol it first: `optimizer peers add KEY --url URL` (its key is in "
                                  f"{wanted}/v1/health; compare it with what the peer's operator gave you)")
        targets.append(PeerTarget(peer.node_id, peer.url, peer.capability, peer.specialisations))
    return targets


def _ask(session_factory: Callable[[], Any], peer: PeerTarget, body: bytes, headers: dict[str, str],
         timeout_s: float) -> tuple[dict[str, Any], float]:
    session = session_factory()
    started = time.perf_counter()
    try:
        response = session.post(f"{peer.url}/v1/verify", data=body, headers=headers,
                                timeout=(min(5.0, timeout_s), timeout_s))
    finally:
        session.close()
    elapsed = (time.perf_counter() - started) * 1e3
    if response.status_code != 200:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:200]
        raise RuntimeError(f"HTTP {response.status_code}: {detail}")
    data = response.json()
    if not isinstance(data, dict) or not isinstance(data.get("votes"), list):
        raise RuntimeError("the reply holds no list of votes")
    return data, elapsed


def verify_result(source: str | Path | Artifact, peers: Sequence[PeerTarget], thresholds: Mapping[str, float] | None,
                  *, data_dir: str | Path, min_verifiers: int = 3, max_verifiers: int | None = None,
                  deadline_s: float = DEFAULT_DEADLINE_S, complexity: float = DEFAULT_COMPLEXITY,
                  confidence: float = DEFAULT_CONFIDENCE, tile: int = DEFAULT_TILE,
                  measure: Mapping[str, bool] | None = None, verification_id: str | None = None,
                  audit: bool = True) -> VerificationSummary:
    """Have ``peers`` re-check a result and decide by weighted consensus (see the module docstring).

    ``source`` is a result folder or an :class:`Artifact`; ``data_dir`` the coordinator's node data (identity key,
    allowlist, replay store, reputations, audit log). Peers are asked ``min_verifiers`` at a time (in a random order),
    more while the verdict is DISPUTED, never more than ``max_verifiers`` (default: all). A peer that has not answered
    after ``deadline_s`` is reported silent and does not hold the verdict up.
    """
    import requests

    from engine.service.security import load_or_create_identity
    from engine.trust.consensus import decide
    from engine.trust.metrics import QualityThresholds
    from engine.trust.peers import PeerRegistry
    from engine.trust.reputation import ReputationBook
    from engine.trust.sampling import detection_probability, sample_size
    from engine.trust.votes import ReplayStore, VoteChecker, check_all

    started = time.perf_counter()
    artifact = source if isinstance(source, Artifact) else load_result_dir(source)
    if artifact.kind not in RENDERERS:
        raise InputError(f"results of kind {artifact.kind!r} cannot be verified", where="verify",
                         hint=f"verifiable kinds: {', '.join(sorted(RENDERERS))}")
    checked = QualityThresholds.from_dict(thresholds)
    n = sample_size(complexity, confidence)
    if isinstance(min_verifiers, bool) or not isinstance(min_verifiers, int) or min_verifiers < 1:
        raise ConfigError(f"min_verifiers must be a positive integer, not {min_verifiers!r}", where="verify")
    limit = len(peers) if max_verifiers is None else int(max_verifiers)
    if limit < min_verifiers:
        raise ConfigError(f"max_verifiers ({limit}) is below min_verifiers ({min_verifiers})", where="verify")
    if not (math.isfinite(deadline_s) and deadline_s > 0):
        raise ConfigError(f"deadline_s must be a positive number of seconds, not {deadline_s!r}", where="verify")
    data_dir = Path(data_dir).expanduser()
    identity, key = load_or_create_identity(data_dir)
    vid = verification_id or new_verification_id()
    result_hash = artifact.hash
    task = VerificationTask(vid, artifact.kind, result_hash, artifact.files, artifact.rig, artifact.references,
                            checked.to_dict(), complexity, confidence, tile,
                            dict(measure or {"flip": True, "vmaf": True}), artifact.scene_id)
    body = task.encode()

    registry = PeerRegistry(data_dir)
    store = ReplayStore(data_dir)
    book = ReputationBook(data_dir)
    try:
        revoked = book.revoked()
        candidates = [p for p in peers if p.node_id != identity.node_id and p.node_id not in revoked]
        skipped = [{"node_id": p.node_id, "url": p.url, "reason": "trust revoked"} for p in peers
                   if p.node_id in revoked]
        secrets.SystemRandom().shuffle(candidates)  # nobody can predict who verifies
        if len(candidates) < min_verifiers:
            raise InputError(f"{len(candidates)} usable peer(s), {min_verifiers} needed", where="verify",
                             hint="enrol more peers (`optimizer peers add`) or lower --min-verifiers")
        checker = VoteChecker(registry, replay_store=store)
        by_node = {p.node_id: p for p in peers}
        asked: list[PeerTarget] = []
        accepted: dict[str, Any] = {}
        reports: dict[str, dict[str, Any]] = {}
        rejected: list[dict[str, Any]] = []
        silent: list[dict[str, Any]] = []
        round_trips: dict[str, float] = {}
        rounds = 0
        result = None
        executor = ThreadPoolExecutor(max_workers=max(1, min(limit, 32)), thread_name_prefix="verify")
        try:
            want = min_verifiers
            while True:
                batch = candidates[len(asked):len(asked) + want]
                if not batch:
                    break
                rounds += 1
                asked.extend(batch)
                futures = {executor.submit(_ask, requests.Session, peer, body,
                                           {"Content-Type": "application/msgpack", "Accept": "application/json",
                                            **sign_request(key, identity.node_id, "POST", "/v1/verify", body)},
                                           deadline_s): peer for peer in batch}
                round_deadline = time.monotonic() + deadline_s
                pending = set(futures)
                while pending:
                    remaining = round_deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    done, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
                    for future in done:
                        peer = futures[future]
                        try:
                            reply, elapsed = future.result()
                        except requests.Timeout:
                            silent.append({"node_id": peer.node_id, "url": peer.url,
                                           "reason": f"no answer within the deadline ({deadline_s:g} s)"})
                            continue
                        except Exception as exc:  # network errors, refusals: the peer gave no vote
                            silent.append({"node_id": peer.node_id, "url": peer.url,
                                           "reason": f"no vote: {type(exc).__name__}: {str(exc)[:300]}"})
                            continue
                        round_trips[peer.node_id] = round(elapsed, 3)
                        if isinstance(reply.get("report"), dict):
                            reports[peer.node_id] = reply["report"]
                        outcome = check_all(checker, reply["votes"][:8], verification_id=vid, result_hash=result_hash)
                        for exc in outcome.rejected:
                            rejected.append(_rejection(exc, peer))
                        for signed in outcome.accepted:
                            accepted[signed.vote.node_id] = signed
                for future in pending:
                    future.cancel()
                    peer = futures[future]
                    silent.append({"node_id": peer.node_id, "url": peer.url,
                                   "reason": f"no answer within the deadline ({deadline_s:g} s)"})
                faulty = checker.faulty(vid)
                ballots = [book.ballot(node, s.vote.verdict, capability=by_node[node].capability if node in by_node
                                       else 1.0, specialisations=by_node[node].specialisations if node in by_node
                                       else ()) for node, s in accepted.items()]
                result = decide(ballots, job_kind=artifact.kind, faulty=faulty)
                counted = len(result.votes)
                if counted < min_verifiers:  # replace the silent, rejected and faulty ones
                    want = min_verifiers - counted
                else:
                    want = result.needs_more_verifiers(limit, asked=len(asked))
                if want <= 0 or len(asked) >= limit:
                    break
                want = min(want, limit - len(asked))
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
        assert result is not None
        standings = book.record_round(result)
        evidence = [e.to_dict() for e in checker.evidence(vid)]
    finally:
        book.close()
        store.close()
        registry.close()

    elapsed_ms = (time.perf_counter() - started) * 1e3
    weights = {v.node_id: v for v in result.votes}
    votes = []
    not_measured: dict[str, str] = {}
    for node, signed in sorted(accepted.items()):
        vote = signed.vote
        report = reports.get(node, {})
        reasons = report.get("not_measured") if isinstance(report.get("not_measured"), dict) else {}
        for metric, value in vote.metrics.items():
            if value is None and metric != "psnr_db":
                not_measured.setdefault(metric, str(reasons.get(metric, "not measured by the peer"))[:300])
        weighted = weights.get(node)
        votes.append({"node_id": node, "url": by_node[node].url if node in by_node else None,
                      "verdict": vote.verdict, "metrics": dict(vote.metrics), "counted": weighted is not None,
                      "weight": weighted.weight if weighted else 0.0,
                      "reputation": weighted.reputation if weighted else None, "sample_seed": vote.sample_seed,
                      "result_hash": vote.result_hash, "nonce": vote.nonce, "timestamp": vote.timestamp,
                      "signature": signed.signature, "failures": report.get("failures", []),
                      "timings_ms": report.get("timings_ms", {})})
    render_ms = [float(r.get("timings_ms", {}).get("render_ms", 0.0)) for r in reports.values()]
    accepted_flag = result.accepted
    quality_passed = None if result.verdict.value == "disputed" else accepted_flag
    participating = sorted({*accepted, *result.excluded})
    summary: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA, "verification_id": vid, "scene_id": artifact.scene_id, "kind": artifact.kind,
        "result_hash": result_hash, "coordinator": identity.node_id,
        "verdict": result.verdict.value, "outcome": result.outcome, "accepted": accepted_flag,
        "consensus_score": result.score, "threshold": result.threshold, "pass_weight": result.pass_weight,
        "fail_weight": result.fail_weight, "total_weight": result.total_weight,
        "votes": votes, "rejected": rejected, "silent": silent, "skipped": skipped,
        "excluded": list(result.excluded), "equivocation_evidence": evidence,
        "not_measured": not_measured, "thresholds": checked.to_dict(),
        "sample": {"n_per_verifier": n, "complexity": complexity, "confidence": confidence, "tile": tile},
        "detection": [{"defect_fraction": p, "per_verifier": detection_probability(p, n),
                       "all_counted_verifiers": detection_probability(p, n * max(1, len(result.votes)))}
                      for p in (0.01, 0.05, 0.1, 0.2)],
        "verifiers": {"asked": len(asked), "limit": limit, "rounds": rounds, "counted": len(result.votes)},
        "reputation": {node: s.to_dict() for node, s in standings.items()},
        "timings_ms": {"total": round(elapsed_ms, 3), "peer_render_max": round(max(render_ms, default=0.0), 3),
                       "overhead_excluding_render": round(elapsed_ms - max(render_ms, default=0.0), 3),
                       "round_trips": round_trips},
    }
    if audit:
        summary["audit"] = _append_audit(data_dir, key, identity.node_id, artifact, vid, result, participating,
                                         quality_passed, rejected, silent)
    log.info("verification %s: %s (%s, score %.3f, %d vote(s))", vid, result.verdict.value, result.outcome,
             result.score, len(result.votes))
    return VerificationSummary(summary)


def _rejection(exc: Any, peer: PeerTarget) -> dict[str, Any]:
    return {"node_id": exc.node_id, "from": peer.node_id, "url": peer.url, "reason": exc.reason,
            "detail": str(exc)[:500]}


def _append_audit(data_dir: Path, key: Any, node_id: str, artifact: Artifact, vid: str, result: Any,
                  participating: list[str], quality_passed: bool | None, rejected: list[dict[str, Any]],
                  silent: list[dict[str, Any]]) -> dict[str, Any]:
    from engine.trust.audit import AuditEntry, AuditLog

    entry = AuditEntry("verification", scene_id=artifact.scene_id, verification_id=vid,
                       consensus_score=min(1.0, max(0.0, result.score)), participating_nodes=tuple(participating),
                       quality_passed=quality_passed, result_hash=artifact.hash,
                       details={"kind": artifact.kind, "verdict": result.verdict.value, "outcome": result.outcome,
                                "excluded": list(result.excluded),
                                "rejected": sorted({str(r["reason"]) for r in rejected}),
                                "silent": sorted(str(s["node_id"]) for s in silent)})
    with AuditLog(data_dir, key, node_id) as audit_log:
        index = audit_log.append(entry)
        checkpoint = audit_log.checkpoint()
    return {"entry": index, "checkpoint_size": checkpoint.size, "root": checkpoint.root.hex()}


def summary_json(summary: VerificationSummary) -> str:
    """The summary as one JSON line (non-finite numbers as null)."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(summary.to_dict()), allow_nan=False)


# ---------------------------------------------------------------------------------------------
# the `verify` job kind

_QUALITY_KEYS = {"ssim": "ssim_min", "psnr": "psnr_min", "lpips": "lpips_max", "vmaf": "vmaf_min", "flip": "flip_max"}
_JOB_PARAMS = ("job", "peers", "min_verifiers", "max_verifiers", "deadline_s", "complexity", "confidence", "tile",
               "flip", "vmaf")


def _thresholds_from_quality(*qualities: Mapping[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for quality in qualities:
        for key, value in (quality or {}).items():
            if key in _QUALITY_KEYS and value is not None:
                out[_QUALITY_KEYS[key]] = value
    return out


def artifact_from_job(store: Any, job_id: str) -> Artifact:
    """The verifiable artifact of a finished job in the node's store (its files, rig and reference views)."""
    job = store.get(job_id)
    where = f"job {job_id}"
    if job.kind not in ARTIFACT_FILES:
        raise InputError(f"a {job.kind} job's result cannot be verified", where=where,
                         hint=f"verifiable kinds: {', '.join(sorted(ARTIFACT_FILES))}")
    if job.state.value != "done":
        raise InputError(f"the job is {job.state.value}, not done", where=where, hint="verify it once it is done")
    names = {a.name for a in job.artifacts}
    _, rig_path, reference = RESULT_LAYOUT[job.kind]

    def stored(path: str) -> str:  # the store keeps a/b as a__b
        return path.replace("/", "__")

    files = {}
    for name, path in _artifact_paths(job.kind, [n.replace("__", "/") for n in names]).items():
        if stored(path) not in names:
            raise InputError(f"the job has no artifact {stored(path)}", where=where)
        files[name] = store.artifact(job_id, stored(path))[1]
    if stored(rig_path) not in names:
        raise InputError(f"the job has no artifact {stored(rig_path)}", where=where,
                         hint="bake with reference_views > 0 to make a bake verifiable" if job.kind == "bake" else "")
    try:
        rig = json.loads(store.artifact(job_id, stored(rig_path))[1])
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{stored(rig_path)} is not JSON ({exc})", where=where) from None
    references = {}
    for view in rig.get("test", []) if isinstance(rig, dict) else []:
        name = stored(reference.format(view=int(view)))
        if name not in names:
            raise InputError(f"the job has no reference view {name}", where=where,
                             hint="jobs from before reference views were kept cannot be verified: run it again")
        references[int(view)] = store.artifact(job_id, name)[1]
    if not references:
        raise InputError("the job's rig has no held-out views to verify against", where=where)
    return Artifact(job.kind, files, rig, references, job.scene_digest)


def run_verify_job(ctx: Any) -> None:
    """The ``verify`` job kind: verify a finished job's result with the node's enrolled peers; stores
    ``verification.json`` (the summary). Parameters in ``options.params`` (see ``_JOB_PARAMS``)."""
    from engine.trust.peers import PeerRegistry

    params = dict(ctx.options.get("params") or {})
    unknown = sorted(set(params) - set(_JOB_PARAMS))
    if unknown:
        raise InputError(f"unknown verify setting(s) {', '.join(unknown)}", where="options.params",
                         hint=f"known: {', '.join(_JOB_PARAMS)}")
    job_id = params.get("job")
    if not isinstance(job_id, str) or not job_id:
        raise InputError("name the finished job to verify", where="options.params.job")
    artifact = artifact_from_job(ctx.store, job_id)
    source = ctx.store.get(job_id)
    thresholds = _thresholds_from_quality(source.options.get("quality"), ctx.options.get("quality"))
    urls = params.get("peers")
    if isinstance(urls, str):
        urls = [u for u in urls.split(",") if u.strip()]
    with PeerRegistry(ctx.store.data_dir) as registry:
        peers = peers_from_registry(registry, urls)
    ctx.progress("verify", 0.0, f"{len(peers)} enrolled peer(s), result {artifact.hash[:16]}…")
    options: dict[str, Any] = {}
    for name in ("min_verifiers", "max_verifiers", "tile"):
        if name in params:
            if isinstance(params[name], bool) or not isinstance(params[name], int):
                raise InputError(f"{name} must be an integer", where=f"options.params.{name}")
            options[name] = params[name]
    for name in ("deadline_s", "complexity", "confidence"):
        if name in params:
            if isinstance(params[name], bool) or not isinstance(params[name], int | float):
                raise InputError(f"{name} must be a number", where=f"options.params.{name}")
            options[name] = float(params[name])
    measure = {name: bool(params.get(name, True)) for name in ("flip", "vmaf")}
    summary = verify_result(artifact, peers, thresholds, data_dir=ctx.store.data_dir, measure=measure, **options)
    ctx.add_artifact("verification.json", summary_json(summary).encode(), "application/json")
    data = summary.to_dict()
    ctx.message(f"verification {data['verification_id']}: {data['verdict']} ({data['outcome']}), consensus "
                f"{data['consensus_score']:.3f} over {len(data['votes'])} vote(s)")
    ctx.progress("verify", 1.0, f"{data['verdict']}: {'accepted' if data['accepted'] else 'not accepted'}")


__all__ = [
    "ARTIFACT_FILES",
    "RENDERERS",
    "Artifact",
    "PeerTarget",
    "PeerVerifier",
    "VerificationSummary",
    "VerificationTask",
    "artifact_from_job",
    "artifact_hash",
    "check_signed_request",
    "load_result_dir",
    "new_verification_id",
    "peers_from_registry",
    "register_renderer",
    "render_bake",
    "render_splat",
    "result_kind",
    "run_verify_job",
    "sign_request",
    "summary_json",
    "verify_result",
]
