"""The one image check: which encoded images the project accepts, and whether bytes are one.

Accepted formats, one table (:data:`FORMATS`): JPEG, PNG and WebP. These are what cameras,
phones and browsers save, what the model's decoder reads, and what the service tells
volunteers to upload; each has the file extension and content type it is stored under in
lakeFS. GIF, BMP, TIFF and the rest are refused everywhere.

:func:`check_image` decodes the bytes (a JPEG at 1/8 scale: the DCT still reads every byte of
the entropy-coded data, so truncation and corruption show, at a fraction of the cost) and
returns an :class:`ImageInfo`, or raises :class:`ImageError` saying what is wrong. Size and
pixel limits are parameters: the service has them, the data set reader has none.

Callers: the Kaggle reader (every pool image) and the bento's upload checks (each uploaded
photo) call :func:`check_image`; versioning calls :func:`identify` (the extension and content
type of each committed image, from its signature bytes, as the reader decoded it already).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from PIL import Image, UnidentifiedImageError

__all__ = ["FORMATS", "ImageError", "ImageFormat", "ImageInfo", "check_image", "identify"]


@dataclass(frozen=True)
class ImageFormat:
    name: str  # as people write it
    extension: str  # of the stored file, with the dot
    content_type: str
    magic: bytes  # the file's first bytes
    magic_at_8: bytes = b""  # and bytes 8..12 (WebP is a RIFF container)


# PIL's format name -> the format. The one list of accepted formats.
FORMATS: Mapping[str, ImageFormat] = MappingProxyType(
    {
        "JPEG": ImageFormat("JPEG", ".jpg", "image/jpeg", b"\xff\xd8\xff"),
        "PNG": ImageFormat("PNG", ".png", "image/png", b"\x89PNG\r\n\x1a\n"),
        "WEBP": ImageFormat("WebP", ".webp", "image/webp", b"RIFF", b"WEBP"),
    }
)
_NAMES = [f.name for f in FORMATS.values()]


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`check_image` found: the format (a key of :data:`FORMATS`) and the size."""

    format: str
    extension: str
    content_type: str
    size: tuple[int, int]  # (width, height) in pixels


class ImageError(ValueError):
    """Bytes that are not an accepted, decodable image.

    ``problem`` reads after the name of the file (``"x.jpg: is empty (0 bytes)"``); the
    message itself is ``"the file " + problem``.
    """

    def __init__(self, problem: str) -> None:
        super().__init__(f"the file {problem}")
        self.problem = problem


def identify(data: bytes) -> ImageFormat:
    """The accepted format ``data`` starts like (its signature bytes), without decoding it:
    what versioning needs to name and type an image the reader has already checked."""
    for kind in FORMATS.values():
        if data.startswith(kind.magic) and data[8:].startswith(kind.magic_at_8):
            return kind
    raise ImageError(f"does not start like a {' or '.join(_NAMES)} file")


def check_image(
    data: bytes, *, max_bytes: int | None = None, max_pixels: int | None = None
) -> ImageInfo:
    """Check that ``data`` is a whole JPEG, PNG or WebP image within the limits (if given).

    Raises :class:`ImageError` when it is empty, over ``max_bytes``, not an image, of another
    format, over ``max_pixels`` (width x height), or damaged or truncated.
    """
    if not data:
        raise ImageError("is empty (0 bytes)")
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageError(
            f"is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB per image"
        )
    try:
        with warnings.catch_warnings():
            # e.g. DecompressionBombWarning: pixels are checked against max_pixels below.
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format or "unknown"
                kind = FORMATS.get(fmt)
                if kind is None:
                    raise ImageError(f"is a {fmt} image, not {' or '.join(_NAMES)}")
                size = im.size
                if max_pixels is not None and size[0] * size[1] > max_pixels:
                    raise ImageError(
                        f"is {size[0]}x{size[1]} pixels; the limit is "
                        f"{max_pixels // 1_000_000} megapixels"
                    )
                if fmt == "JPEG":
                    im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
                im.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            "is not an image PIL can identify (corrupt, or not a "
            f"{', '.join(_NAMES[:-1])} or {_NAMES[-1]} file)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"has too many pixels ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's ways of saying "damaged"
        detail = str(exc).strip() or type(exc).__name__
        raise ImageError(f"cannot be decoded (damaged or truncated: {detail})") from None
    return ImageInfo(fmt, kind.extension, kind.content_type, size)
