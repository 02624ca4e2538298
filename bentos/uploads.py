"""Upload checks shared by the API and the page: bad uploads become clear 4xx errors.

Three layers: :class:`BodySizeLimit` refuses an oversized request before its body is stored
(413); :class:`MultipartGuard` answers 415/400 for API calls that are not well-formed multipart
with files in the expected field (BentoML's own parser would answer 500, or try to download a
text field as a URL); and :func:`check_image` validates each uploaded file with the project's
one image check (:mod:`pawpaw.data.images`: empty, too large, not a JPEG/PNG/WebP image,
truncated, too many pixels), with a message a volunteer can act on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import PurePosixPath
from typing import Any

from starlette.datastructures import Headers, UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pawpaw.data.images import ImageError
from pawpaw.data.images import check_image as _check_image

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_PIXELS",
    "MAX_REQUEST_BYTES",
    "BodySizeLimit",
    "InvalidImage",
    "MultipartGuard",
    "UploadedImage",
    "check_image",
    "send_error",
]

MAX_IMAGE_BYTES = 10 * 1024 * 1024  # a phone JPEG is 2-6 MB
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # room for a batch of photos in one predict call
MAX_PIXELS = 50_000_000  # 50 MP: above any phone camera, below decompression bombs


# The project's one image check, with the service's limits; its error is the service's.
InvalidImage = ImageError


def check_image(data: bytes) -> tuple[int, int]:
    """Validate encoded image bytes; return (width, height) or raise :class:`InvalidImage`.

    Accepted: what :mod:`pawpaw.data.images` accepts (JPEG, PNG, WebP), decoded whole (a
    truncated file fails here, not in the model), up to ``MAX_IMAGE_BYTES`` and ``MAX_PIXELS``.
    """
    return _check_image(data, max_bytes=MAX_IMAGE_BYTES, max_pixels=MAX_PIXELS).size


class UploadedImage(PurePosixPath):
    """An uploaded photo, checked with :func:`check_image`: its file name (this path) and its
    bytes (``data``), kept in memory.

    A ``PurePath`` so that BentoML reads the API field as a multipart file; unlike its ``Path``
    fields, nothing is written to a per-request temp directory in the event loop (measured:
    that cost ~3-4 ms of the loop's CPU per request, a sixth of a request's whole cost).
    """

    data: bytes

    @classmethod
    def of(cls, name: str | None, data: bytes) -> UploadedImage:
        upload = cls(PurePosixPath(name or "upload").name or "upload")
        upload.data = data
        return upload

    @classmethod
    def validate(cls, value: Any) -> UploadedImage:
        """An upload (or bytes) as a checked :class:`UploadedImage`; raises ValueError (HTTP 400
        naming the problem) if it is not an acceptable photo. Never a path: a request must not
        make the server read its own files."""
        if isinstance(value, cls):
            return value
        if isinstance(value, UploadFile):
            name, data = value.filename, value.file.read()
        elif isinstance(value, bytes | bytearray):
            name, data = None, bytes(value)
        else:
            raise ValueError(f"expected an uploaded image file, got {type(value).__name__}")
        check_image(data)
        return cls.of(name, data)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(cls.validate)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "file", "format": "image"}


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes``, before they are stored.

    A declared Content-Length is checked up front. A chunked body is counted as it streams;
    past the limit the app sees a client disconnect, whatever it answers is dropped, and the
    client gets the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return

        seen = 0
        over = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # the app's answer to a truncated body is replaced by our 413
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        await send_error(
            send,
            413,
            f"request too large: the limit is {self.max_bytes / 2**20:.0f} MB "
            f"(and {MAX_IMAGE_BYTES / 2**20:.0f} MB per photo)",
        )


class MultipartGuard:
    """ASGI middleware: POSTs to ``fields``' paths must be multipart with files in the field.

    The body (already bounded by :class:`BodySizeLimit`) is parsed once here; a well-formed one
    is replayed to the app unchanged.
    """

    def __init__(self, app: ASGIApp, fields: Mapping[str, str]) -> None:
        self.app = app
        self.fields = dict(fields)  # path -> name of the file field

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        field = self.fields.get(scope.get("path", "")) if scope["type"] == "http" else None
        if field is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not headers.get("content-type", "").startswith("multipart/form-data"):
            await send_error(
                send,
                415,
                f"send photos as multipart/form-data files in the field {field!r} "
                f"(e.g. curl -F {field}=@photo.jpg)",
            )
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # client gone, or the size limit cut the body: nothing to answer here
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        problem = await _multipart_problem(headers, bytes(body), field)
        if problem is not None:
            await send_error(send, 400, problem)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _multipart_problem(headers: Headers, body: bytes, field: str) -> str | None:
    from starlette.formparsers import MultiPartParser

    async def stream() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(headers, stream()).parse()
    except Exception as exc:  # python-multipart and Starlette raise several kinds
        return f"malformed multipart/form-data body: {exc}"
    try:
        values = form.getlist(field)
        if not values:
            return f"no file in the field {field!r}; fields sent: {sorted(set(form.keys()))}"
        if not all(isinstance(v, UploadFile) for v in values):
            return f"the field {field!r} must hold uploaded files, not text"
        return None
    finally:
        await form.close()


async def send_error(send: Send, status: int, message: str) -> None:
    """A JSON error response ``{"error": message}`` sent straight on the ASGI channel."""
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
