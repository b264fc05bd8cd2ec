"""The HTML report: self-contained, escaped, each section iff its data is given, images that decode,
`optimizer report` on a result folder, and the page as headless Chromium renders it."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.errors import InputError
from engine.report import HEADINGS, SECTIONS, ReportAsset, ReportData, ReportView, render_html, write_report
from engine.trust.metrics import colorize_error_map

HOSTILE_OBJECT = '<script>alert("obj")</script>'
HOSTILE_NODE = "<img src=x onerror=alert(1)>"
MAGENTA = (255, 0, 255)


class Page(HTMLParser):
    """What a browser would see: tags with attributes, section ids, text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]

    @property
    def sections(self) -> set[str]:
        return {str(a["id"]) for a in self.all("section")}

    @property
    def plain(self) -> str:
        return " ".join(self.text)


# ---------------------------------------------------------------------------------------------
# data


def analysis() -> dict[str, Any]:
    """An analysis dict as `optimizer analyze --json` prints it, from a real scene with a hostile object name."""
    from engine.route import analyze_and_plan
    from engine.scene import Scene
    from tests.conftest import unit_box

    scene = Scene(objects=(unit_box("Wall"), unit_box(HOSTILE_OBJECT)), name="Hostile <scene>")
    return analyze_and_plan(scene).to_dict()


def verification() -> dict[str, Any]:
    """A verification summary with the keys `verify_result` writes: one passing and one failing vote, one
    rejected vote, LPIPS and VMAF not measured; PSNR median fails its mark, FLIP passes."""
    return {
        "schema": 1, "verification_id": "v-123", "scene_id": "s", "kind": "splat", "result_hash": "ab" * 32,
        "coordinator": "coord", "verdict": "validated", "outcome": "pass", "accepted": True,
        "consensus_score": 0.875, "threshold": 0.67, "pass_weight": 1.4, "fail_weight": 0.2, "total_weight": 1.6,
        "votes": [
            {"node_id": HOSTILE_NODE, "url": "http://127.0.0.1:1", "verdict": "pass", "counted": True, "weight": 1.4,
             "metrics": {"ssim": 0.99, "psnr_db": 33.0, "mse": 0.0005, "flip": 0.04, "vmaf": None, "lpips": None},
             "failures": []},
            {"node_id": "peer-b", "url": "http://127.0.0.1:2", "verdict": "fail", "counted": True, "weight": 0.2,
             "metrics": {"ssim": 0.97, "psnr_db": 30.0, "mse": 0.001, "flip": 0.06, "vmaf": None, "lpips": None},
             "failures": ["psnr 30 is not >= 35"]},
        ],
        "rejected": [{"node_id": "forger", "from": "peer-c", "url": "http://127.0.0.1:3", "reason": "bad signature",
                      "detail": "signature <does not> verify"}],
        "silent": [{"node_id": "peer-d", "url": "http://127.0.0.1:4", "reason": "no answer within the deadline (5 s)"}],
        "skipped": [], "excluded": [], "equivocation_evidence": [],
        "not_measured": {"lpips": "LPIPS weights not installed", "vmaf": "ffmpeg has no libvmaf"},
        "thresholds": {"ssim_min": 0.98, "psnr_min": 35.0, "lpips_max": 0.05, "vmaf_min": 90.0, "flip_max": 0.1},
        "sample": {"n_per_verifier": 30, "complexity": 0.5, "confidence": 0.95, "tile": 32},
        "detection": [{"defect_fraction": p, "per_verifier": 1 - (1 - p) ** 30, "all_counted_verifiers": 1 - (1 - p) ** 60}
                      for p in (0.01, 0.05, 0.1, 0.2)],
        "verifiers": {"asked": 3, "limit": 3, "rounds": 1, "counted": 2},
        "timings_ms": {"total": 2500.0, "peer_render_max": 800.0, "overhead_excluding_render": 1700.0},
    }


def schedule(**changes: Any) -> dict[str, Any]:
    hours = np.arange(48)
    prices = (0.30 + 0.10 * np.sin(hours / 24 * 2 * np.pi)).round(4).tolist()
    data = {
        "nodes": [{"name": "local", "tz": "Europe/Paris", "prices": prices,
                   "chosen": [["2026-05-01T12:00:00+00:00", "2026-05-01T23:00:00+00:00"]]},
                  {"name": "peer <tokyo>", "tz": "Asia/Tokyo", "prices": [p * 0.8 for p in prices], "chosen": []}],
        "horizon_start_iso": "2026-05-01T00:00:00+00:00", "slot_hours": 1.0,
        "deadline_iso": "2026-05-02T12:00:00Z", "cost": 1.5, "baseline_cost": 3.0, "formula_claim": 62.5,
        "currency": "EUR",
    }
    data.update(changes)
    return data


def audit_proof(tmp: Path) -> dict[str, Any]:
    """A real inclusion proof from a real audit log."""
    from engine.service.security import load_or_create_identity
    from engine.trust.audit import AuditEntry, AuditLog

    identity, key = load_or_create_identity(tmp)
    with AuditLog(tmp, key, identity.node_id, public_key=key.public_key()) as log:
        for i in range(3):
            log.append(AuditEntry("verification", scene_id=f"scene-{i}", verification_id=f"v-{i}"))
        log.checkpoint()
        return log.prove(1)


def views() -> tuple[list[ReportView], np.ndarray]:
    rng = np.random.default_rng(0)
    reference = np.zeros((40, 60, 3))
    reference[...] = np.array(MAGENTA) / 255.0  # a colour nothing else on the page has
    result = np.clip(reference + rng.normal(0, 0.05, reference.shape), 0, 1)
    error_map = np.abs(reference - result).mean(axis=2)
    rgba = np.concatenate([reference, np.ones((40, 60, 1))], axis=2)
    return [ReportView("view <0>", reference, result, error_map=error_map),
            ReportView("view 1", rgba, (result * 255).astype(np.uint8), error=colorize_error_map(error_map))], error_map


def full_data(tmp: Path) -> ReportData:
    return ReportData(scene="Hostile <scene> & co", analysis=analysis(), verification=verification(),
                      views=views()[0], schedule=schedule(),
                      assets=[ReportAsset("scene.glb", 123_456, "glTF"), ReportAsset("splat <1>.ply", 999, "<b>x</b>")],
                      audit=audit_proof(tmp / "node"), missing=["<nothing> here"])


ONLY = {
    "routing": lambda tmp: {"analysis": analysis()},
    "verification": lambda tmp: {"verification": verification()},
    "views": lambda tmp: {"views": views()[0]},
    "schedule": lambda tmp: {"schedule": schedule()},
    "assets": lambda tmp: {"assets": [ReportAsset("a.bin", 1)]},
    "audit": lambda tmp: {"audit": audit_proof(tmp)},
}


# ---------------------------------------------------------------------------------------------
# the HTML itself


def test_self_contained_parses_and_escapes(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    path = write_report(tmp_path / "out", full_data(tmp_path))  # a folder: the report goes in as report.html
    assert path == tmp_path / "out" / "report.html"
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert page.sections == set(SECTIONS)
    # nothing is fetched: no scripts, no external src/href, CSS without url(), CSP forbids the rest
    assert not page.all("script") and not page.all("link") and not page.all("iframe")
    for tag, attrs in page.tags:
        for name in ("src", "href", "xlink:href", "action", "poster"):
            value = attrs.get(name)
            if value is not None:
                assert not re.match(r"^\s*(https?:)?//", value, re.I), (tag, name, value[:80])
                assert value.startswith(("data:image/png;base64,", "#")) or "://" not in value, (tag, value[:80])
    assert "url(" not in text
    csp = [a for a in page.all("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in str(csp[0]["content"])
    # hostile names arrive as text, never as markup
    assert [a for a in page.all("img") if a.get("src") == "x"] == []
    assert 'onerror' not in " ".join(" ".join(a) for _, attrs in page.tags for a in attrs)
    plain = page.plain
    for name in (HOSTILE_OBJECT, HOSTILE_NODE, "Hostile <scene> & co", "peer <tokyo>", "<nothing> here",
                 "signature <does not> verify", "splat <1>.ply", "view <0>"):
        assert name in plain, name
    # alt text and table headers
    assert all(a.get("alt") for a in page.all("img"))
    assert len(page.all("th")) >= 20


@pytest.mark.parametrize("section", sorted(ONLY))
def test_each_section_iff_its_data(tmp_path: Path, section: str) -> None:
    page = Page(render_html(ReportData(scene="s", **ONLY[section](tmp_path))))
    assert page.sections == {"summary", section}
    assert HEADINGS[section] in page.plain


def test_summary_only(tmp_path: Path) -> None:
    page = Page(render_html(ReportData(scene="bare")))
    assert page.sections == {"summary"}
    assert not page.all("img") and not page.all("svg") and not page.all("details")


def test_images_embedded_and_decodable(tmp_path: Path) -> None:
    view_list, error_map = views()
    page = Page(render_html(ReportData(scene="s", views=view_list)))
    images = page.all("img")
    assert len(images) == 6  # reference | result | error map, two views
    decoded = []
    for attrs in images:
        src = str(attrs["src"])
        assert src.startswith("data:image/png;base64,")
        picture = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
        assert picture.format == "PNG" and picture.size == (int(attrs["width"]), int(attrs["height"])) == (60, 40)
        decoded.append(np.asarray(picture.convert("RGB")))
    assert (decoded[0] == MAGENTA).all()  # the reference, exactly
    assert np.array_equal(decoded[2], colorize_error_map(error_map))  # the raw map, colourised
    assert np.array_equal(decoded[3], decoded[0])  # RGBA with alpha 1 is the same picture
    assert f"mean {float(error_map.mean()):.4f}" in page.plain


def test_thresholds_against_measurements() -> None:
    page = Page(render_html(ReportData(scene="s", verification=verification())))
    rows = {}
    text = render_html(ReportData(scene="s", verification=verification()))
    for match in re.finditer(r'<tr class="(\w+)"><td>([^<]+)</td>', text):
        rows.setdefault(match.group(2), match.group(1))
    assert rows["PSNR (dB)"] == "fail"  # median of 33 and 30 misses 35
    assert rows["SSIM"] == "pass"  # median 0.98 meets 0.98
    assert rows["FLIP"] == "pass" and rows["LPIPS"] == "unmeasured" and rows["VMAF"] == "unmeasured"
    assert "31.5 (30 … 33)" in page.plain
    assert "LPIPS weights not installed" in page.plain and "bad signature" in page.plain
    assert "no answer within the deadline (5 s)" in page.plain
    assert "VALIDATED" in page.plain and "99.82 %" in page.plain  # 1 - 0.9**60 for a 10 % defect share


def test_schedule_chart_and_costs() -> None:
    text = render_html(ReportData(scene="s", schedule=schedule(saving_pct=None)))
    page = Page(text)
    assert len(page.all("polyline")) == 2
    window = [a for a in page.all("rect") if a.get("class") == "window"]
    assert len(window) == 1
    left, plot_w, hours = 70, 870, 48  # chart geometry: 12:00 → 23:00 of a 48 h horizon
    assert float(window[0]["x"]) == pytest.approx(left + 12 / hours * plot_w, abs=0.1)
    assert float(window[0]["width"]) == pytest.approx(11 / hours * plot_w, abs=0.1)
    deadline = [a for a in page.all("line") if a.get("class") == "deadline"]
    assert len(deadline) == 1 and float(deadline[0]["x1"]) == pytest.approx(left + 36 / hours * plot_w, abs=0.1)
    plain = page.plain
    assert "1.50 EUR" in plain and "3.00 EUR" in plain and "50.0 %" in plain  # saving computed from the costs
    assert "62.5 % saving" in plain and "2026-05-01 12:00 → 2026-05-01 23:00 UTC on local" in plain


def test_malformed_data_is_an_input_error() -> None:
    with pytest.raises(InputError, match="schedule"):
        render_html(ReportData(scene="s", schedule=schedule(horizon_start_iso="yesterday")))
    with pytest.raises(InputError, match="schedule"):
        render_html(ReportData(scene="s", schedule=schedule(nodes=[{"name": "x", "prices": ["a", "b"]}])))
    with pytest.raises(InputError, match="image"):
        render_html(ReportData(scene="s", views=[ReportView("v", reference=np.zeros((4, 4, 5)))]))
    with pytest.raises(InputError, match="scene"):
        render_html(ReportData(scene=""))


# ---------------------------------------------------------------------------------------------
# `optimizer report` on a result folder


def make_result_folder(folder: Path) -> dict[str, np.ndarray]:
    """A splat result as the pipeline writes it: references/ (RGBA), views/ (reference | result), the JSON files,
    plus node data that must never be listed."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    (folder / "references").mkdir()
    (folder / "views").mkdir()
    results = {}
    for k in (0, 8):
        reference = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        result = np.clip(reference.astype(int) + rng.integers(-20, 20, reference.shape), 0, 255).astype(np.uint8)
        rgba = np.concatenate([reference, np.full((32, 32, 1), 255, np.uint8)], axis=2)
        Image.fromarray(rgba).save(folder / "references" / f"test_{k}.png")
        Image.fromarray(np.concatenate([reference, result], axis=1)).save(folder / "views" / f"test_{k}.png")
        results[f"test_{k}"] = result
    (folder / "analysis.json").write_text(json.dumps(analysis()))
    (folder / "splat.json").write_text(json.dumps({"scene": "Hostile <scene>", "gaussians": 1000, "steps": 10,
                                                   "psnr": 30.0, "ssim": 0.9, "device": "cpu",
                                                   "timings_s": {"total_s": 12.5}}))
    (folder / "splat.ply").write_bytes(b"ply\n" + bytes(100))
    (folder / "verification.json").write_text(json.dumps(verification()))
    (folder / "audit_proof.json").write_text(json.dumps(audit_proof(folder / "node")))
    return results


def test_cli_report_from_a_result_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    results = make_result_folder(tmp_path / "result")
    assert main(["report", str(tmp_path / "result")]) == 0
    out = capsys.readouterr().out
    assert "report.html" in out and "not included: schedule: no schedule.json" in out
    page = Page((tmp_path / "result" / "report.html").read_text(encoding="utf-8"))
    assert page.sections == {"summary", "routing", "verification", "views", "assets", "audit"}
    links = [str(a["href"]) for a in page.all("a") if not str(a["href"]).startswith("#")]
    assert "splat.ply" in links and "analysis.json" in links and "references/test_0.png" in links
    assert not [h for h in links if h.startswith("node") or "report.html" in h]  # node data (keys) is never listed
    images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(str(a["src"]).split(",", 1)[1]))).convert("RGB"))
              for a in page.all("img")]
    assert len(images) == 6  # two views, each with a FLIP map computed here
    assert np.array_equal(images[1], results["test_0"])  # the result half of views/test_0.png
    assert "Inclusion proof of audit entry 1" in page.plain and "12.5 s" in page.plain

    assert main(["report", str(tmp_path / "result"), "--out", str(tmp_path / "elsewhere.html"), "--no-flip"]) == 0
    page = Page((tmp_path / "elsewhere.html").read_text(encoding="utf-8"))
    assert len(page.all("img")) == 4 and "report.html" in " ".join(str(a["href"]) for a in page.all("a"))

    assert main(["report", str(tmp_path / "nothing-here")]) == 2
    assert "not a folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# headless Chromium


CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Debian's chromium is not installed, so the report cannot be checked in a browser: run "
                    "`apt-get update && apt-get install -y chromium` (as root), then rerun the tests")
    return exe


def run_chromium(tmp: Path, *args: str) -> str:
    done = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}", *args],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def screenshot(tmp: Path, html_file: Path, name: str, size: tuple[int, int]) -> np.ndarray:
    shot = tmp / name
    run_chromium(tmp, f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}", html_file.resolve().as_uri())
    assert shot.is_file()
    picture = Image.open(shot)
    assert picture.size == size
    return np.asarray(picture.convert("RGB"))


def test_chromium_renders_the_report(tmp_path: Path) -> None:
    full = write_report(tmp_path / "full" / "report.html", full_data(tmp_path))
    pixels = screenshot(tmp_path, full, "full.png", (1200, 2000))
    assert pixels.std() > 20  # not blank: text, tables, badges
    assert (pixels.min(axis=2) < 80).mean() > 0.005  # dark text was drawn
    dom = run_chromium(tmp_path, "--dump-dom", full.resolve().as_uri())
    for section in SECTIONS:
        assert f'id="{section}"' in dom and HEADINGS[section] in dom, section
    assert HOSTILE_OBJECT.replace("<", "&lt;").replace(">", "&gt;") in dom  # still text after the browser parsed it

    # the embedded images and the chart are drawn (the page's CSP allows data: images and nothing else)
    pictures = write_report(tmp_path / "pictures.html", ReportData(scene="s", views=views()[0][:1],
                                                                    schedule=schedule()))
    pixels = screenshot(tmp_path, pictures, "pictures.png", (1200, 1400))
    magenta = (pixels[..., 0] > 230) & (pixels[..., 1] < 40) & (pixels[..., 2] > 230)
    assert magenta.sum() > 5_000, magenta.sum()  # the reference view, scaled up to its column
    red = (abs(pixels[..., 0].astype(int) - 0xCF) < 25) & (pixels[..., 1] < 70) & (pixels[..., 2] < 80)
    assert red.sum(axis=0).max() > 100  # the dashed deadline line: a long vertical run of red in one column


def test_cli_report_from_a_hybrid_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The one-click pipeline's layout: bake/ and splat/ each with their verification, proofs by kind."""
    from engine.cli import main

    root = tmp_path / "run"
    make_result_folder(root / "splat")
    (root / "splat" / "audit_proof.json").unlink()
    (root / "analysis.json").write_text((root / "splat" / "analysis.json").read_text())
    (root / "bake").mkdir()
    (root / "bake" / "bake.json").write_text(json.dumps({"scene": "Hostile <scene>", "objects": ["Wall"],
                                                        "atlas_count": 1, "atlas_size": 512, "samples": 16,
                                                        "device": "cpu", "timings_s": {"total_s": 3.0}}))
    disputed = dict(verification(), verdict="disputed", outcome=None, accepted=False)
    (root / "bake" / "verification.json").write_text(json.dumps(disputed))
    proofs = {"bake": audit_proof(root / "node"), "splat": audit_proof(root / "node")}
    (root / "audit_proof.json").write_text(json.dumps(proofs))
    assert main(["report", str(root), "--no-flip"]) == 0
    assert "not included: verification" not in capsys.readouterr().out
    page = Page((root / "report.html").read_text(encoding="utf-8"))
    plain = page.plain
    assert page.sections == {"summary", "routing", "verification", "views", "assets", "audit"}
    assert "bake: DISPUTED, splat: VALIDATED" in plain and "not accepted" in plain
    assert "Bake" in [t for t in page.text] and "Splat" in [t for t in page.text]  # one block per kind
    assert len(page.all("details")) == 2 and "Inclusion proof of audit entry 1 (splat)" in plain
    assert "splat test_0" in plain and "bake 3 s" in plain and "splat 12.5 s" in plain
    links = [str(a["href"]) for a in page.all("a") if not str(a["href"]).startswith("#")]
    assert "bake/verification.json" in links and not [h for h in links if h.startswith("node")]
