"""Avatar uploads: the type is decided by decoding the content with Pillow (never by the
file name or the browser's Content-Type), the size and dimensions are bounded, and the file
gets a random name under FEDI_MEDIA_DIR/avatars."""

from __future__ import annotations

import io
import secrets
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from fedi.errors import ValidationError

MAX_BYTES = 2 * 1024 * 1024
MAX_SIDE = 4096
TOO_LARGE = f"the image is too large: at most {MAX_BYTES // (1024 * 1024)} MiB"
# Pillow format → (extension, media type). Only these are served.
FORMATS = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "GIF": ("gif", "image/gif"),
    "WEBP": ("webp", "image/webp"),
}
MEDIA_TYPES = {ext: media for ext, media in FORMATS.values()}
BAD = "the file is not an image fedi accepts: upload a PNG, JPEG, GIF or WebP picture"


def check(data: bytes) -> str:
    """The extension for this image, or ValidationError saying what is wrong."""
    if not data:
        raise ValidationError("choose an image file to upload")
    if len(data) > MAX_BYTES:
        raise ValidationError(TOO_LARGE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind = image.format
                width, height = image.size
                image.verify()  # reads the whole file: a truncated or corrupt one fails here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValidationError(BAD) from None
    if kind not in FORMATS:
        raise ValidationError(BAD)
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ValidationError(f"the image is too big: at most {MAX_SIDE}×{MAX_SIDE} pixels")
    return FORMATS[kind][0]


def store(media_dir: Path, data: bytes) -> str:
    """Check and save the image; its new file name."""
    ext = check(data)
    folder = media_dir / "avatars"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{secrets.token_urlsafe(18)}.{ext}"
    (folder / name).write_bytes(data)
    return name


def path_of(media_dir: Path, name: str) -> tuple[Path, str] | None:
    """The stored file for a served name, and its media type; None for anything else."""
    stem, _, ext = name.partition(".")
    if ext not in MEDIA_TYPES or not stem or not all(c.isalnum() or c in "-_" for c in stem):
        return None
    path = media_dir / "avatars" / name
    return (path, MEDIA_TYPES[ext]) if path.is_file() else None
