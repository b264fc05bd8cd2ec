"""Texture image decoding and encoding (Pillow, imported lazily: it is not a core dependency)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from engine.errors import ImportFormatError, InputError
from engine.scene.model import Texture


def _pil():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the install
        raise InputError(
            "decoding texture images needs Pillow", hint="pip install 'optimizer-engine[io]'"
        ) from None
    return Image


def decode_image(data: bytes, *, name: str, source: str = "", colorspace: str = "srgb") -> Texture:
    """Decode PNG/JPEG/... bytes into a Texture (uint8, 1..4 channels)."""
    image_module = _pil()
    try:
        with image_module.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode not in ("L", "LA", "RGB", "RGBA"):
                has_alpha = "A" in image.getbands() or "transparency" in image.info
                image = image.convert("RGBA" if has_alpha else "RGB")
            pixels = np.asarray(image, dtype=np.uint8)
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise ImportFormatError(f"cannot decode image ({exc})", where=source or name) from None
    return Texture(name=name, pixels=pixels, colorspace=colorspace, source=source)


def load_image(path: str | Path, *, name: str | None = None, colorspace: str = "srgb") -> Texture:
    """Read and decode an image file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"cannot read image ({exc.strerror or exc})", where=str(path)) from None
    return decode_image(data, name=name or path.stem, source=str(path), colorspace=colorspace)


def encode_png(texture: Texture) -> bytes:
    """Encode a Texture as PNG bytes (float textures are clipped to 0..1 and quantised)."""
    image_module = _pil()
    pixels = texture.pixels
    if pixels.dtype != np.uint8:
        pixels = (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    array = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
    buffer = io.BytesIO()
    image_module.fromarray(np.ascontiguousarray(array), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()
