"""Wavefront OBJ + MTL importer (own parser, vectorised with numpy).

The file is read once as bytes. Every line is classified by its first token with numpy; all
``v``/``vt``/``vn`` lines are parsed in one bulk call each, and all ``f`` lines in one bulk
call whatever mix of index forms they use (``v``, ``v/vt``, ``v//vn``, ``v/vt/vn``) and
whatever their vertex counts (fan triangulation is vectorised too). Only the few remaining
statements (``o``, ``g``, ``usemtl``, ``mtllib``, ...) are handled line by line. When a bulk
parse meets something it does not accept, a per-line parser walks the same lines to name the
exact line and problem.

Semantics:

* ``o`` starts an object, ``g`` a group inside it; each (object, group) pair that has faces
  becomes one :class:`MeshObject` named ``o``, ``o/g`` or ``g`` (the file's stem when neither is
  given; duplicates get ``.001``, ``.002``...). ``usemtl`` sets per-triangle material indices.
* Each object gets compact vertex arrays: the distinct (v, vt, vn) corners it uses. Normals and
  UVs (set "UVMap", V up as in the file) are kept only when every corner of the object has one.
* OBJ carries no unit: ``meters_per_unit`` is ``None`` unless ``unit`` is given. Coordinates are
  kept as in the file. OBJ is Y-up by convention and the Scene is Z-up (DESIGN.md), so each
  object's ``transform`` is the rotation Y-up -> Z-up (Blender's importer converts the same way
  by default); the positions themselves are untouched.
* MTL: ``Kd`` base colour (clipped to 0..1), ``d``/``Tr`` alpha (below 1: BLEND), ``map_Kd``
  colour texture, ``map_d`` alpha map (MASK; merged into the colour texture's alpha), ``Ke``
  emission, ``Ka`` above 1 with no ``Ke`` read as emission (old Cornell box files mark the light
  that way), ``Ns`` -> roughness ``sqrt(2 / (Ns + 2))``, ``Pm``/``Pr`` (PBR extension) override.
  ``Ks``, ``Ni``, ``Tf``, ``illum`` and the other maps are ignored.
* Lines, points and free-form geometry are skipped with one warning; a missing ``.mtl`` or
  texture is a warning in ``Scene.warnings``; malformed geometry raises
  :class:`ImportFormatError` (syntax, bad indices) or :class:`SceneError` (NaN/Inf values),
  naming the file, the line and the object.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from engine.errors import ImportFormatError, InputError, SceneError
from engine.scene.model import DEFAULT_MATERIAL, Material, MeshObject, Scene, Texture
from engine.scene.units import parse_unit

log = logging.getLogger(__name__)

UV_SET = "UVMap"

# OBJ is Y-up; the Scene is Z-up: (x, y, z)_file -> (x, -z, y)_world.
Y_UP_TO_Z_UP = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
Y_UP_TO_Z_UP.flags.writeable = False

# Line classes.
_BLANK, _V, _VT, _VN, _F, _OTHER = range(6)

_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 32]] = True

_FLOAT_RE = re.compile(
    rb"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|nan|inf|infinity)", re.IGNORECASE
)
_INT_RE = re.compile(rb"[+-]?\d+")
_MTL_COMMENT = re.compile(r"(^|\s)#.*$")

# (min, max) value counts per element line.
_V_COUNTS = (3, 7)  # x y z [w] or x y z r g b [a]
_VT_COUNTS = (1, 3)  # u [v [w]]
_VN_COUNTS = (3, 3)

_IGNORED = frozenset(
    b"s mg lod vp cstype deg bmat step parm trim hole scrv sp end con bevel c_interp d_interp "
    b"shadow_obj trace_obj ctech stech maplib usemap call csh fo".split()
)
_FREEFORM = frozenset((b"curv", b"curv2", b"surf"))
_KNOWN = _IGNORED | _FREEFORM | {b"o", b"g", b"usemtl", b"mtllib", b"l", b"p"}

# map_* options and how many arguments they take (min, max); numbers are consumed greedily.
_MAP_OPTIONS = {
    "-blendu": (1, 1), "-blendv": (1, 1), "-bm": (1, 1), "-boost": (1, 1), "-cc": (1, 1),
    "-clamp": (1, 1), "-imfchan": (1, 1), "-mm": (1, 2), "-o": (1, 3), "-s": (1, 3), "-t": (1, 3),
    "-texres": (1, 1), "-type": (1, 1), "-colorspace": (1, 1),
}
_IGNORED_MTL = frozenset(
    (
        "ks", "ni", "illum", "tf", "map_ka", "map_ks", "map_ns", "map_bump", "bump", "disp", "decal",
        "refl", "norm", "map_ke", "pc", "pcr", "ps", "aniso", "anisor", "map_pr", "map_pm", "map_ps",
        "sharpness", "pt", "tr_ior",
    )
)



@dataclass
class _Lines:
    """The normalised file as one byte string plus per-line start/end offsets and classes."""

    data: bytes
    starts: np.ndarray
    ends: np.ndarray
    classes: np.ndarray
    indented: bool = False

    def text(self, i: int) -> str:
        return _decode(self.data[self.starts[i] : self.ends[i]]).strip()


@dataclass
class _State:
    """What o/g/usemtl say after each non-geometry line (index 0: before the first one)."""

    other_lines: np.ndarray
    objects: list[str | None] = field(default_factory=lambda: [None])
    groups: list[str | None] = field(default_factory=lambda: [None])
    materials: list[str | None] = field(default_factory=lambda: [None])
    mtllibs: list[str] = field(default_factory=list)

    def at_line(self, line: int | np.ndarray) -> int | np.ndarray:
        """Index of the state in force at 0-based line ``line`` (vectorised)."""
        return np.searchsorted(self.other_lines, line)


class _Parser:
    """Parse one OBJ file's bytes into elements and faces, raising precise errors."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self.stem = path.stem or "object"
        self.warnings: list[str] = []
        self.lines = _split_lines(data)
        self.state = self._read_statements()

    # -- names and errors -------------------------------------------------------------------

    def object_name_at(self, line: int) -> str:
        k = int(self.state.at_line(line))
        return _raw_name(self.state.objects[k], self.state.groups[k], self.stem)

    def _quote(self, line: int) -> str:
        text = self.lines.text(line)
        return text if len(text) <= 80 else text[:77] + "..."

    def syntax_error(
        self, line: int, problem: str, *, hint: str = "fix that line, or export the file again"
    ) -> ImportFormatError:
        return ImportFormatError(
            f"line {line + 1}: '{self._quote(line)}' in object '{self.object_name_at(line)}': {problem}",
            where=self.where,
            hint=hint,
        )

    # -- statements other than v/vt/vn/f -------------------------------------------------------

    def _read_statements(self) -> _State:
        lines = self.lines
        other = np.flatnonzero(lines.classes == _OTHER)
        state = _State(other_lines=other)
        o = g = mat = None
        ignored_elements = 0
        freeform = 0
        unknown: dict[str, int] = {}
        known = 0
        for i in other.tolist():
            raw = _strip_comment(lines.data[lines.starts[i] : lines.ends[i]])
            parts = raw.split(None, 1)
            keyword = parts[0] if parts else b""
            rest = _decode(parts[1]).strip() if len(parts) > 1 else ""
            if keyword == b"o":
                o, g = rest or None, None
            elif keyword == b"g":
                g = rest or None
            elif keyword == b"usemtl":
                mat = rest or None
            elif keyword == b"mtllib":
                if rest:
                    state.mtllibs.append(rest)
            elif keyword in (b"l", b"p"):
                ignored_elements += 1
            elif keyword in _FREEFORM:
                freeform += 1
            elif keyword and keyword not in _IGNORED:
                unknown[_decode(keyword)] = unknown.get(_decode(keyword), 0) + 1
            known += keyword in _KNOWN
            state.objects.append(o)
            state.groups.append(g)
            state.materials.append(mat)
        has_geometry = bool(np.isin(lines.classes, (_V, _VT, _VN, _F)).any())
        if unknown and not known and not has_geometry:
            first = int(other[0])
            raise ImportFormatError(
                f"is not an OBJ file: line {first + 1} '{self._quote(first)}' is no OBJ statement, "
                "and the file holds no vertices or faces",
                where=self.where,
            )
        if ignored_elements:
            self.warnings.append(
                f"{self.where}: ignored {ignored_elements} line/point element(s) (l, p): only faces are imported"
            )
        if freeform:
            self.warnings.append(
                f"{self.where}: ignored {freeform} free-form curve/surface statement(s) (curv, surf): "
                "only polygon faces are imported"
            )
        if unknown:
            listed = ", ".join(f"'{k}' ({n}x)" for k, n in list(unknown.items())[:8])
            self.warnings.append(f"{self.where}: ignored unknown OBJ statement(s): {listed}")
        return state

    # -- v / vt / vn ---------------------------------------------------------------------------

    def elements(self, cls: int, counts_ok: tuple[int, int], width: int, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Parse every line of class ``cls``; return (values (N, width) float64, 0-based line numbers)."""
        line_ids = np.flatnonzero(self.lines.classes == cls)
        if line_ids.size == 0:
            return np.zeros((0, width)), line_ids
        text = _class_text(self.lines, cls, 2 if cls in (_VT, _VN) else 1)
        parsed = _bulk_floats(text, line_ids.size)
        if parsed is None:
            values, counts = self._slow_floats(line_ids, cls, counts_ok, what)
        else:
            values, counts = parsed
            bad = (counts < counts_ok[0]) | (counts > counts_ok[1])
            if bad.any():
                self._check_count(int(line_ids[np.argmax(bad)]), cls, int(counts[np.argmax(bad)]), counts_ok, what)
        if (counts == counts[0]).all():
            table = values.reshape(-1, int(counts[0]))
            out = np.zeros((line_ids.size, width))
            take = min(width, int(counts[0]))
            out[:, :take] = table[:, :take]
        else:
            offsets = np.cumsum(counts) - counts
            out = np.zeros((line_ids.size, width))
            for j in range(width):
                has = counts > j
                out[has, j] = values[offsets[has] + j]
        finite = np.isfinite(out).all(axis=1)
        if not finite.all():
            k = int(np.argmin(finite))
            line = int(line_ids[k])
            raise SceneError(
                f"line {line + 1}: '{self._quote(line)}' in object '{self.object_name_at(line)}': "
                f"{what} has a NaN or infinite value",
                where=self.where,
                hint="fix or remove that vertex in the exporting tool",
            )
        return out, line_ids

    def _check_count(self, line: int, cls: int, count: int, counts_ok: tuple[int, int], what: str) -> None:
        if not counts_ok[0] <= count <= counts_ok[1]:
            need = {_V: "x y z (optionally w, or r g b)", _VT: "u (and optionally v, w)", _VN: "x y z"}[cls]
            raise self.syntax_error(line, f"{what} has {count} value(s), expected {need}")

    def _slow_floats(
        self, line_ids: np.ndarray, cls: int, counts_ok: tuple[int, int], what: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-line parser: names the first line with a non-number or a wrong value count."""
        values: list[float] = []
        counts = np.zeros(line_ids.size, dtype=np.int64)
        for k, line in enumerate(line_ids.tolist()):
            tokens = _strip_comment(self.lines.data[self.lines.starts[line] : self.lines.ends[line]]).split()[1:]
            for token in tokens:
                if not _FLOAT_RE.fullmatch(token):
                    raise self.syntax_error(line, f"{what} coordinate '{_decode(token)}' is not a number")
                values.append(float(token))
            self._check_count(line, cls, len(tokens), counts_ok, what)
            counts[k] = len(tokens)
        return np.asarray(values, dtype=np.float64), counts

    # -- faces ---------------------------------------------------------------------------------

    def faces(self) -> _Faces:
        line_ids = np.flatnonzero(self.lines.classes == _F)
        if line_ids.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return _Faces(line_ids, empty, empty, empty, empty, np.zeros(0, bool), np.zeros(0, bool))
        text = _class_text(self.lines, _F, 1)
        parsed = _bulk_faces(text, line_ids.size)
        if parsed is None:
            parsed = self._slow_faces(line_ids)
        counts, cv, cvt, cvn, has_vt, has_vn = parsed
        short = counts < 3
        if short.any():
            k = int(np.argmax(short))
            raise self.syntax_error(
                int(line_ids[k]), f"face has {int(counts[k])} vertex(es); a face needs at least 3"
            )
        return _Faces(line_ids, counts, cv, cvt, cvn, has_vt, has_vn)

    def _slow_faces(self, line_ids: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per-line face parser: accepts what the bulk parser does plus ``v/vt/``-style corners."""
        counts = np.zeros(line_ids.size, dtype=np.int64)
        corners: list[tuple[int, int, int, bool, bool]] = []
        for k, line in enumerate(line_ids.tolist()):
            tokens = _strip_comment(self.lines.data[self.lines.starts[line] : self.lines.ends[line]]).split()[1:]
            if len(tokens) < 3:
                raise self.syntax_error(line, f"face has {len(tokens)} vertex(es); a face needs at least 3")
            for token in tokens:
                fields = token.split(b"/")
                if len(fields) > 3 or not fields[0]:
                    raise self.syntax_error(
                        line, f"face corner '{_decode(token)}' is not of the form v, v/vt, v//vn or v/vt/vn"
                    )
                fields += [b""] * (3 - len(fields))
                for value in fields:
                    if value and not _INT_RE.fullmatch(value):
                        raise self.syntax_error(
                            line, f"face corner '{_decode(token)}': '{_decode(value)}' is not an integer index"
                        )
                v, vt, vn = (int(value) if value else 0 for value in fields)
                corners.append((v, vt, vn, bool(fields[1]), bool(fields[2])))
            counts[k] = len(tokens)
        v, vt, vn, has_vt, has_vn = (np.asarray(column) for column in zip(*corners, strict=True))
        return counts, v.astype(np.int64), vt.astype(np.int64), vn.astype(np.int64), has_vt, has_vn

    def resolve(
        self, raw: np.ndarray, present: np.ndarray | None, faces: _Faces, element_lines: np.ndarray, what: str
    ) -> np.ndarray:
        """OBJ indices (1-based, negative = relative) to 0-based ones; -1 where absent."""
        total = element_lines.size
        face_of_corner = faces.face_of_corner
        resolved = raw - 1
        negative = raw < 0
        if negative.any():
            before = np.searchsorted(element_lines, faces.lines)[face_of_corner]
            resolved = np.where(negative, before + raw, resolved)
        bad = (resolved < 0) | (resolved >= total)
        if present is not None:
            bad &= present
            resolved = np.where(present, resolved, -1)
        if bad.any():
            c = int(np.argmax(bad))
            line = int(faces.lines[face_of_corner[c]])
            index = int(raw[c])
            if index == 0:
                problem = f"{what} index 0 is invalid (OBJ indices start at 1)"
            elif index < 0:
                before = int(np.searchsorted(element_lines, line))
                problem = f"relative {what} index {index} reaches before the first {what} ({before} defined above this line)"
            else:
                problem = f"{what} index {index} is out of range (the file defines {total})"
            raise self.syntax_error(line, problem)
        return resolved


@dataclass
class _Faces:
    lines: np.ndarray  # (F,) 0-based line of each face
    counts: np.ndarray  # (F,) corners per face
    v: np.ndarray  # (C,) raw OBJ indices per corner
    vt: np.ndarray
    vn: np.ndarray
    has_vt: np.ndarray  # (C,) bool
    has_vn: np.ndarray

    @cached_property
    def face_of_corner(self) -> np.ndarray:
        return np.repeat(np.arange(self.counts.size), self.counts)

    def triangulate(self) -> tuple[np.ndarray, np.ndarray]:
        """Fan-triangulate: (T, 3) corner indices and (T,) face of each triangle."""
        n_faces = self.counts.size
        if (self.counts == 3).all():
            return np.arange(3 * n_faces, dtype=np.int64).reshape(-1, 3), np.arange(n_faces)
        n_tri = self.counts - 2
        tri_face = np.repeat(np.arange(n_faces), n_tri)
        first = (np.cumsum(self.counts) - self.counts)[tri_face]
        k = np.arange(tri_face.size) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
        return np.stack([first, first + k + 1, first + k + 2], axis=1), tri_face


# -- bulk parsing helpers ------------------------------------------------------------------------


def _split_lines(data: bytes) -> _Lines:
    """Normalise line ends, leading blanks and continuations; classify every line."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if b"\\\n" in data:
        data = _join_continuations(data)
    if not data.endswith(b"\n"):
        data += b"\n"
    lines = _classify(data)
    if lines.indented:
        lines = _classify(re.sub(rb"(?m)^[ \t\x0b\x0c]+", b"", data))
    return lines


def _classify(data: bytes) -> _Lines:
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts
    last = buf.size - 1

    def byte_at(offset: int) -> np.ndarray:
        return np.where(lengths > offset, buf[np.minimum(starts + offset, last)], 10)

    b0, b1, b2 = byte_at(0), byte_at(1), byte_at(2)
    sep1, sep2 = _WS[b1], _WS[b2]
    classes = np.full(ends.size, _OTHER, dtype=np.uint8)
    classes[(lengths == 0) | (b0 == ord("#"))] = _BLANK
    is_v = b0 == ord("v")
    classes[is_v & sep1] = _V
    classes[is_v & (b1 == ord("t")) & sep2] = _VT
    classes[is_v & (b1 == ord("n")) & sep2] = _VN
    classes[(b0 == ord("f")) & sep1] = _F
    indented = bool(_WS[b0[lengths > 0]].any())
    return _Lines(data=data, starts=starts, ends=ends, classes=classes, indented=indented)


def _join_continuations(data: bytes) -> bytes:
    """Join lines ending in a backslash, keeping the line count (blank lines fill in).

    A comment ending in a backslash (a Windows folder, say) does not swallow the next line.
    """
    out: list[bytes] = []
    pending: list[bytes] = []
    for line in data.split(b"\n"):
        if line.endswith(b"\\") and not (line.lstrip().startswith(b"#") and not pending):
            pending.append(line[:-1])
            continue
        out.append(b" ".join([*pending, line]))
        out.extend([b""] * len(pending))
        pending = []
    if pending:
        out.append(b" ".join(pending))
        out.extend([b""] * (len(pending) - 1))
    return b"\n".join(out)


def _class_text(lines: _Lines, cls: int, keyword_len: int) -> bytes:
    """All lines of one class, keyword blanked out, each ending in a newline; no comments."""
    mask = np.concatenate(([False], lines.classes == cls, [False]))
    edges = np.flatnonzero(mask[1:] != mask[:-1]).reshape(-1, 2)  # runs of consecutive lines
    data = lines.data
    text = b"".join(data[lines.starts[a] : lines.ends[b - 1] + 1] for a, b in edges.tolist())
    chars = np.frombuffer(text, dtype=np.uint8).copy()
    line_starts = np.cumsum(lines.ends[mask[1:-1]] - lines.starts[mask[1:-1]] + 1)
    line_starts = np.concatenate(([0], line_starts[:-1]))
    for j in range(keyword_len):
        chars[line_starts + j] = 32
    text = chars.tobytes()
    if b"#" in text:
        text = re.sub(rb"#[^\n]*", b"", text)
    return text


def _token_layout(b: np.ndarray, n_lines: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token start and end offsets, and tokens per line, of newline-terminated text ``b``.

    Only for text already checked to hold no control bytes other than whitespace.
    """
    ws = b <= 32
    start = ~ws
    start[1:] &= ws[:-1]
    end = ~ws
    end[:-1] &= ws[1:]
    tokens = np.flatnonzero(start)
    line_starts = np.concatenate(([0], np.flatnonzero(b == 10)[:-1] + 1))
    counts = np.diff(np.searchsorted(tokens, line_starts), append=tokens.size)
    return tokens, np.flatnonzero(end) + 1, counts


def _fromstring(text: bytes, dtype: type) -> np.ndarray | None:
    """numpy's C text-to-number parser; None if it stops before the end."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return np.fromstring(text, dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


_FLOAT_CHARS = b"0123456789+-.eE \t\n\r\x0b\x0c"
_FACE_CHARS = b"0123456789+-/ \t\n\r\x0b\x0c"


def _bulk_floats(text: bytes, n_lines: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(values, counts per line) for plain decimal numbers; None to fall back to the slow path."""
    if text.translate(None, _FLOAT_CHARS):
        return None  # letters (nan, inf, typos) or control bytes: the slow path names the line
    tokens, _, counts = _token_layout(np.frombuffer(text, dtype=np.uint8), n_lines)
    values = _fromstring(text, np.float64)
    if values is None or values.size != tokens.size:
        return None
    return values, counts


def _bulk_faces(text: bytes, n_lines: int) -> tuple[np.ndarray, ...] | None:
    """Parse all face lines at once; None when any corner is not a clean v[/vt][/vn] form.

    After the byte checks every corner is fields of ``[+-]?digits`` joined by '/'; the common
    case (every corner in the same form) is then verified by where the slashes fall, without
    counting per corner.
    """
    if text.translate(None, _FACE_CHARS):
        return None
    b = np.frombuffer(text, dtype=np.uint8)
    if b"-" in text or b"+" in text:
        signs = np.flatnonzero((b == ord("+")) | (b == ord("-")))
        after, before = b[signs + 1], b[signs - 1]  # text starts with the blanked keyword, ends with \n
        if not (((after >= 48) & (after <= 57)).all() and ((before <= 32) | (before == ord("/"))).all()):
            return None
    tokens, token_ends, counts = _token_layout(b, n_lines)
    n = tokens.size
    slashes = np.flatnonzero(b == ord("/")) if b"/" in text else np.zeros(0, dtype=np.int64)
    form = _uniform_form(tokens, token_ends, slashes, text.count(b"//"))
    if form is None:
        return _mixed_faces(b, text, tokens, counts, slashes)
    fields = {"v": 1, "v/vt": 2, "v//vn": 2, "v/vt/vn": 3}[form]
    values = _fromstring(text.replace(b"/", b" ") if slashes.size else text, np.int64)
    if values is None or values.size != n * fields:
        return None
    table = values.reshape(n, fields)
    zeros = np.zeros(n, dtype=np.int64)
    has_vt = np.full(n, form in ("v/vt", "v/vt/vn"))
    has_vn = np.full(n, form in ("v//vn", "v/vt/vn"))
    cvt = table[:, 1] if has_vt.any() else zeros
    cvn = table[:, -1] if has_vn.any() else zeros
    return counts, table[:, 0], cvt, cvn, has_vt, has_vn


def _uniform_form(tokens: np.ndarray, ends: np.ndarray, slashes: np.ndarray, n_double: int) -> str | None:
    """The one corner form all tokens share, or None. Fields hold no '/', so it is enough to
    check that the k-th slashes of every token lie inside it with no empty field."""
    n = tokens.size
    if slashes.size == 0:
        return "v"
    if slashes.size == n and n_double == 0:
        return "v/vt" if ((slashes > tokens) & (slashes < ends - 1)).all() else None
    if slashes.size == 2 * n:
        first, second = slashes[0::2], slashes[1::2]
        inside = ((first > tokens) & (second < ends - 1)).all()
        if inside and n_double == 0 and (second > first + 1).all():
            return "v/vt/vn"
        if inside and n_double == n and (second == first + 1).all():
            return "v//vn"
    return None


def _mixed_faces(
    b: np.ndarray, text: bytes, tokens: np.ndarray, counts: np.ndarray, slashes: np.ndarray
) -> tuple[np.ndarray, ...] | None:
    """Corners in several forms (some objects with UVs, some without): classify each corner."""
    n = tokens.size

    def per_token(positions: np.ndarray) -> np.ndarray:
        return np.bincount(np.searchsorted(tokens, positions, side="right") - 1, minlength=n)

    n_slash = per_token(slashes)
    n_double = per_token(slashes[:-1][np.diff(slashes) == 1])
    digit = (b >= 48) & (b <= 57)
    run = digit.copy()
    run[1:] &= ~digit[:-1]
    n_numbers = per_token(np.flatnonzero(run))
    form_vt = (n_slash == 1) & (n_numbers == 2)
    form_vn = (n_slash == 2) & (n_numbers == 2) & (n_double == 1)
    form_vtn = (n_slash == 2) & (n_numbers == 3)
    if not (((n_slash == 0) & (n_numbers == 1)) | form_vt | form_vn | form_vtn).all():
        return None
    values = _fromstring(text.replace(b"/", b" "), np.int64)
    if values is None or values.size != int(n_numbers.sum()):
        return None
    offsets = np.cumsum(n_numbers) - n_numbers
    has_vt = form_vt | form_vtn
    has_vn = form_vn | form_vtn
    cvt = np.where(has_vt, values[np.minimum(offsets + 1, values.size - 1)], 0)
    cvn = np.where(has_vn, values[offsets + n_numbers - 1], 0)
    return counts, values[offsets], cvt, cvn, has_vt, has_vn


# -- small helpers -------------------------------------------------------------------------------


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _strip_comment(raw: bytes) -> bytes:
    cut = raw.find(b"#")
    return raw if cut < 0 else raw[:cut]


def _raw_name(o: str | None, g: str | None, stem: str) -> str:
    if o and g and g != o:
        return f"{o}/{g}"
    return o or g or stem


def _unique_names(names: list[str]) -> list[str]:
    used: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 0
        while candidate in used:
            n += 1
            candidate = f"{name}.{n:03d}"
        used.add(candidate)
        out.append(candidate)
    return out


def _compact_key(columns: list[np.ndarray], sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows of stacked index columns (-1 allowed): (first row index of each, inverse)."""
    span = 1
    for size in sizes:
        span *= size + 1
    if span < 2**62:
        key = np.zeros(columns[0].shape, dtype=np.int64)
        for column, size in zip(columns, sizes, strict=True):
            key = key * (size + 1) + (column + 1)
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    else:  # pragma: no cover - needs ~10^6 of each element kind at once
        _, first, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


# -- MTL -----------------------------------------------------------------------------------------


@dataclass
class _MtlEntry:
    name: str
    library: Path
    line: int
    statements: list[tuple[int, str, str]] = field(default_factory=list)


def _find_file(name: str, base: Path) -> Path | None:
    """Find a file an OBJ/MTL names: as written (relative to ``base``), with / for \\, or by its
    bare name in ``base`` (exporters often write the absolute path of the artist's machine)."""
    candidates = [Path(name), Path(name.replace("\\", "/"))]
    candidates.append(Path(candidates[-1].name))
    for candidate in candidates:
        full = candidate if candidate.is_absolute() else base / candidate
        if full.is_file():
            return full
    return None


def _mtllib_names(rest: str, base: Path) -> list[str]:
    """File names in an ``mtllib`` statement: several, or one with spaces in it."""
    if _find_file(rest, base):
        return [rest]
    names: list[str] = []
    current: list[str] = []
    for token in rest.split():
        current.append(token)
        if token.lower().endswith(".mtl"):
            names.append(" ".join(current))
            current = []
    if current:
        names.append(" ".join(current))
    return names


def _read_mtl(path: Path, entries: dict[str, _MtlEntry], warn: list[str]) -> None:
    raw = path.read_bytes()
    current: _MtlEntry | None = None
    for number, line in enumerate(_decode(raw).splitlines(), start=1):
        line = _MTL_COMMENT.sub("", line).strip()
        if not line:
            continue
        parts = line.split(None, 1)
        keyword = parts[0].lower()
        rest = parts[1].strip() if len(parts) > 1 else ""
        if keyword == "newmtl":
            name = rest or "default"
            if name in entries:
                warn.append(
                    f"{path}: line {number}: material '{name}' is defined again "
                    f"(first in {entries[name].library.name}, line {entries[name].line}); the first one is used"
                )
                current = None
                continue
            current = entries[name] = _MtlEntry(name=name, library=path, line=number)
        elif current is not None:
            current.statements.append((number, keyword, rest))


def _map_path(rest: str) -> str:
    """The file name of a ``map_*`` statement, options (``-s 1 1 1``, ``-bm 0.5``...) skipped."""
    matches = list(re.finditer(r"\S+", rest))
    i = 0
    while i < len(matches) and matches[i].group().lower() in _MAP_OPTIONS:
        lo, hi = _MAP_OPTIONS[matches[i].group().lower()]
        i += 1
        taken = 0
        while i < len(matches) and taken < hi:
            arg = matches[i].group()
            if taken >= lo and not _is_number(arg):
                break
            i += 1
            taken += 1
    if i >= len(matches):
        return ""
    name = rest[matches[i].start() :].strip()
    if len(name) > 1 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1]
    return name


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _MaterialBuilder:
    """Turn MTL entries into Materials, loading (and sharing) their textures."""

    def __init__(self, warn: list[str]) -> None:
        self.warn = warn
        self.textures: dict[Path, Texture | None] = {}

    def build(self, entry: _MtlEntry) -> Material:
        where = f"{entry.library}: material '{entry.name}'"
        kd = ka = ke = None
        d = tr = ns = pm = pr = None
        map_kd = map_d = ""
        for number, key, rest in entry.statements:
            here = f"{where}, line {number}"
            if key in ("kd", "ka", "ke"):
                color = self._color(rest, here, key)
                if color is not None:
                    kd, ka, ke = (color, ka, ke) if key == "kd" else (kd, color, ke) if key == "ka" else (kd, ka, color)
            elif key in ("d", "tr", "ns", "pm", "pr"):
                tokens = [t for t in rest.split() if t.lower() != "-halo"]
                value = _float_or_none(tokens[0]) if tokens else None
                if value is None or not math.isfinite(value):
                    self.warn.append(f"{here}: '{key} {rest}' is not a number; ignored")
                    continue
                if key == "d":
                    d = value
                elif key == "tr":
                    tr = value
                elif key == "ns":
                    ns = value
                elif key == "pm":
                    pm = value
                else:
                    pr = value
            elif key in ("map_kd", "map_d"):
                name = _map_path(rest)
                if not name:
                    self.warn.append(f"{here}: '{key}' names no file; ignored")
                elif key == "map_kd":
                    map_kd = name
                else:
                    map_d = name
            elif key not in _IGNORED_MTL:
                log.debug("%s: ignored MTL statement '%s'", here, key)

        rgb = (0.8, 0.8, 0.8) if kd is None else kd
        if any(c > 1.0 for c in rgb) or any(c < 0.0 for c in rgb):
            clipped = tuple(min(max(c, 0.0), 1.0) for c in rgb)
            self.warn.append(f"{where}: Kd {_fmt(rgb)} is outside 0..1; clipped to {_fmt(clipped)}")
            rgb = clipped

        alpha = 1.0
        if d is not None:
            alpha = d
        elif tr is not None:
            alpha = 1.0 - tr
            if alpha <= 0.0:
                self.warn.append(
                    f"{where}: 'Tr {tr:g}' would make the material invisible; read as opaque "
                    "(some exporters write Tr as opacity)"
                )
                alpha = 1.0
        if not 0.0 <= alpha <= 1.0:
            self.warn.append(f"{where}: opacity {alpha:g} is outside 0..1; clipped")
            alpha = min(max(alpha, 0.0), 1.0)

        emission = (0.0, 0.0, 0.0)
        if ke is not None:
            emission = tuple(max(c, 0.0) for c in ke)
        elif ka is not None and max(ka) > 1.0:
            emission = tuple(max(c, 0.0) for c in ka)
            self.warn.append(
                f"{where}: emitter inferred from Ka {_fmt(ka)} > 1 (no Ke given; old Cornell box files "
                "mark lights this way): emission colour set to Ka"
            )

        roughness = 0.5
        if ns is not None:
            roughness = math.sqrt(2.0 / (ns + 2.0)) if ns > -2.0 else 1.0
        if pr is not None:
            roughness = pr
        roughness = min(max(roughness, 0.0), 1.0)
        metallic = 0.0 if pm is None else min(max(pm, 0.0), 1.0)

        texture = self._texture(map_kd, entry, "map_Kd") if map_kd else None
        alpha_mode = "BLEND" if alpha < 1.0 else "OPAQUE"
        if map_d:
            same = map_kd and _find_file(map_kd, entry.library.parent) == _find_file(map_d, entry.library.parent)
            alpha_map = texture if same else self._texture(map_d, entry, "map_d")
            if alpha_map is not None:
                if not same:
                    texture = _with_alpha(texture, alpha_map, entry.name)
                if alpha_mode == "OPAQUE":
                    alpha_mode = "MASK"
        return Material(
            name=entry.name,
            base_color=(*rgb, alpha),
            base_color_texture=texture,
            metallic=metallic,
            roughness=roughness,
            emission_color=emission,
            emission_strength=1.0,
            alpha_mode=alpha_mode,
        )

    def _color(self, rest: str, here: str, key: str) -> tuple[float, float, float] | None:
        tokens = rest.split()
        if tokens and tokens[0].lower() in ("spectral", "xyz"):
            self.warn.append(f"{here}: '{key} {tokens[0]}' colours are not supported; ignored")
            return None
        values = [_float_or_none(t) for t in tokens[:3]]
        if len(values) not in (1, 3) or any(v is None or not math.isfinite(v) for v in values):
            self.warn.append(f"{here}: '{key} {rest}' is not 1 or 3 numbers; ignored")
            return None
        if len(values) == 1:
            values *= 3
        return (values[0], values[1], values[2])  # type: ignore[return-value]

    def _texture(self, name: str, entry: _MtlEntry, key: str) -> Texture | None:
        path = _find_file(name, entry.library.parent)
        if path is None:
            self.warn.append(
                f"{entry.library}: material '{entry.name}': texture '{name}' ({key}) not found "
                f"(looked in {entry.library.parent}); the material is used without it"
            )
            return None
        if path not in self.textures:
            from engine.scene.images import load_image

            try:
                self.textures[path] = load_image(path, name=path.name)
            except InputError as exc:
                self.warn.append(
                    f"{entry.library}: material '{entry.name}': texture '{name}' ({key}) cannot be read ({exc}); "
                    "the material is used without it"
                )
                self.textures[path] = None
        return self.textures[path]


def _with_alpha(color: Texture | None, alpha_map: Texture, material: str) -> Texture:
    """The colour texture (or white) with its alpha replaced by ``alpha_map`` (resized nearest)."""
    a = alpha_map.pixels
    alpha = a[:, :, -1] if a.shape[2] in (2, 4) else a[:, :, 0]
    if color is None:
        rgb = np.full((*alpha.shape, 3), 255, dtype=np.uint8)
        name = alpha_map.name
    else:
        p = color.pixels
        rgb = p[:, :, :3] if p.shape[2] >= 3 else np.repeat(p[:, :, :1], 3, axis=2)
        name = color.name
    h, w = rgb.shape[:2]
    if alpha.shape != (h, w):
        rows = (np.arange(h) * alpha.shape[0]) // h
        cols = (np.arange(w) * alpha.shape[1]) // w
        alpha = alpha[rows][:, cols]
    if rgb.dtype != alpha.dtype:
        rgb = rgb.astype(np.float32) / (255.0 if rgb.dtype == np.uint8 else 1.0)
        alpha = alpha.astype(np.float32) / (255.0 if alpha.dtype == np.uint8 else 1.0)
    pixels = np.concatenate([rgb, alpha[:, :, None]], axis=2)
    return Texture(name=f"{name}+alpha", pixels=pixels, colorspace="srgb", source=f"{material}: map_Kd + map_d")


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _fmt(values: tuple[float, ...]) -> str:
    return " ".join(f"{v:g}" for v in values)


# -- entry point ---------------------------------------------------------------------------------


def load_obj(path: str | Path, *, unit: str | None = None) -> Scene:
    """Read a Wavefront .obj file (and its .mtl libraries and textures) into a Scene.

    ``unit`` names the file's length unit ("mm", "m", ...); OBJ carries none, so without it
    ``meters_per_unit`` is None. Raises :class:`ImportFormatError` or :class:`SceneError`
    naming the file, line and object on malformed input.
    """
    path = Path(path)
    unit_name, meters_per_unit = ("unknown", None) if unit is None else parse_unit(unit)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"cannot read file ({exc.strerror or exc})", where=str(path)) from None

    parser = _Parser(data, path)
    warn = parser.warnings
    v, v_lines = parser.elements(_V, _V_COUNTS, 3, "vertex")
    vt, vt_lines = parser.elements(_VT, _VT_COUNTS, 2, "texture coordinate")
    vn, vn_lines = parser.elements(_VN, _VN_COUNTS, 3, "normal")
    faces = parser.faces()

    common = {
        "name": path.stem or "scene",
        "meters_per_unit": meters_per_unit,
        "unit_name": unit_name,
        "source": str(path),
    }
    if faces.counts.size == 0:
        if v.shape[0]:
            warn.append(f"{path}: {v.shape[0]} vertices but no faces: the scene is empty")
        return Scene(objects=(), warnings=tuple(warn), **common)

    cv = parser.resolve(faces.v, None, faces, v_lines, "vertex")
    cvt = parser.resolve(faces.vt, faces.has_vt, faces, vt_lines, "texture coordinate")
    cvn = parser.resolve(faces.vn, faces.has_vn, faces, vn_lines, "normal")

    # Object and material of every face, from the o/g/usemtl state in force at its line.
    state = parser.state
    face_state = state.at_line(faces.lines)
    used_states = np.unique(face_state)
    object_ids: dict[tuple[str | None, str | None], int] = {}
    material_ids: dict[str, int] = {}  # usemtl name; "default" before any usemtl
    state_object = np.zeros(len(state.objects), dtype=np.int64)
    state_material = np.zeros(len(state.objects), dtype=np.int64)
    for k in used_states.tolist():
        key = (state.objects[k], state.groups[k])
        state_object[k] = object_ids.setdefault(key, len(object_ids))
        state_material[k] = material_ids.setdefault(state.materials[k] or DEFAULT_MATERIAL.name, len(material_ids))
    face_object = state_object[face_state]
    face_material = state_material[face_state]

    named = {state.materials[k] for k in used_states.tolist()} - {None}
    materials = _materials(list(material_ids), named, state.mtllibs, path, warn)
    names = _unique_names([_raw_name(o, g, parser.stem) for o, g in object_ids])

    tri_corners, tri_face = faces.triangulate()
    tri_object = face_object[tri_face]
    if len(object_ids) == 1:
        groups = [np.arange(tri_face.size)]
    else:
        order = np.argsort(tri_object, kind="stable")
        bounds = np.searchsorted(tri_object[order], np.arange(len(object_ids) + 1))
        groups = [order[bounds[j] : bounds[j + 1]] for j in range(len(object_ids))]

    objects = []
    for name, tris in zip(names, groups, strict=True):
        corners = tri_corners[tris].reshape(-1)
        ov = cv[corners]
        ovt = cvt[corners]
        ovn = cvn[corners]
        with_uv = bool((ovt >= 0).all())
        with_normals = bool((ovn >= 0).all())
        if not with_uv and (ovt >= 0).any():
            warn.append(f"{path}: object '{name}': some face corners have no UV; UVs dropped for the object")
        if not with_normals and (ovn >= 0).any():
            warn.append(f"{path}: object '{name}': some face corners have no normal; normals dropped for the object")
        columns, sizes = [ov], [v.shape[0]]
        if with_uv:
            columns.append(ovt)
            sizes.append(vt.shape[0])
        if with_normals:
            columns.append(ovn)
            sizes.append(vn.shape[0])
        first, inverse = _compact_key(columns, sizes)
        objects.append(
            MeshObject(
                name=name,
                positions=v[ov[first]].astype(np.float32),
                triangles=inverse.reshape(-1, 3).astype(np.int32),
                normals=vn[ovn[first]].astype(np.float32) if with_normals else None,
                uvs={UV_SET: vt[ovt[first]].astype(np.float32)} if with_uv else {},
                material_indices=face_material[tri_face[tris]].astype(np.int32),
                transform=Y_UP_TO_Z_UP,
            )
        )
    log.debug("%s: %d objects, %d triangles", path, len(objects), tri_face.size)
    return Scene(objects=tuple(objects), materials=tuple(materials), warnings=tuple(warn), **common)


def _materials(
    used: list[str], named: set[str | None], mtllibs: list[str], obj_path: Path, warn: list[str]
) -> list[Material]:
    """Materials for the ``used`` names in order; ``named`` are those a usemtl statement gave
    (the others are "default": faces before any usemtl)."""
    entries: dict[str, _MtlEntry] = {}
    missing_library = False
    seen: set[Path] = set()
    for statement in mtllibs:
        for name in _mtllib_names(statement, obj_path.parent):
            library = _find_file(name, obj_path.parent)
            if library is None:
                missing_library = True
                warn.append(
                    f"{obj_path}: material library '{name}' not found (looked in {obj_path.parent}); "
                    "its materials get default settings"
                )
                continue
            if library in seen:
                continue
            seen.add(library)
            try:
                _read_mtl(library, entries, warn)
            except OSError as exc:
                missing_library = True
                warn.append(
                    f"{obj_path}: material library '{name}' cannot be read ({exc.strerror or exc}); "
                    "its materials get default settings"
                )
    builder = _MaterialBuilder(warn)
    out: list[Material] = []
    for name in used:
        if name in entries:
            out.append(builder.build(entries[name]))
        elif name not in named:
            out.append(DEFAULT_MATERIAL)
        else:
            if not missing_library:
                source = "the file names no material library" if not mtllibs else "no material library defines it"
                warn.append(f"{obj_path}: usemtl '{name}': {source}; a default material of that name is used")
            out.append(Material(name=name))
    return out
