"""Handlers for objects: read (with ranges and ETags), stat, list, upload, delete, copy."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from lakefs_emulator.records import DEFAULT_CONTENT_TYPE, BadRequest, Entry
from lakefs_emulator.web import (
    error,
    grouped,
    json_body,
    page,
    page_amount,
    prefix_json,
    query,
    query_bool,
    stats_json,
    store_of,
)

__all__ = [
    "copy_object",
    "delete_object",
    "delete_objects",
    "get_object",
    "list_objects",
    "stat_object",
    "upload_object",
]

_META_HEADER = "x-lakefs-meta-"
_CHUNK = 1 << 20


# --- objects ---------------------------------------------------------------------------------


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single `bytes=` range, or None when unsatisfiable."""
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix: the last N bytes
        n = int(m.group(2))
        return (max(size - n, 0), size - 1) if n > 0 and size > 0 else None
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


def _read_file(path, start: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        while length > 0:
            chunk = f.read(min(_CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk


async def get_object(request: Request, repository: str, ref: str) -> Response:
    store = store_of(request)
    entry = store.get_entry(repository, ref, query(request, "path", required=True))
    etag = f'"{entry.checksum}"'
    headers = {
        "ETag": etag,
        "Last-Modified": email.utils.formatdate(entry.mtime, usegmt=True),
        "Content-Type": entry.content_type,
        "Accept-Ranges": "bytes",
    }
    if request.method == "GET" and request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    start, length, status = 0, entry.size, 200
    if "range" in request.headers:
        rng = _byte_range(request.headers["range"], entry.size)
        if rng is None:
            return error(
                416,
                "Requested Range Not Satisfiable",
                headers={"Content-Range": f"bytes */{entry.size}"},
            )
        start, length, status = rng[0], rng[1] - rng[0] + 1, 206
        headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{entry.size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    body = _read_file(store.blob_path(entry.address), start, length)
    return StreamingResponse(body, status_code=status, headers=headers)


async def stat_object(request: Request, repository: str, ref: str) -> Response:
    store = store_of(request)
    entry = store.get_entry(repository, ref, query(request, "path", required=True))
    namespace = store.get_repo(repository).storage_namespace
    return JSONResponse(stats_json(entry, namespace, query_bool(request, "user_metadata", True)))


async def list_objects(request: Request, repository: str, ref: str) -> Response:
    store = store_of(request)
    namespace = store.get_repo(repository).storage_namespace
    view = store.view(repository, ref)
    prefix, delimiter = query(request, "prefix") or "", query(request, "delimiter")
    user_metadata = query_bool(request, "user_metadata", True)
    paths = sorted(p for p in view if p.startswith(prefix))
    items = [
        (
            key,
            prefix_json(key) if path is None else stats_json(view[path], namespace, user_metadata),
        )
        for key, path in grouped(paths, prefix, delimiter)
    ]
    return JSONResponse(page(items, query(request, "after") or "", page_amount(request)))


def _user_metadata(request: Request) -> dict[str, str]:
    n = len(_META_HEADER)
    return {k[n:]: v for k, v in request.headers.items() if k.lower().startswith(_META_HEADER)}


async def upload_object(request: Request, repository: str, branch: str) -> Response:
    store = store_of(request)
    path = query(request, "path", required=True)
    if_none_match = request.headers.get("if-none-match")
    if if_none_match not in (None, "*"):
        raise BadRequest("If-None-Match supports only '*'")
    store.check_writable(repository, branch, path, if_none_match == "*")
    content_type = request.headers.get("content-type") or DEFAULT_CONTENT_TYPE
    writer = store.blob_writer()
    try:
        if content_type.startswith("multipart/form-data"):
            form = await request.form()
            part = form.get("content")
            if part is None or isinstance(part, str):
                raise BadRequest("multipart upload missing key 'content'")
            content_type = part.content_type or DEFAULT_CONTENT_TYPE
            while chunk := await part.read(_CHUNK):
                writer.write(chunk)
        else:
            async for chunk in request.stream():
                writer.write(chunk)
    except BaseException:
        writer.abort()
        raise
    address, checksum, size = writer.finish()
    entry = Entry(
        path, address, checksum, size, int(time.time()), content_type, _user_metadata(request)
    )
    store.stage(repository, branch, entry, if_none_match == "*")
    namespace = store.get_repo(repository).storage_namespace
    return JSONResponse(stats_json(entry, namespace), status_code=201)


async def delete_object(request: Request, repository: str, branch: str) -> Response:
    store_of(request).delete_objects(repository, branch, [query(request, "path", required=True)])
    return Response(status_code=204)


async def delete_objects(request: Request, repository: str, branch: str) -> Response:
    body = await json_body(request)
    paths = body.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise BadRequest("request body must be {'paths': [str, ...]}")
    store_of(request).delete_objects(repository, branch, paths)
    return JSONResponse({"errors": []})


async def copy_object(request: Request, repository: str, branch: str) -> Response:
    store = store_of(request)
    dest_path = query(request, "dest_path", required=True)
    body = await json_body(request, ("src_path",))
    src = store.get_entry(repository, body.get("src_ref") or branch, body["src_path"])
    entry = Entry(
        dest_path,
        src.address,
        src.checksum,
        src.size,
        int(time.time()),
        src.content_type,
        dict(src.metadata),
    )
    store.stage(repository, branch, entry)
    namespace = store.get_repo(repository).storage_namespace
    return JSONResponse(stats_json(entry, namespace), status_code=201)
