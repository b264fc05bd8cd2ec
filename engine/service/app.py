"""The engine node's HTTP API (FastAPI), versioned under /v1.

Bodies travel as JSON or msgpack, chosen by Content-Type (requests) and Accept (responses).
A scene travels in the wire codec's form: the JSON envelope inside a JSON body, or the msgpack
message as bytes inside a msgpack body. Everything but /v1/health needs the node's bearer
token; the routes a forwarded job uses (upload a scene, submit, follow a job, fetch its artifacts)
and /v1/verify also take a request signed by a node on this node's peer allowlist. Bad input gets 4xx with a ``detail`` that names the field; nothing reaches the user as
a traceback, and no request can take the server down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime
from typing import Any, Literal

import anyio
import msgpack
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from engine import __version__
from engine.errors import ConfigError, InputError, OptimizerError, WireError

log = logging.getLogger(__name__)

MSGPACK = "application/msgpack"
MSGPACK_TYPES = (MSGPACK, "application/x-msgpack")
DEFAULT_MAX_UPLOAD = 512 * 1024 * 1024

# Blocking work runs in threads, in three lanes, so that a burst of one kind cannot starve the
# others: SQLite serialises writers (a submit waits for the write lock and an fsync), reads in
# WAL mode never wait for writers, and decoding/analysing scenes is CPU work.
_LANES: dict[str, anyio.CapacityLimiter] = {}
_LANE_SIZES = {"read": 8, "write": 4, "cpu": 2}


async def _in_lane(lane: str, function: Any, *args: Any) -> Any:
    limiter = _LANES.get(lane)
    if limiter is None:  # created inside the event loop that uses it
        limiter = _LANES[lane] = anyio.CapacityLimiter(_LANE_SIZES[lane])
    return await anyio.to_thread.run_sync(lambda: function(*args), limiter=limiter)


async def read(function: Any, *args: Any) -> Any:
    """Run a store read in the read lane."""
    return await _in_lane("read", function, *args)


async def write(function: Any, *args: Any) -> Any:
    """Run a store write in the write lane."""
    return await _in_lane("write", function, *args)


async def compute(function: Any, *args: Any) -> Any:
    """Run CPU work (decode, analyse) in the compute lane."""
    return await _in_lane("cpu", function, *args)

# ----------------------------------------------------------------------------- bodies


class QualityTargets(BaseModel):
    """Verification thresholds for this job (defaults from the original design when absent)."""

    model_config = ConfigDict(extra="forbid")
    ssim: float | None = Field(None, ge=0, le=1, description="minimum SSIM (default 0.98)")
    psnr: float | None = Field(None, gt=0, le=200, description="minimum PSNR in dB (default 35)")
    lpips: float | None = Field(None, ge=0, le=1, description="maximum LPIPS (default 0.05)")
    vmaf: float | None = Field(None, ge=0, le=100, description="minimum VMAF (default 90)")
    flip: float | None = Field(None, ge=0, le=1, description="maximum mean FLIP (default 0.1)")


class JobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pipeline: Literal["bake", "splat", "hybrid"] | None = Field(None, description="override the routed pipeline")
    quality: QualityTargets = Field(default_factory=QualityTargets)
    deadline: datetime | None = Field(None, description="when the result is needed (ISO 8601 with time zone)")
    mode: Literal["object", "scene"] = Field("object", description="routing: per object, or the scene-wide rule")
    overrides: dict[str, float | bool] = Field(default_factory=dict, description="routing threshold overrides")
    routes: dict[str, Literal["bake", "splat", "keep"]] = Field(
        default_factory=dict, description="per-object routes set by the artist (object name → route)")
    params: dict[str, float | int | bool | str | list[str] | dict[str, float | int | bool | str]] = Field(
        default_factory=dict, description="settings of the job's pipeline kind (samples, steps, objects, ...)")
    references: str | None = Field(None, pattern=r"^[0-9a-f]{64}$",
                                   description="reference views from POST /v1/views (splat jobs)")


class JobRequest(BaseModel):
    """A job: a scene (inline, or a reference to an uploaded one), its kind and options."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field("analyze", min_length=1, max_length=64, description="pipeline kind, e.g. analyze")
    scene: dict[str, Any] | bytes | None = Field(
        None, description="the scene in the wire codec: the JSON envelope, or msgpack bytes in a msgpack body")
    scene_ref: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="digest from POST /v1/scenes")
    options: JobOptions = Field(default_factory=JobOptions)
    priority: Literal["now", "economy"] = "now"
    idempotency_key: str | None = Field(None, min_length=1, max_length=128,
                                        description="the same key returns the same job (also the Idempotency-Key header)")


class AnalyzeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scene: dict[str, Any] | bytes = Field(..., description="the scene in the wire codec")
    mode: Literal["object", "scene"] = "object"
    overrides: dict[str, float | bool] = Field(default_factory=dict)


class SceneUploaded(BaseModel):
    scene_ref: str
    objects: int
    triangles: int
    bytes: int


class ViewsUploaded(BaseModel):
    views_ref: str
    views: int
    width: int
    height: int
    bytes: int


class ArtifactView(BaseModel):
    name: str
    digest: str
    size: int
    content_type: str
    created_at: float


class MessageView(BaseModel):
    ts: float
    text: str


class EconomyPlanView(BaseModel):
    """An economy job's plan: when and where it runs, what it costs, and against what (README, Economy)."""

    model_config = ConfigDict(extra="allow")
    mode: Literal["deferred", "now", "forwarded"] = Field(
        description="deferred: waits for not_before; now: runs at once; forwarded: runs on the peer named in node")
    node: str | None = Field(None, description="the node it runs on (local, or the peer it was forwarded to)")
    not_before: str | None = Field(None, description="planned start, ISO 8601 with offset (deferred)")
    finish: str | None = Field(None, description="planned finish (deferred)")
    window: dict[str, str] | None = Field(None, description="start and end of the planned run")
    deadline: str | None = None
    cost: float | None = Field(None, description="planned cost")
    baseline_cost: float | None = Field(None, description="cost of running it now on this node")
    saving_percent: float | None = None
    currency: str | None = None
    earliest_finish: str | None = Field(None, description="now: the earliest finish possible (deadline unmet)")
    earliest_cost: float | None = None
    elsewhere: dict[str, Any] | None = Field(None, description="a cheaper plan on a peer, not used (no forwarding)")
    planned_at: str | None = None


class JobView(BaseModel):
    id: str
    kind: str
    state: Literal["queued", "scheduled", "running", "verifying", "done", "failed", "cancelled"]
    stage: str
    progress: float
    priority: str
    options: dict[str, Any]
    scene_ref: str | None
    idempotency_key: str | None
    created_at: float
    updated_at: float
    attempts: int
    error: str | None
    cancel_requested: bool
    timings: dict[str, float] = Field(description="unix time of every state reached")
    messages: list[MessageView]
    artifacts: list[ArtifactView]
    not_before: float | None = Field(None, description="economy: unix time before which a scheduled job waits")
    plan: EconomyPlanView | None = Field(None, description="economy: the plan (window, cost, saving)")


class JobList(BaseModel):
    jobs: list[JobView]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    node_id: str
    public_key: str
    time: float
    kinds: list[str]


class ErrorBody(BaseModel):
    detail: str


class AnalysisBody(BaseModel):
    """What `optimizer analyze --json` prints (see the README for the fields)."""

    model_config = ConfigDict(extra="allow")
    scene: str
    features: dict[str, Any]
    complexity: float
    complexity_terms: dict[str, Any]
    plan: dict[str, Any]
    warnings: list[str]
    timings_ms: dict[str, float]


class QuoteRequest(BaseModel):
    """A scene to quote: where and when its processing is cheapest while meeting the deadline."""

    model_config = ConfigDict(extra="forbid")
    scene: dict[str, Any] | bytes | None = Field(None, description="the scene in the wire codec")
    scene_ref: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="digest from POST /v1/scenes")
    deadline: str = Field(..., min_length=1, max_length=64,
                          description="a duration from now (24h, 2d, 90m) or an ISO 8601 time with offset")
    kind: Literal["auto", "bake", "splat"] = Field("auto", description="auto: the routed pipeline")
    nodes: list[dict[str, Any]] | None = Field(
        None, max_length=256, description="the pool, as node-file tables (default: this node alone)")
    prices: dict[str, Any] | None = Field(None, description="price table of the default pool (price-file form)")
    timezone: str | None = Field(None, max_length=64, description="IANA zone of the default pool's node "
                                                                  "(default: this machine's)")
    now: datetime | None = Field(None, description="quote as of this time (default: now)")
    mode: Literal["object", "scene"] = "object"
    settings: dict[Literal["bake", "splat"], dict[str, float]] = Field(
        default_factory=dict, description='work settings, e.g. {"bake": {"samples": 128}}')


class QuoteBody(BaseModel):
    """What `optimizer quote --json` prints: jobs with node windows, cost, baseline, saving (README)."""

    model_config = ConfigDict(extra="allow")
    now: str
    currency: str
    jobs: list[dict[str, Any]]
    total: dict[str, Any]
    pool: list[dict[str, Any]]


class VerifyTaskBody(BaseModel):
    """A verification task from a coordinator (msgpack only: files and views travel as bytes).

    See :mod:`engine.trust.verify` for the meaning of each field and the checks made on it."""

    model_config = ConfigDict(extra="forbid")
    schema_: str = Field(..., alias="schema", description="optimizer.trust.task/1")
    verification_id: str = Field(..., pattern=r"^[0-9a-f]{32,128}$", description="≥ 128 random bits, hex")
    kind: str = Field(..., min_length=1, max_length=32, description="artifact kind, e.g. splat")
    artifact_hash: str = Field(..., pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the artifact's files")
    files: dict[str, bytes] = Field(..., description="the artifact: file name → bytes")
    rig: dict[str, Any] = Field(..., description="the reference camera rig (cameras.json form)")
    references: list[tuple[int, bytes]] = Field(..., description="held-out views: [view id, PNG bytes]")
    thresholds: dict[str, float] = Field(default_factory=dict, description="QualityThresholds fields")
    complexity: float = Field(..., ge=0, le=1)
    confidence: float = Field(..., ge=0.9, lt=1)
    tile: int = Field(32, ge=11, le=4096, description="tile side in pixels")
    measure: dict[str, bool] = Field(default_factory=dict, description='{"flip": bool, "vmaf": bool}')
    scene_id: str | None = Field(None, max_length=256)


class VerifyReply(BaseModel):
    """A peer's answer: its signed vote(s) and an unsigned report (reasons, sample, timings)."""

    votes: list[dict[str, Any]]
    report: dict[str, Any]


ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 404, 409, 413, 415, 422)}

# ----------------------------------------------------------------------------- helpers


def job_view(job: Any) -> dict[str, Any]:
    """A store Job as the API's JSON (JobView)."""
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state.value,
        "stage": job.stage,
        "progress": job.progress,
        "priority": job.priority,
        "options": job.options,
        "scene_ref": job.scene_digest,
        "idempotency_key": job.idempotency_key,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "attempts": job.attempts,
        "error": job.error,
        "cancel_requested": job.cancel_requested,
        "timings": {state: ts for state, ts in job.transitions},
        "messages": [{"ts": ts, "text": text} for ts, text in job.messages],
        "artifacts": [
            {"name": a.name, "digest": a.digest, "size": a.size, "content_type": a.content_type,
             "created_at": a.created_at} for a in job.artifacts
        ],
        "not_before": job.not_before,
        "plan": job.plan,
    }


def wants_msgpack(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return any(kind in accept for kind in MSGPACK_TYPES)


def reply(request: Request, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON, or msgpack when the client's Accept asks for it."""
    if wants_msgpack(request):
        return Response(msgpack.packb(data, use_bin_type=True), status_code=status, media_type=MSGPACK,
                        headers=headers)
    return JSONResponse(data, status_code=status, headers=headers)


class APIError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.detail, self.headers = status, detail, headers
        super().__init__(detail)


async def read_body(request: Request) -> Any:
    """The request body as Python data, by Content-Type (JSON or msgpack)."""
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    raw = await request.body()
    if content_type in MSGPACK_TYPES:
        try:
            return msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several types for bad input
            raise APIError(400, f"body: not valid msgpack ({type(exc).__name__})") from None
    if content_type in ("application/json", "text/json") or content_type.endswith("+json"):
        try:
            return json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise APIError(400, f"body: not valid JSON ({exc})") from None
    raise APIError(415, f"Content-Type '{content_type}' is not accepted; send application/json or {MSGPACK}")


def validated(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise APIError(422, _validation_detail(exc.errors(), prefix="body")) from None


def _validation_detail(errors: list[dict[str, Any]], prefix: str = "") -> str:
    parts = []
    for error in errors[:5]:
        location = [str(p) for p in error.get("loc", ())]
        if prefix and (not location or location[0] != prefix):
            location.insert(0, prefix)
        parts.append(f"{'.'.join(location)}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def decode_scene(value: dict[str, Any] | bytes, field: str) -> Any:
    """A Scene from a wire envelope (dict) or wire message (bytes); 422 naming the field."""
    from engine.scene import wire
    from engine.scene.model import Scene

    try:
        if isinstance(value, bytes | bytearray):
            scene = wire.decode(bytes(value), expect=Scene)
        else:
            scene = wire.from_jsonable(value, expect=Scene)
        scene.require_content()
    except InputError as exc:
        raise APIError(422, f"{field}: {exc}") from None
    return scene


def check_policy(mode: str, overrides: dict[str, Any], field: str) -> Any:
    from engine.route import RoutingPolicy

    try:
        return RoutingPolicy(mode=mode).with_overrides(overrides)
    except ConfigError as exc:
        raise APIError(422, f"{field}: {exc}") from None


# ----------------------------------------------------------------------------- app


def create_app(store: Any, pool: Any = None, *, token: str, identity: Any, max_upload: int = DEFAULT_MAX_UPLOAD,
               ) -> FastAPI:
    """The FastAPI app of one node. ``store`` is a JobStore, ``pool`` a WorkerPool (or None)."""
    from engine.service.pipelines import REGISTRY, pipeline
    from engine.service.security import check_token
    from engine.service.store import TERMINAL, JobState

    app = FastAPI(
        title="Optimizer engine node", version=__version__,
        description="Scene analysis, routing and optimization jobs. All routes but /v1/health need "
                    "`Authorization: Bearer <token>` (the token file path is printed by `optimizer serve`).",
    )
    app.add_middleware(BodyLimit, limit=max_upload)
    app.add_middleware(ServerTiming)
    bearer = HTTPBearer(auto_error=False, description="the node's token")

    async def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        presented = credentials.credentials if credentials is not None else None
        if not check_token(token, presented):
            raise APIError(401, "missing or wrong bearer token (see the token file `optimizer serve` printed)",
                           headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorized)]

    async def signed_by(request: Request) -> str | None:
        """The enrolled peer that signed this request (see /v1/verify), or None."""
        from engine.trust.verify import check_signed_request

        raw = await request.body()
        _, registry = await read(_peer_state)
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return await read(check_signed_request, dict(request.headers), request.method, path, raw, registry)

    async def token_or_peer(request: Request,
                            credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        """The node's bearer token, or a request signed by an enrolled peer (a job it forwards here)."""
        presented = credentials.credentials if credentials is not None else None
        if not check_token(token, presented) and await signed_by(request) is None:
            raise APIError(401, "send the node's bearer token, or sign the request with a key this node has "
                                "enrolled (`optimizer peers add` on this node)",
                           headers={"WWW-Authenticate": "Bearer"})

    peer_guarded = [Depends(token_or_peer)]

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> Response:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": _validation_detail(list(exc.errors()))}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> Response:
        from engine.errors import IdempotencyConflict, NotFound

        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, IdempotencyConflict) else 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(OptimizerError)
    async def _engine_error(request: Request, exc: OptimizerError) -> Response:
        log.error("engine error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": f"engine error: {exc}"}, status_code=500)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (logged on the node)"}, status_code=500)

    # ------------------------------------------------------------------ routes
    @app.get("/v1/health", response_model=Health, tags=["node"])
    async def health(request: Request) -> Response:
        return reply(request, {"status": "ok", "version": __version__, "node_id": identity.node_id,
                               "public_key": identity.public_key_b64, "time": time.time(),
                               "kinds": sorted(REGISTRY)})

    body_doc = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/{model}"}},
                MSGPACK: {"schema": {"$ref": "#/components/schemas/{model}"}},
            },
        }
    }

    def body_of(model: type[BaseModel]) -> dict[str, Any]:
        return json.loads(json.dumps(body_doc).replace("{model}", model.__name__))

    @app.post("/v1/analyze", dependencies=guarded, response_model=AnalysisBody, responses=ERRORS,
              openapi_extra=body_of(AnalyzeRequest), tags=["analysis"])
    async def analyze(request: Request) -> Response:
        from engine.route import analyze_and_plan

        body = validated(AnalyzeRequest, await read_body(request))
        policy = check_policy(body.mode, body.overrides, "body.overrides")
        scene = await compute(decode_scene, body.scene, "body.scene")
        result = await compute(analyze_and_plan, scene, policy)
        return reply(request, result.to_dict())

    @app.post("/v1/quote", dependencies=guarded, response_model=QuoteBody, responses=ERRORS,
              openapi_extra=body_of(QuoteRequest), tags=["analysis"])
    async def quote_scene(request: Request) -> Response:
        """Least-cost nodes and hours that meet the deadline, with the run-now baseline and the saving."""
        body = validated(QuoteRequest, await read_body(request))
        policy = check_policy(body.mode, {}, "body.mode")
        if (body.scene is None) == (body.scene_ref is None):
            raise APIError(422, "body: give exactly one of 'scene' and 'scene_ref'")
        if body.scene is not None:
            scene = await compute(decode_scene, body.scene, "body.scene")
        else:
            if not await read(store.vault.has, body.scene_ref):
                raise APIError(422, f"body.scene_ref: no uploaded scene {body.scene_ref} on this node (POST /v1/scenes)")
            scene = await compute(_stored_scene, store, body.scene_ref)
        return reply(request, await compute(_quote, body, scene, policy, store.data_dir))

    @app.post("/v1/scenes", dependencies=peer_guarded, response_model=SceneUploaded, status_code=201, responses=ERRORS,
              openapi_extra={"requestBody": {"required": True, "content": {
                  MSGPACK: {"schema": {"type": "string", "format": "binary"}},
                  "application/json": {"schema": {"type": "object", "description": "wire JSON envelope"}}}}},
              tags=["jobs"])
    async def upload_scene(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in MSGPACK_TYPES:
            raw = await request.body()
            payload: Any = raw
        else:
            payload = await read_body(request)
            if not isinstance(payload, dict):
                raise APIError(422, "body: expected the scene's wire JSON envelope (an object)")
        scene = await compute(decode_scene, payload, "body")
        digest, size = await write(_store_scene, store, scene)
        return reply(request, {"scene_ref": digest, "objects": len(scene.objects), "triangles": scene.n_triangles,
                               "bytes": size}, status=201)

    @app.post("/v1/views", dependencies=guarded, response_model=ViewsUploaded, status_code=201, responses=ERRORS,
              openapi_extra={"requestBody": {"required": True, "content": {
                  MSGPACK: {"schema": {"type": "string", "format": "binary"}},
                  "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
              tags=["jobs"])
    async def upload_views(request: Request) -> Response:
        """Reference views rendered by a client (wire ``ReferenceViews``, msgpack bytes), for ``splat``
        jobs (``options.references``)."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in (*MSGPACK_TYPES, "application/octet-stream"):
            raise APIError(415, f"content-type: send the views as {MSGPACK} (wire ReferenceViews)")
        views = await compute(decode_views, await request.body(), "body")
        digest, size = await write(_store_scene, store, views)
        rig = views.rig
        return reply(request, {"views_ref": digest, "views": rig.count, "width": rig.width, "height": rig.height,
                               "bytes": size}, status=201)

    @app.post("/v1/jobs", dependencies=peer_guarded, response_model=JobView, status_code=201, responses=ERRORS,
              openapi_extra=body_of(JobRequest), tags=["jobs"])
    async def submit(request: Request) -> Response:
        body = validated(JobRequest, await read_body(request))
        key = request.headers.get("idempotency-key") or body.idempotency_key
        if key is not None and not 0 < len(key) <= 128:
            raise APIError(422, "Idempotency-Key: must be 1 to 128 characters")
        try:
            pipeline(body.kind)
        except InputError as exc:
            raise APIError(422, f"body.kind: {exc.problem} ({exc.hint})") from None
        check_policy(body.options.mode, body.options.overrides, "body.options.overrides")
        if (body.scene is None) == (body.scene_ref is None):
            raise APIError(422, "body: give exactly one of 'scene' and 'scene_ref'")
        if body.scene is not None:
            scene = await compute(decode_scene, body.scene, "body.scene")
            digest, _ = await write(_store_scene, store, scene)
        else:
            digest = body.scene_ref
            if not await read(store.vault.has, digest):
                raise APIError(422, f"body.scene_ref: no uploaded scene {digest} on this node (POST /v1/scenes)")
        if body.options.deadline is not None and body.options.deadline.utcoffset() is None:
            raise APIError(422, "body.options.deadline: give the time with its UTC offset, e.g. "
                                "2025-03-30T18:00:00+02:00")
        options = body.options.model_dump(mode="json", exclude_none=True)
        job, created = await write(
            lambda: store.submit(body.kind, options=options, scene_digest=digest, priority=body.priority,
                                 idempotency_key=key))
        if created and pool is not None:
            if body.priority == "economy" and getattr(pool, "planner", None) is not None:
                await compute(pool.planner.plan)  # the answer already carries the plan
                job = await read(store.get, job.id)
            pool.wake()
        return reply(request, job_view(job), status=201 if created else 200,
                     headers={"Location": f"/v1/jobs/{job.id}"})

    @app.get("/v1/jobs", dependencies=guarded, response_model=JobList, responses=ERRORS, tags=["jobs"])
    async def list_jobs(
        request: Request,
        state: Literal["queued", "scheduled", "running", "verifying", "done", "failed", "cancelled"] | None = None,
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=10**9),
    ) -> Response:
        jobs = await read(
            lambda: store.list(state=JobState(state) if state else None, limit=limit, offset=offset))
        return reply(request, {"jobs": [job_view(j) for j in jobs]})

    @app.get("/v1/jobs/{job_id}", dependencies=peer_guarded, response_model=JobView, responses=ERRORS, tags=["jobs"])
    async def get_job(request: Request, job_id: str) -> Response:
        return reply(request, job_view(await read(store.get, job_id)))

    @app.delete("/v1/jobs/{job_id}", dependencies=guarded, response_model=JobView, responses=ERRORS, tags=["jobs"])
    async def cancel_job(request: Request, job_id: str) -> Response:
        return reply(request, job_view(await write(store.request_cancel, job_id)))

    @app.get("/v1/jobs/{job_id}/events", dependencies=peer_guarded, responses=ERRORS, tags=["jobs"],
             response_class=StreamingResponse,
             openapi_extra={"responses": {"200": {"description": "server-sent events: state, progress, message, "
                                                                 "artifact; ends when the job ends",
                                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}}}})
    async def job_events(request: Request, job_id: str, after: int = Query(0, ge=0, le=2**62)) -> Response:
        await read(store.get, job_id)  # 404 before the stream starts
        last = request.headers.get("last-event-id")
        start = int(last) if last and last.isdigit() else after
        return StreamingResponse(_event_stream(request, store, job_id, start, TERMINAL),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/v1/jobs/{job_id}/artifacts/{name}", dependencies=peer_guarded, responses=ERRORS, tags=["jobs"],
             response_class=Response,
             openapi_extra={"responses": {"200": {"description": "the artifact's bytes",
                                                  "content": {"application/octet-stream": {
                                                      "schema": {"type": "string", "format": "binary"}}}}}})
    async def get_artifact(request: Request, job_id: str, name: str) -> Response:
        artifact, data = await read(store.artifact, job_id, name)
        return Response(data, media_type=artifact.content_type, headers={"ETag": f'"{artifact.digest}"'})

    peer_state: dict[str, Any] = {}

    def _peer_state() -> tuple[Any, Any]:
        """This node's PeerVerifier and allowlist, opened at the first task (they need the node's key)."""
        if not peer_state:
            from engine.service.security import load_or_create_identity
            from engine.trust.peers import PeerRegistry
            from engine.trust.verify import PeerVerifier

            node_identity, key = load_or_create_identity(store.data_dir)
            if node_identity.node_id != identity.node_id:
                raise ConfigError("the identity key changed while the node was running", where=str(store.data_dir))
            peer_state["verifier"] = PeerVerifier(node_identity, key)
            peer_state["registry"] = PeerRegistry(store.data_dir)
        return peer_state["verifier"], peer_state["registry"]

    @app.post("/v1/verify", response_model=VerifyReply, responses=ERRORS, tags=["trust"],
              openapi_extra={"requestBody": {"required": True, "content": {
                  MSGPACK: {"schema": {"type": "string", "format": "binary",
                                       "description": "msgpack of VerifyTaskBody"}},
                  "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def verify_task(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
                          ) -> Response:
        """Re-check a result as a verifier and answer a signed vote. Allowed with the node's bearer token, or
        signed (X-Optimizer-Node/-Timestamp/-Signature) by a coordinator on this node's peer allowlist."""
        from engine.trust.verify import VerificationTask

        await token_or_peer(request, credentials)
        raw = await request.body()
        verifier, _ = await read(_peer_state)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in (*MSGPACK_TYPES, "application/octet-stream"):
            raise APIError(415, f"content-type: send the task as {MSGPACK}")
        try:
            data = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several types for bad input
            raise APIError(400, f"body: not valid msgpack ({type(exc).__name__})") from None
        validated(VerifyTaskBody, data)
        task = await compute(VerificationTask.from_wire, data)
        return reply(request, await compute(verifier.answer, task))

    _install_openapi(app, (AnalyzeRequest, JobRequest, JobOptions, QualityTargets, VerifyTaskBody, QuoteRequest))
    return app


def _stored_scene(store: Any, digest: str) -> Any:
    from engine.scene import wire
    from engine.scene.model import Scene

    return wire.decode(store.load_scene(digest), expect=Scene)


def _quote(body: Any, scene: Any, policy: Any, data_dir: Any) -> dict[str, Any]:
    """POST /v1/quote's answer (economy errors are InputErrors: 422 naming the field)."""
    from datetime import UTC
    from datetime import datetime as _datetime

    from engine.economy import (
        Calibration,
        Pool,
        default_pool,
        jobs_from_analysis,
        parse_deadline,
        quote,
    )
    from engine.economy.pool import node_from_dict
    from engine.economy.prices import DEFAULT_TARIFF, tariff_from_dict
    from engine.route import analyze_and_plan

    now = body.now or _datetime.now(UTC)
    if now.tzinfo is None:
        raise APIError(422, "body.now: give the time with its UTC offset")
    deadline = parse_deadline(body.deadline, now, where="body.deadline")
    if body.nodes:
        pool = Pool(tuple(node_from_dict(n, f"body.nodes[{i}]") if not isinstance(n.get("prices"), str) else
                          _no_files(i) for i, n in enumerate(body.nodes)))
    else:
        tariff = tariff_from_dict(body.prices, "body.prices") if body.prices is not None else DEFAULT_TARIFF
        pool = default_pool(body.timezone, tariff)
    result = analyze_and_plan(scene, policy)
    calibration = Calibration.open(data_dir) if data_dir is not None else None
    jobs, estimates = jobs_from_analysis(result, deadline, body.kind, calibration, pool.local.speed,
                                         {k: dict(v) for k, v in body.settings.items()})
    answer = quote(jobs, pool, now).to_dict()
    answer.update(scene=result.scene_name, pipeline=result.plan.pipeline, estimates=[e.to_dict() for e in estimates])
    return answer


def _no_files(index: int) -> Any:
    raise APIError(422, f"body.nodes[{index}].prices: give the price table inline (the node reads no files "
                        "for a request)")


def decode_views(raw: bytes, field: str) -> Any:
    """ReferenceViews from a wire message; 422 naming the field."""
    from engine.scene import wire
    from engine.splat.references import ReferenceViews

    try:
        return wire.decode(bytes(raw), expect=ReferenceViews)
    except InputError as exc:
        raise APIError(422, f"{field}: {exc}") from None


def _store_scene(store: Any, scene: Any) -> tuple[str, int]:
    """Canonical wire bytes of a validated scene, stored (encrypted) in the node's vault."""
    from engine.scene import wire

    data = wire.encode(scene)
    return store.store_scene(data), len(data)


async def _event_stream(request: Request, store: Any, job_id: str, after: int, terminal: Any):
    """Server-sent events of a job until it ends (or the client goes away)."""
    last_beat = time.monotonic()
    while True:
        events = await read(store.events, job_id, after)
        for event in events:
            after = event.seq
            yield f"id: {event.seq}\nevent: {event.type}\ndata: {json.dumps(event.data)}\n\n"
        job = await read(store.get, job_id)
        if job.state in terminal and not events:
            return
        if await request.is_disconnected():
            return
        if time.monotonic() - last_beat > 15:
            last_beat = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(0.1 if events else 0.25)


def _install_openapi(app: FastAPI, models: tuple[type[BaseModel], ...]) -> None:
    """Add the request-body models (read by hand for msgpack support) to the OpenAPI components."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in model_schema.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components[model.__name__] = model_schema
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class ServerTiming:
    """ASGI middleware: a ``Server-Timing: app;dur=<ms>`` header on every response.

    Clients and benchmarks can tell time spent in the node from time spent on the way.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                elapsed = (time.perf_counter() - started) * 1e3
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"server-timing", f"app;dur={elapsed:.2f}".encode())]}
            await send(message)

        await self.app(scope, receive, timed_send)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413 (by header or count)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, int(declared))
            return
        received = 0
        started = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, received)

    async def _refuse(self, send: Any, size: int) -> None:
        body = json.dumps({"detail": f"request body of {size:,} bytes is over this node's limit of "
                                     f"{self.limit:,} bytes (optimizer serve --max-upload MB)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


__all__ = ["DEFAULT_MAX_UPLOAD", "WireError", "create_app"]
