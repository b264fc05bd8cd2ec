"""The delivery report: one self-contained ``report.html`` that says what was done to a scene and why.

Design: :class:`ReportData` holds plain data (the dicts the other parts already write as JSON, and
images); :func:`write_report` renders it to ONE HTML file with inline CSS, inline SVG charts and
every image embedded as a base64 PNG ``data:`` URI. The page makes no request to anything (a
Content-Security-Policy meta tag forbids it), needs no JavaScript, and opens offline from disk.
Every string that comes from data is HTML-escaped (object names may contain ``<``). Each section
is rendered only when its data is present; the summary is always there.

Sections and their inputs (see each field of :class:`ReportData`):

* **summary**: scene, pipeline, verdict, cost, window, saving, timings (filled in from the other
  sections when not given);
* **routing**: the analysis dict (``AnalysisResult.to_dict()``, what ``optimizer analyze --json``
  prints);
* **verification**: the verification summary dict (``VerificationSummary.to_dict()`` /
  ``summary_json`` of :mod:`engine.trust.verify`);
* **views**: reference | result | FLIP error map per sampled view (:class:`ReportView`);
* **schedule**: the price curves and the chosen window (:data:`SCHEDULE_SCHEMA`);
* **assets**: the delivered files (:class:`ReportAsset`), linked relatively;
* **audit**: the inclusion proof of the run's audit entry (``AuditLog.prove``'s dict, or the short
  ``{"entry", "checkpoint_size", "root"}`` that a verification summary carries).

:func:`collect_result_dir` builds a :class:`ReportData` from a result folder (what ``optimizer
report`` does) and lists what it did not find.

Only the standard library, numpy and Pillow; Pillow and the metrics module are imported when used.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from engine.errors import InputError

log = logging.getLogger(__name__)

#: The schedule dict the report draws (the economy's scheduler writes it as ``schedule.json``)::
#:
#:     {
#:       "nodes": [                                  # one price curve per node (or zone)
#:         {"name": "local", "tz": "Europe/Paris",   # tz: shown in the legend only
#:          "prices": [0.31, 0.29, ...],             # price per slot, slot i starts at
#:                                                   #   horizon_start + i·slot_hours
#:          "chosen": [["2026-05-01T02:00:00+00:00", "2026-05-01T05:00:00+00:00"]]},  # windows run there
#:         ...],
#:       "horizon_start_iso": "2026-05-01T00:00:00+00:00",   # naive times are taken as UTC
#:       "slot_hours": 1.0,                        # optional, default 1
#:       "deadline_iso": "2026-05-02T12:00:00+00:00",        # optional
#:       "cost": 1.84,                             # the chosen plan's cost
#:       "baseline_cost": 3.10,                    # the same work started now
#:       "saving_pct": 40.6,                       # optional: computed from the two costs when absent
#:       "formula_claim": 50.0,                    # optional: the design's fixed-formula saving, a percent
#:                                                 #   (number) or a sentence (string)
#:       "currency": "EUR",                        # optional label for costs
#:       "price_unit": "EUR per GPU-hour"          # optional label of the y axis
#:     }
SCHEDULE_SCHEMA = "see the comment above SCHEDULE_SCHEMA in engine/report.py"

SECTIONS = ("summary", "routing", "verification", "views", "schedule", "assets", "audit")
HEADINGS = {"summary": "Summary", "routing": "Routing", "verification": "Verification",
            "views": "Sampled views", "schedule": "Schedule", "assets": "Delivered files",
            "audit": "Audit proof"}
MAX_IMAGE_SIDE = 1024  # embedded images larger than this are scaled down
MAX_VIEWS = 24

# threshold name → (metric name in a vote, comparison, label)
_THRESHOLDS = {"ssim_min": ("ssim", ">=", "SSIM"), "psnr_min": ("psnr_db", ">=", "PSNR (dB)"),
               "lpips_max": ("lpips", "<=", "LPIPS"), "vmaf_min": ("vmaf", ">=", "VMAF"),
               "flip_max": ("flip", "<=", "FLIP")}
_VOTE_METRICS = ("psnr_db", "ssim", "flip", "lpips", "vmaf")
_PALETTE = ("#1f6feb", "#1a7f37", "#8250df", "#bc4c00", "#0a7ea4", "#bf3989", "#57606a", "#9a6700")  # no red:
# red is the deadline


@dataclass(frozen=True)
class ReportView:
    """One sampled view. Images are PNG paths, PNG bytes, or arrays: (H, W[, 3|4]) floats in [0, 1]
    (display-referred sRGB) or uint8; alpha is composited over white. ``error_map`` is a raw (H, W)
    FLIP map in [0, 1] (colourised with :func:`engine.trust.metrics.colorize_error_map`); ``error`` an
    already coloured image. ``flip`` the view's mean FLIP, shown in the caption (the mean of
    ``error_map`` when not given)."""

    label: str
    reference: Any = None
    result: Any = None
    error: Any = None
    error_map: Any = None
    flip: float | None = None


@dataclass(frozen=True)
class ReportAsset:
    """A delivered file: ``path`` relative to the report's folder, its size in bytes, what it is."""

    path: str
    size: int | None = None
    description: str = ""


@dataclass
class ReportData:
    """Everything the report can show; only ``scene`` is required, each section appears iff its data is given."""

    scene: str
    pipeline: str | None = None  # bake | splat | hybrid (default: the analysis plan's)
    verdict: str | None = None  # validated | disputed | ... (default: the verification's)
    accepted: bool | None = None
    cost: float | None = None  # default: the schedule's
    currency: str | None = None
    window: str | None = None  # default: the schedule's chosen windows
    saving_pct: float | None = None
    timings_s: Mapping[str, float] | None = None  # stage → seconds (default: gathered from the sections)
    analysis: Mapping[str, Any] | None = None
    verification: Mapping[str, Any] | None = None
    views: Sequence[ReportView] | None = None
    schedule: Mapping[str, Any] | None = None
    assets: Sequence[ReportAsset] | None = None
    audit: Mapping[str, Any] | None = None
    bake: Mapping[str, Any] | None = None  # bake.json
    splat: Mapping[str, Any] | None = None  # splat.json
    missing: Sequence[str] = field(default_factory=tuple)  # what the report could not include, and why
    title: str | None = None


# ---------------------------------------------------------------------------------------------
# small helpers


def _e(value: Any) -> str:
    """HTML-escaped text of ``value`` (quotes too: safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _e(value)
    if math.isinf(number):
        return "∞" if number > 0 else "−∞"
    if math.isnan(number):
        return "–"
    return f"{number:.{digits}g}"


def _money(value: Any, currency: str | None) -> str:
    if value is None:
        return "–"
    try:
        text = f"{float(value):,.2f}"
    except (TypeError, ValueError):
        return _e(value)
    return f"{text} {_e(currency)}" if currency else text


def _bytes(size: Any) -> str:
    if size is None:
        return "–"
    size = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GiB"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, caption: str | None = None,
           row_classes: Sequence[str] | None = None) -> str:
    """A table; ``header`` is plain text (escaped here), cells are HTML already."""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _dl(items: Sequence[tuple[str, str]]) -> str:
    """A definition list; terms plain text, values HTML already."""
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _parse_time(text: Any, where: str) -> datetime:
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        raise InputError(f"{text!r} is not an ISO 8601 time", where=where) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# images


def _as_rgb8(image: Any, where: str) -> np.ndarray:
    """An image (path, PNG bytes or array) as (H, W, 3) uint8, alpha composited over white."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, str | Path | bytes | bytearray):
        source = io.BytesIO(bytes(image)) if isinstance(image, bytes | bytearray) else Path(image)
        try:
            with Image.open(source) as opened:
                array = np.asarray(opened.convert("RGBA"))
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"cannot read the image ({exc})", where=where) from None
    else:
        array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"image shape {array.shape} is not (H, W), (H, W, 3) or (H, W, 4)", where=where)
    if array.dtype == np.uint8:
        rgba = array.astype(np.float32) / 255.0
    else:
        rgba = array.astype(np.float32)
        if not np.isfinite(rgba).all():
            raise InputError("image has NaN or infinite values", where=where)
        rgba = np.clip(rgba, 0.0, 1.0)
    if rgba.shape[2] == 4:
        alpha = rgba[..., 3:]
        rgba = rgba[..., :3] * alpha + (1.0 - alpha)
    return np.rint(rgba * 255.0).astype(np.uint8)


def _data_uri(rgb: np.ndarray) -> str:
    from PIL import Image

    picture = Image.fromarray(rgb, mode="RGB")
    if max(picture.size) > MAX_IMAGE_SIDE:
        picture.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(image: Any, alt: str, caption: str, where: str) -> str:
    if image is None:
        return f'<figure class="empty"><div class="noimg">not available</div><figcaption>{_e(caption)}</figcaption></figure>'
    rgb = _as_rgb8(image, where)
    return (f'<figure><img src="{_data_uri(rgb)}" alt="{_e(alt)}" width="{rgb.shape[1]}" height="{rgb.shape[0]}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


# ---------------------------------------------------------------------------------------------
# sections


def _labelled(value: Mapping[str, Any] | None, marker: tuple[str, ...]) -> list[tuple[str | None, Mapping[str, Any]]]:
    """One dict (it has a ``marker`` key) as ``[(None, it)]``, or a dict of them by kind as ``[(kind, each)]``."""
    if not value:
        return []
    if any(key in value for key in marker):
        return [(None, value)]
    if all(isinstance(item, Mapping) for item in value.values()):
        return [(str(kind), item) for kind, item in value.items()]
    raise ValueError(f"neither one summary (with {' or '.join(marker)}) nor a dict of them by kind")


_VERIFICATION_KEYS = ("verdict", "votes")
_AUDIT_KEYS = ("root", "index", "audit_path", "checkpoint_size")


def _summary(data: ReportData) -> str:
    analysis, verification, schedule = data.analysis or {}, data.verification or {}, data.schedule or {}
    pipeline = data.pipeline or (analysis.get("plan") or {}).get("pipeline")
    checks = _labelled(verification, _VERIFICATION_KEYS)
    verdict = str(data.verdict).upper() if data.verdict else ", ".join(
        f"{kind}: {str(v.get('verdict')).upper()}" if kind else str(v.get("verdict")).upper() for kind, v in checks)
    accepted = data.accepted
    if accepted is None and checks and all(isinstance(v.get("accepted"), bool) for _, v in checks):
        accepted = all(v["accepted"] for _, v in checks)
    currency = data.currency or schedule.get("currency")
    cost = data.cost if data.cost is not None else schedule.get("cost")
    saving = data.saving_pct if data.saving_pct is not None else _saving(schedule)
    window = data.window or _window_text(schedule)
    items: list[tuple[str, str]] = [("Scene", _e(data.scene))]
    if pipeline:
        items.append(("Pipeline", f'<span class="badge">{_e(str(pipeline).upper())}</span>'))
    if verdict:
        cls = "pass" if accepted else "fail" if accepted is False else "unknown"
        state = {True: "accepted", False: "not accepted", None: ""}[accepted if isinstance(accepted, bool) else None]
        items.append(("Verdict", f'<span class="badge {cls}">{_e(verdict)}</span> {_e(state)}'))
    if cost is not None:
        items.append(("Cost", _money(cost, currency)))
    if window:
        items.append(("Window", _e(window)))
    if saving is not None:
        items.append(("Saving", f"{float(saving):.1f} % against running now"))
    if data.bake:
        bake = data.bake
        items.append(("Bake", _e(f"{len(bake.get('objects', []))} objects into {bake.get('atlas_count', '?')} "
                                 f"atlas(es) of {bake.get('atlas_size', '?')}², {bake.get('samples', '?')} samples, "
                                 f"on {bake.get('device', '?')}")))
    if data.splat:
        splat = data.splat
        items.append(("Splat", _e(f"{_num(splat.get('gaussians'))} Gaussians, {splat.get('steps', '?')} steps, "
                                  f"held-out PSNR {_num(splat.get('psnr'))} dB, SSIM {_num(splat.get('ssim'))}, "
                                  f"on {splat.get('device', '?')}")))
    timings = dict(data.timings_s) if data.timings_s else _gathered_timings(data)
    if timings:
        items.append(("Timings", ", ".join(f"{_e(k)} {_num(v, 3)} s" for k, v in timings.items())))
    body = _dl(items)
    if data.missing:
        body += ('<div class="missing"><p>Not in this report:</p><ul>'
                 + "".join(f"<li>{_e(m)}</li>" for m in data.missing) + "</ul></div>")
    return body


def _gathered_timings(data: ReportData) -> dict[str, float]:
    out: dict[str, float] = {}
    timings_ms = (data.analysis or {}).get("timings_ms") or {}
    if timings_ms:
        out["analyse + route"] = sum(float(v) for v in timings_ms.values()) / 1e3
    for name, summary in (("bake", data.bake), ("splat", data.splat)):
        total = ((summary or {}).get("timings_s") or {}).get("total_s")
        if total is not None:
            out[name] = float(total)
    total_ms = ((data.verification or {}).get("timings_ms") or {}).get("total")
    if total_ms is not None:
        out["verification"] = float(total_ms) / 1e3
    return out


def _routing(analysis: Mapping[str, Any]) -> str:
    plan = analysis.get("plan") or {}
    objects = (analysis.get("features") or {}).get("objects") or {}
    parts = []
    if plan:
        parts.append(f'<p>Pipeline <span class="badge">{_e(str(plan.get("pipeline", "?")).upper())}</span>'
                     f' ({_e(plan.get("mode", "object"))} mode): {_e("; ".join(map(str, plan.get("reasons", []))))}</p>')
        rows = []
        classes = []
        for name, route in (plan.get("objects") or {}).items():
            triangles = (objects.get(name) or {}).get("triangles")
            rows.append([_e(name), _num(triangles), f'<span class="route {_e(route.get("route"))}">'
                         f'{_e(route.get("route"))}</span>', _e("; ".join(map(str, route.get("reasons", []))))])
            classes.append("")
        parts.append(_table(("object", "triangles", "route", "why"), rows, caption="Route of each object",
                            row_classes=classes))
    if "complexity" in analysis:
        parts.append(f"<p>Complexity <strong>{_num(analysis.get('complexity'), 3)}</strong> (0: easy, 1: hard)</p>")
    terms = analysis.get("complexity_terms") or {}
    if terms:
        parts.append(_table(("term", "value", "weight", "adds", "because"),
                            [[_e(n), _num(t.get("value"), 3), _num(t.get("weight"), 3), _num(t.get("contribution"), 3),
                              _e(t.get("explanation"))] for n, t in terms.items()],
                            caption="Complexity terms"))
    warnings = analysis.get("warnings") or []
    if warnings:
        parts.append("<p>Warnings:</p><ul>" + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>")
    return "".join(parts)


def _measured(votes: Sequence[Mapping[str, Any]], metric: str) -> list[float]:
    values = []
    for vote in votes:
        if not vote.get("counted", True):
            continue
        value = (vote.get("metrics") or {}).get(metric)
        if metric == "psnr_db" and value is None and (vote.get("metrics") or {}).get("mse") == 0:
            value = math.inf  # identical images
        if isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value):
            values.append(float(value))
    return values


def _verifications(value: Mapping[str, Any]) -> str:
    """One verification summary, or one per kind (``{"bake": summary, "splat": summary}``)."""
    return "".join((f"<h3>{_e(kind.capitalize())}</h3>" if kind else "") + _verification(v)
                   for kind, v in _labelled(value, _VERIFICATION_KEYS))


def _audits(value: Mapping[str, Any]) -> str:
    """One inclusion proof, or one per kind."""
    return "".join(_audit(proof, kind) for kind, proof in _labelled(value, _AUDIT_KEYS))


def _verification(v: Mapping[str, Any]) -> str:
    votes = list(v.get("votes") or [])
    accepted = v.get("accepted")
    cls = "pass" if accepted else "fail" if accepted is False else "unknown"
    parts = [
        f'<p><span class="badge {cls}">{_e(str(v.get("verdict", "?")).upper())}</span> '
        f'{_e(v.get("outcome") or "no majority")}; consensus score <strong>{_num(v.get("consensus_score"), 3)}</strong>'
        f' (needs {_num(v.get("threshold"), 3)}); pass weight {_num(v.get("pass_weight"), 3)}, fail weight '
        f'{_num(v.get("fail_weight"), 3)} of {_num(v.get("total_weight"), 3)}.</p>'
    ]
    verifiers = v.get("verifiers") or {}
    if verifiers:
        parts.append(f"<p>{_num(verifiers.get('counted'))} vote(s) counted; {_num(verifiers.get('asked'))} peer(s) "
                     f"asked in {_num(verifiers.get('rounds'))} round(s) (limit {_num(verifiers.get('limit'))}). "
                     f"Verification id <code>{_e(v.get('verification_id'))}</code>.</p>")
    # thresholds against what the counted peers measured
    thresholds = v.get("thresholds") or {}
    if thresholds:
        rows, classes = [], []
        for name, mark in thresholds.items():
            metric, op, label = _THRESHOLDS.get(name, (name, ">=" if name.endswith("_min") else "<=", name))
            values = _measured(votes, metric)
            if not values:
                reason = (v.get("not_measured") or {}).get(metric) or (v.get("not_measured") or {}).get(
                    metric.replace("_db", "")) or "no counted vote carries it"
                rows.append([_e(label), f"{_e(op)} {_num(mark)}", "not measured", _e(reason)])
                classes.append("unmeasured")
                continue
            median = statistics.median(values)
            ok = median >= float(mark) if op == ">=" else median <= float(mark)
            spread = f" ({_num(min(values))} … {_num(max(values))})" if len(values) > 1 else ""
            rows.append([_e(label), f"{_e(op)} {_num(mark)}", f"{_num(median)}{spread}",
                         '<span class="ok">pass</span>' if ok else '<span class="bad">fail</span>'])
            classes.append("pass" if ok else "fail")
        parts.append(_table(("metric", "threshold", "measured (median of counted votes; range)", "result"), rows,
                            caption="Quality thresholds against measured metrics", row_classes=classes))
    if votes:
        rows, classes = [], []
        for vote in votes:
            metrics = vote.get("metrics") or {}
            rows.append([f"<code>{_e(vote.get('node_id'))}</code>", _e(vote.get("verdict")),
                         _num(vote.get("counted", True)), _num(vote.get("weight"), 3)]
                        + [_num(metrics.get(m)) for m in _VOTE_METRICS]
                        + [_e("; ".join(map(str, vote.get("failures") or [])))])
            classes.append("pass" if vote.get("verdict") == "pass" else "fail")
        parts.append(_table(("node", "vote", "counted", "weight", "PSNR (dB)", "SSIM", "FLIP", "LPIPS", "VMAF",
                             "failures"), rows, caption="Votes", row_classes=classes))
    rejected = v.get("rejected") or []
    if rejected:
        parts.append(_table(("node", "from", "reason", "detail"),
                            [[f"<code>{_e(r.get('node_id') or '?')}</code>", _e(r.get("url") or r.get("from")),
                              _e(r.get("reason")), _e(r.get("detail"))] for r in rejected],
                            caption="Rejected votes (not counted)"))
    silent = list(v.get("silent") or []) + list(v.get("skipped") or [])
    if silent:
        parts.append(_table(("node", "url", "why no vote"),
                            [[f"<code>{_e(s.get('node_id'))}</code>", _e(s.get("url")), _e(s.get("reason"))]
                             for s in silent], caption="Peers without a vote"))
    excluded = v.get("excluded") or []
    if excluded:
        parts.append("<p>Excluded as faulty (equivocated): " + ", ".join(f"<code>{_e(x)}</code>" for x in excluded)
                     + "</p>")
    not_measured = v.get("not_measured") or {}
    if not_measured:
        parts.append(_table(("metric", "why not measured"), [[_e(k), _e(r)] for k, r in not_measured.items()],
                            caption="Metrics not measured"))
    detection = v.get("detection") or []
    if detection:
        sample = v.get("sample") or {}
        caption = "Probability that sampling catches a defect"
        if sample:
            caption += (f" ({sample.get('n_per_verifier', '?')} tiles per verifier at confidence "
                        f"{sample.get('confidence', '?')}, tile {sample.get('tile', '?')} px)")
        parts.append(_table(("defective share of tiles", "one verifier", "all counted verifiers"),
                            [[f"{float(d.get('defect_fraction', 0)) * 100:g} %", _pct(d.get("per_verifier")),
                              _pct(d.get("all_counted_verifiers"))] for d in detection], caption=caption))
    return "".join(parts)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{float(value) * 100:.2f} %"


def _views(views: Sequence[ReportView]) -> str:
    parts = ['<p>Each row: the reference render, the delivered result seen from the same camera, and the FLIP '
             "error map (black: no visible difference; bright: large difference).</p>"]
    shown = list(views)[:MAX_VIEWS]
    for view in shown:
        where = f"view {view.label}"
        error, flip = view.error, view.flip
        if view.error_map is not None:
            from engine.trust.metrics import colorize_error_map

            raw = np.asarray(view.error_map, dtype=np.float64)
            error = colorize_error_map(raw)
            if flip is None and np.isfinite(raw).all():
                flip = float(np.clip(raw, 0.0, 1.0).mean())
        error_caption = "FLIP error map" + (f" (mean {flip:.4f})" if flip is not None else "")
        parts.append(
            f'<div class="view"><h3>{_e(view.label)}</h3><div class="triple">'
            + _figure(view.reference, f"reference render of {view.label}", "reference", where)
            + _figure(view.result, f"result render of {view.label}", "result", where)
            + _figure(error, f"FLIP error map of {view.label}", error_caption, where)
            + "</div></div>"
        )
    if len(views) > len(shown):
        parts.append(f"<p>{len(views) - len(shown)} more view(s) not shown.</p>")
    return "".join(parts)


def _saving(schedule: Mapping[str, Any]) -> float | None:
    if schedule.get("saving_pct") is not None:
        return float(schedule["saving_pct"])
    cost, baseline = schedule.get("cost"), schedule.get("baseline_cost")
    if cost is None or not baseline:
        return None
    return 100.0 * (1.0 - float(cost) / float(baseline))


def _window_text(schedule: Mapping[str, Any]) -> str | None:
    spans = []
    for node in schedule.get("nodes") or []:
        for start, end in node.get("chosen") or []:
            spans.append((_parse_time(start, "schedule window"), _parse_time(end, "schedule window"), node.get("name")))
    if not spans:
        return None
    start = min(s for s, _, _ in spans)
    end = max(e for _, e, _ in spans)
    names = sorted({str(n) for _, _, n in spans})
    return f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC on {', '.join(names)}"


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / max(ticks, 1)
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power


def _price_chart(schedule: Mapping[str, Any]) -> str:
    """The price curve of each node over the horizon (step lines), chosen windows shaded, deadline marked."""
    nodes = [n for n in schedule.get("nodes") or [] if n.get("prices")]
    if not nodes:
        return "<p>No price curve given.</p>"
    start = _parse_time(schedule.get("horizon_start_iso"), "schedule horizon_start_iso")
    slot = float(schedule.get("slot_hours") or 1.0)
    hours = max(len(n["prices"]) for n in nodes) * slot
    all_prices = np.concatenate([np.asarray(n["prices"], dtype=np.float64) for n in nodes])
    all_prices = all_prices[np.isfinite(all_prices)]
    low = min(0.0, float(all_prices.min())) if all_prices.size else 0.0
    high = float(all_prices.max()) if all_prices.size else 1.0
    step = _nice_step(high - low or 1.0)
    high = math.ceil(high / step) * step if high > low else low + step
    width, height, left, right, top, bottom = 960, 340, 70, 20, 20, 60
    plot_w, plot_h = width - left - right, height - top - bottom

    def x_of(h: np.ndarray | float) -> np.ndarray | float:
        return left + np.clip(np.asarray(h, dtype=np.float64), 0.0, hours) / hours * plot_w

    def y_of(p: np.ndarray | float) -> np.ndarray | float:
        return top + (high - np.asarray(p, dtype=np.float64)) / (high - low) * plot_h

    def hours_of(iso: Any, where: str) -> float:
        return (_parse_time(iso, where) - start).total_seconds() / 3600.0

    svg = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
           '<title id="chart-title">Price per slot over the scheduling horizon</title>',
           f'<desc id="chart-desc">{len(nodes)} price curve(s) over {hours:g} hours from {start:%Y-%m-%d %H:%M} UTC; '
           "shaded bands are the chosen windows; the dashed red line is the deadline.</desc>",
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#d0d7de"/>']
    # y grid and labels
    for value in np.arange(low, high + step / 2, step):
        y = float(y_of(value))
        svg.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaeef2"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{value:g}</text>')
    # x ticks
    tick_hours = next((t for t in (1, 2, 3, 6, 12, 24, 48, 168) if hours / t <= 12), 336)
    first = math.ceil((start.timestamp() / 3600.0) / tick_hours) * tick_hours - start.timestamp() / 3600.0
    for h in np.arange(first, hours + 1e-9, tick_hours):
        x = float(x_of(h))
        when = start + timedelta(hours=float(h))
        label = f"{when:%a %d}" if when.hour == 0 and when.minute == 0 else f"{when:%H:%M}"
        svg.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#eaeef2"/>'
                   f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">{_e(label)}</text>')
    unit = schedule.get("price_unit") or (f"{schedule['currency']} per slot" if schedule.get("currency") else "price")
    svg.append(f'<text x="{left + plot_w / 2}" y="{height - 24}" text-anchor="middle" class="axis">time (UTC)</text>'
               f'<text x="16" y="{top + plot_h / 2}" text-anchor="middle" class="axis" '
               f'transform="rotate(-90 16 {top + plot_h / 2})">{_e(unit)}</text>')
    legend = []
    for i, node in enumerate(nodes):
        colour = _PALETTE[i % len(_PALETTE)]
        for a, b in node.get("chosen") or []:
            x0, x1 = float(x_of(hours_of(a, "schedule window"))), float(x_of(hours_of(b, "schedule window")))
            svg.append(f'<rect class="window" x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 1.0):.1f}" height="{plot_h}" '
                       f'fill="{colour}" fill-opacity="0.15" stroke="{colour}" stroke-dasharray="2 2">'
                       f"<title>chosen window on {_e(node.get('name'))}: {_e(a)} → {_e(b)}</title></rect>")
        prices = np.asarray(node["prices"], dtype=np.float64)
        edges = np.arange(len(prices) + 1) * slot
        xs = np.asarray(x_of(np.repeat(edges, 2)[1:-1]))
        ys = np.asarray(y_of(np.repeat(np.nan_to_num(prices, nan=low), 2)))
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist(), strict=True))
        svg.append(f'<polyline class="price" fill="none" stroke="{colour}" stroke-width="2" points="{points}">'
                   f"<title>{_e(node.get('name'))}</title></polyline>")
        legend.append((colour, f"{node.get('name')} ({node.get('tz') or 'UTC'})"))
    if schedule.get("deadline_iso"):
        dh = hours_of(schedule["deadline_iso"], "schedule deadline_iso")
        x = float(x_of(dh))
        label = "deadline" + ("" if 0 <= dh <= hours else " (beyond the horizon)")
        svg.append(f'<line class="deadline" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#cf222e" '
                   f'stroke-width="2" stroke-dasharray="6 4"/><text x="{x - 4:.1f}" y="{top + 12}" text-anchor="end" '
                   f'class="deadline-label" paint-order="stroke" stroke="#fff" stroke-width="3">{_e(label)}</text>')
    for i, (colour, name) in enumerate(legend):
        lx = left + 10 + (i % 4) * 220
        ly = height - 8 - (i // 4) * 14
        svg.append(f'<rect x="{lx}" y="{ly - 9}" width="14" height="4" fill="{colour}"/>'
                   f'<text x="{lx + 20}" y="{ly - 4}" class="tick">{_e(name)}</text>')
    svg.append("</svg>")
    return "".join(svg)


def _schedule(schedule: Mapping[str, Any]) -> str:
    currency = schedule.get("currency")
    parts = [f'<div class="chartbox">{_price_chart(schedule)}</div>']
    items = []
    if schedule.get("cost") is not None:
        items.append(("Chosen plan", _money(schedule.get("cost"), currency)))
    if schedule.get("baseline_cost") is not None:
        items.append(("Run now (baseline)", _money(schedule.get("baseline_cost"), currency)))
    saving = _saving(schedule)
    if saving is not None:
        items.append(("Saving", f"{saving:.1f} %"))
    claim = schedule.get("formula_claim")
    if claim is not None:
        text = f"{float(claim):.1f} % saving" if isinstance(claim, int | float) else _e(claim)
        items.append(("The design's fixed-formula claim", text))
    window = _window_text(schedule)
    if window:
        items.append(("Chosen window", _e(window)))
    if schedule.get("deadline_iso"):
        items.append(("Deadline", f"{_parse_time(schedule['deadline_iso'], 'schedule deadline_iso'):%Y-%m-%d %H:%M} UTC"))
    if items:
        parts.append(_dl(items))
    return "".join(parts)


def _assets(assets: Sequence[ReportAsset]) -> str:
    rows = [[f'<a href="{_e(quote(a.path))}">{_e(a.path)}</a>', _bytes(a.size), _e(a.description)] for a in assets]
    total = sum(a.size or 0 for a in assets)
    return _table(("file", "size", "what"), rows, caption=f"{len(assets)} file(s), {_bytes(total)} in all "
                  "(links are relative to this report's folder)")


def _audit(proof: Mapping[str, Any], kind: str | None = None) -> str:
    checkpoint = proof.get("checkpoint") or {}
    index = proof.get("index", proof.get("entry") if not isinstance(proof.get("entry"), Mapping) else None)
    entry = proof.get("entry") if isinstance(proof.get("entry"), Mapping) else {}
    items = [("Entry index", _num(index)),
             ("Tree size", _num(proof.get("tree_size", proof.get("checkpoint_size", checkpoint.get("size"))))),
             ("Root", f"<code>{_e(proof.get('root') or checkpoint.get('root'))}</code>")]
    if entry:
        items.append(("Event", _e(entry.get("event"))))
        if entry.get("verification_id"):
            items.append(("Verification", f"<code>{_e(entry.get('verification_id'))}</code>"))
    if proof.get("leaf_hash"):
        items.append(("Leaf hash", f"<code>{_e(proof['leaf_hash'])}</code>"))
    if proof.get("algorithm"):
        items.append(("Algorithm", _e(proof["algorithm"])))
    if checkpoint:
        items += [("Checkpoint", _e(f"#{checkpoint.get('seq', '?')} by node {checkpoint.get('node_id', '?')}, "
                                    f"signed {checkpoint.get('timestamp', '?')}")),
                  ("Checkpoint signature", f"<code class=\"wrap\">{_e(checkpoint.get('signature'))}</code>")]
    if proof.get("public_key"):
        items.append(("Node public key", f"<code class=\"wrap\">{_e(proof['public_key'])}</code>"))
    if "verified" in proof:
        items.append(("Checked when written", "the path leads to the signed root" if proof["verified"] else "NO"))
    path = proof.get("audit_path") or []
    body = _dl(items)
    if path:
        body += (f"<p>Audit path ({len(path)} hashes, leaf to root, RFC 6962):</p><ol class=\"hashes\">"
                 + "".join(f"<li><code>{_e(h)}</code></li>" for h in path) + "</ol>")
    body += "<p>Check it with <code>optimizer audit prove ENTRY --data NODE_DATA</code>.</p>"
    label = f"Inclusion proof of audit entry {_num(index)}" if index is not None else "Inclusion proof"
    if kind:
        label += f" ({kind})"
    return f"<details><summary>{_e(label)}</summary>{body}</details>"


_CSS = """
:root{color-scheme:light;--fg:#1f2328;--muted:#59636e;--line:#d0d7de;--pass:#1a7f37;--fail:#cf222e;--bg2:#f6f8fa}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);
margin:0 auto;max-width:1160px;padding:24px}
h1{font-size:26px;margin:0 0 8px}h2{font-size:20px;border-bottom:1px solid var(--line);padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin:16px 0 6px}
section{margin-bottom:24px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:8px 0}
dt{color:var(--muted)}dd{margin:0}
table{border-collapse:collapse;margin:12px 0;width:100%;font-size:13.5px}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:var(--bg2)}
tr.pass td:first-child{border-left:4px solid var(--pass)}tr.fail td:first-child{border-left:4px solid var(--fail)}
tr.fail{background:#fff5f5}tr.unmeasured{color:var(--muted);background:var(--bg2)}
.ok{color:var(--pass);font-weight:600}.bad{color:var(--fail);font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;background:#ddf4ff;font-weight:600;font-size:13px}
.badge.pass{background:#dafbe1;color:var(--pass)}.badge.fail{background:#ffebe9;color:var(--fail)}
.badge.unknown{background:#fff8c5}
.route{font-weight:600}.route.bake{color:#9a6700}.route.splat{color:#8250df}.route.keep{color:#0a7ea4}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
.triple{display:grid;grid-template-columns:repeat(3,1fr);gap:12px;max-width:960px}
figure{margin:0}figure img{width:100%;height:auto;image-rendering:pixelated;border:1px solid var(--line)}
figcaption{font-size:12.5px;color:var(--muted);text-align:center}
.noimg{border:1px dashed var(--line);aspect-ratio:1;display:flex;align-items:center;justify-content:center;color:var(--muted)}
.chartbox{overflow-x:auto}.chart{max-width:100%;height:auto;font:12px system-ui,sans-serif}
.chart .tick{fill:#59636e;font-size:11px}.chart .axis{fill:#1f2328;font-size:12px}
.chart .deadline-label{fill:#cf222e;font-size:12px;font-weight:600}
.missing{background:#fff8c5;border:1px solid #d4a72c;padding:4px 12px;border-radius:6px}
details{border:1px solid var(--line);border-radius:6px;padding:8px 12px}summary{cursor:pointer;font-weight:600}
ol.hashes{font-size:12px}footer{color:var(--muted);font-size:12px;margin-top:32px}
"""


def render_html(data: ReportData) -> str:
    """The report as one HTML string (see the module docstring)."""
    if not isinstance(data.scene, str) or not data.scene:
        raise InputError("a report needs the scene's name", where="report")
    renderers: dict[str, tuple[Any, Any]] = {
        "summary": (data, _summary), "routing": (data.analysis, _routing),
        "verification": (data.verification, _verifications), "views": (data.views, _views),
        "schedule": (data.schedule, _schedule), "assets": (data.assets, _assets), "audit": (data.audit, _audits),
    }
    bodies: dict[str, str] = {}
    for section, (value, render) in renderers.items():
        if not value:
            continue
        try:
            bodies[section] = render(value)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            raise InputError(f"the {section} data does not have the expected shape ({type(exc).__name__}: {exc})",
                             where=f"report {section}",
                             hint="see engine/report.py (SCHEDULE_SCHEMA for the schedule)") from None
    title = data.title or f"Optimizer report: {data.scene}"
    nav = " · ".join(f'<a href="#{s}">{_e(HEADINGS[s])}</a>' for s in SECTIONS if s in bodies)
    sections = "".join(f'<section id="{s}" aria-labelledby="h-{s}"><h2 id="h-{s}">{_e(HEADINGS[s])}</h2>'
                       f"{bodies[s]}</section>" for s in SECTIONS if s in bodies)
    from engine import __version__

    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><header><h1>{_e(title)}</h1><nav aria-label=\"sections\">{nav}</nav></header>"
        f"<main>{sections}</main>"
        f"<footer>Made by Optimizer {_e(__version__)} on {made}. Self-contained: opens offline.</footer>"
        "</body></html>\n"
    )


def write_report(out_path: str | Path, data: ReportData) -> Path:
    """Write the report to ``out_path`` (a file, or a folder to hold ``report.html``); returns the file's path."""
    target = Path(out_path)
    if target.is_dir():
        target = target / "report.html"
    text = render_html(data)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the report ({exc.strerror or exc})", where=str(target)) from None
    log.info("report: wrote %s (%d bytes)", target, len(text.encode("utf-8")))
    return target


# ---------------------------------------------------------------------------------------------
# a result folder


_AUDIT_FILES = ("audit_proof.json", "audit-proof.json", "proof.json", "audit.json")
_SKIP_DIRS = {"node", "__pycache__"}


def _read_json(path: Path, missing: list[str], what: str) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        missing.append(f"{what}: {path.name} cannot be read ({exc})")
        return None


def _find(root: Path, name: str) -> Path | None:
    """``root/name`` or, for a hybrid result, ``root/*/name`` (one level down)."""
    if (root / name).is_file():
        return root / name
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in _SKIP_DIRS):
        if (sub / name).is_file():
            return sub / name
    return None


def _view_pairs(root: Path, missing: list[str], compute_flip: bool) -> list[ReportView]:
    """Reference | result | FLIP per sampled view, from ``references/`` and ``views/`` in the folder and in
    each folder one level down (a hybrid result's ``bake/`` and ``splat/``, labelled by it)."""
    folders = [root, *sorted(p for p in root.iterdir() if p.is_dir() and p.name not in _SKIP_DIRS)]
    out: list[ReportView] = []
    for folder in folders:
        prefix = "" if folder == root else f"{folder.name} "
        out += _folder_views(folder, prefix, missing, compute_flip, MAX_VIEWS - len(out))
    if not out:
        missing.append("sampled views: no references/ or views/ folder")
    return out


def _folder_views(root: Path, prefix: str, missing: list[str], compute_flip: bool, limit: int) -> list[ReportView]:
    references_dir = root / "references" if (root / "references").is_dir() else None
    views_dir = root / "views" if (root / "views").is_dir() else None
    if (references_dir is None and views_dir is None) or limit <= 0:
        return []
    names = sorted({p.name for d in (references_dir, views_dir) if d for p in d.glob("*.png")},
                   key=lambda n: (len(n), n))
    out: list[ReportView] = []
    flip_failed = None
    for name in names[:limit]:
        reference = result = error_map = None
        if references_dir and (references_dir / name).is_file():
            reference = _as_rgb8(references_dir / name, str(references_dir / name))
        if views_dir and (views_dir / name).is_file():
            row = _as_rgb8(views_dir / name, str(views_dir / name))
            if reference is not None and row.shape[1] == 2 * reference.shape[1]:
                result = row[:, reference.shape[1]:]  # the splat pipeline writes reference | result side by side
            elif reference is None and row.shape[1] % 2 == 0:
                half = row.shape[1] // 2
                reference, result = row[:, :half], row[:, half:]
            else:
                result = row
        error_png = next((root / d / name for d in ("flip", "errors") if (root / d / name).is_file()), None)
        error = error_png
        if error is None and compute_flip and reference is not None and result is not None \
                and reference.shape == result.shape and flip_failed is None:
            try:
                from engine.trust.metrics import flip_view

                error_map, _ = flip_view(reference.astype(np.float32) / 255.0, result.astype(np.float32) / 255.0)
            except (RuntimeError, ImportError, InputError) as exc:
                flip_failed = str(exc)
        out.append(ReportView(prefix + Path(name).stem, reference, result, error=error, error_map=error_map))
    if flip_failed:
        missing.append(f"FLIP error maps: not computed ({flip_failed[:200]})")
    return out


def _asset_list(root: Path, report_path: Path | None) -> list[ReportAsset]:
    described = {"scene.glb": "glTF with lightmaps", "splat.ply": "3D Gaussians (3DGS PLY)",
                 "splat.compressed.ply": "3D Gaussians (compressed PLY)", "analysis.json": "analysis and routing",
                 "verification.json": "verification summary", "schedule.json": "schedule and costs",
                 "bake.json": "bake summary", "splat.json": "splat summary", "cameras.json": "camera rig",
                 "manifest.json": "which object went where"}
    assets = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.parts[0] in _SKIP_DIRS or any(p.startswith(".") for p in rel.parts):
            continue
        if report_path is not None and path.resolve() == report_path.resolve():
            continue
        description = described.get(path.name, "")
        if not description and path.suffix == ".exr":
            description = "lightmap (linear HDR)"
        elif not description and path.name.endswith(".rgbm.png"):
            description = "lightmap (RGBM)"
        assets.append(ReportAsset(rel.as_posix(), path.stat().st_size, description))
    return assets


def collect_result_dir(result_dir: str | Path, *, report_path: str | Path | None = None,
                       compute_flip: bool = True) -> ReportData:
    """A :class:`ReportData` from what a result folder holds; ``missing`` says what it lacked.

    Looks for ``analysis.json``, ``bake.json`` / ``splat.json`` (also one folder down, for a hybrid
    result), ``verification.json``, ``references/`` and ``views/`` images (FLIP maps from ``flip/`` or
    computed here), ``schedule.json`` (:data:`SCHEDULE_SCHEMA`) and the audit proof
    (``audit_proof.json``, else the verification's audit entry). The node data folder ``node/`` is
    never listed as an asset.
    """
    root = Path(result_dir)
    if not root.is_dir():
        raise InputError("not a folder", where=str(root), hint="pass the folder a pipeline run wrote its result to")
    missing: list[str] = []
    analysis = _read_json(root / "analysis.json", missing, "routing")
    if analysis is None and not any("analysis.json" in m for m in missing):
        missing.append("routing: no analysis.json")
    bake_path, splat_path = _find(root, "bake.json"), _find(root, "splat.json")
    bake = _read_json(bake_path, missing, "bake") if bake_path else None
    splat = _read_json(splat_path, missing, "splat") if splat_path else None
    if bake is None and splat is None:
        missing.append("processing: no bake.json or splat.json")
    verification = _read_json(root / "verification.json", missing, "verification")
    if verification is None:  # a hybrid result: one per kind, in bake/ and splat/
        found = {sub.name: _read_json(sub / "verification.json", missing, f"verification ({sub.name})")
                 for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in _SKIP_DIRS)}
        verification = {kind: v for kind, v in found.items() if isinstance(v, Mapping)} or None
    if verification is None and not any("verification.json" in m for m in missing):
        missing.append("verification: no verification.json")
    schedule = _read_json(root / "schedule.json", missing, "schedule")
    if schedule is None and not any("schedule.json" in m for m in missing):
        missing.append("schedule: no schedule.json")
    audit = None
    for name in _AUDIT_FILES:
        audit = _read_json(root / name, missing, "audit proof")
        if audit is not None:
            break
    if audit is None and isinstance(verification, Mapping):
        entries = {kind or "": v["audit"] for kind, v in _labelled(verification, _VERIFICATION_KEYS)
                   if isinstance(v.get("audit"), Mapping)}
        audit = entries.get("") or entries or None
    if audit is None:
        missing.append(f"audit proof: none of {', '.join(_AUDIT_FILES)}, and no audit entry in the verification")
    views = _view_pairs(root, missing, compute_flip)
    scene = next((str(d["scene"]) for d in (analysis, bake, splat) if isinstance(d, Mapping) and d.get("scene")),
                 root.resolve().name)
    pipeline = None
    if not (isinstance(analysis, Mapping) and analysis.get("plan")):
        pipeline = "hybrid" if bake and splat else "bake" if bake else "splat" if splat else None
    return ReportData(
        scene=scene, pipeline=pipeline, analysis=analysis if isinstance(analysis, Mapping) else None,
        verification=verification if isinstance(verification, Mapping) else None, views=views or None,
        schedule=schedule if isinstance(schedule, Mapping) else None,
        assets=_asset_list(root, Path(report_path) if report_path else root / "report.html") or None,
        audit=audit if isinstance(audit, Mapping) else None,
        bake=bake if isinstance(bake, Mapping) else None, splat=splat if isinstance(splat, Mapping) else None,
        missing=tuple(missing),
    )


__all__ = ["HEADINGS", "SCHEDULE_SCHEMA", "SECTIONS", "ReportAsset", "ReportData", "ReportView", "collect_result_dir",
           "render_html", "write_report"]
