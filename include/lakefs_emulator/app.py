"""The emulator's HTTP API: lakeFS's REST API under ``/api/v1`` (the subset our code uses).

EMULATOR, not lakeFS: it answers the calls of the official ``lakefs`` / ``lakefs_sdk`` clients
with lakeFS's shapes and status codes (checked against treeverse/lakeFS ``api/swagger.yml``).
HTTP basic auth against one access key; errors are ``{"message": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import email.utils
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from lakefs_emulator.store import (
    DEFAULT_CONTENT_TYPE,
    BadRequest,
    Change,
    Commit,
    EmulatorError,
    Entry,
    Repo,
    Store,
)

__all__ = ["EMULATOR_VERSION", "create_app"]

EMULATOR_VERSION = "pawpaw-lakefs-emulator-0.1.0"
_MAX_PER_PAGE = 1000  # lakeFS's DefaultMaxPerPage
_DEFAULT_PER_PAGE = 100
_META_HEADER = "x-lakefs-meta-"
_CHUNK = 1 << 20
_log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Response]]


# --- request and response helpers ------------------------------------------------------------


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def _store(request: Request) -> Store:
    return request.app.state.store


def _authorized(request: Request) -> bool:
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return False
    try:
        user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    state = request.app.state
    return hmac.compare_digest(user, state.access_key_id) & hmac.compare_digest(
        password, state.secret_access_key
    )


def _endpoint(fn: Handler, auth: bool = True) -> Handler:
    """Wrap a handler: basic auth, path params as arguments, emulator errors as lakeFS errors."""

    async def handler(request: Request) -> Response:
        if auth and not _authorized(request):
            return _error(401, "error authenticating request")
        try:
            return await fn(request, **request.path_params)
        except EmulatorError as exc:
            return _error(exc.status, exc.message)
        except Exception as exc:  # a bug: answer like lakeFS's 500, keep the trace in the log
            _log.exception("emulator error on %s %s", request.method, request.url.path)
            return _error(500, f"internal emulator error: {exc!r}")

    return handler


def _query(request: Request, name: str, required: bool = False) -> str | None:
    value = request.query_params.get(name)
    if required and not value:
        raise BadRequest(f"query parameter {name!r} is required")
    return value


def _bool(request: Request, name: str, default: bool = False) -> bool:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if value.lower() not in ("true", "false", "1", "0"):
        raise BadRequest(f"query parameter {name!r} must be a boolean, got {value!r}")
    return value.lower() in ("true", "1")


def _amount(request: Request) -> int:
    raw = request.query_params.get("amount")
    if raw is None or raw == "":
        return _DEFAULT_PER_PAGE
    try:
        amount = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter 'amount' must be an integer, got {raw!r}") from None
    if amount <= 0:
        return _DEFAULT_PER_PAGE
    return min(amount, _MAX_PER_PAGE)


async def _json_body(request: Request, required: tuple[str, ...] = ()) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        body: Any = {}
    else:
        try:
            body = json.loads(raw)
        except ValueError:
            raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    missing = [k for k in required if body.get(k) in (None, "")]
    if missing:
        raise BadRequest(f"request body is missing {', '.join(missing)}")
    return body


def _page(items: list[tuple[str, Any]], after: str, amount: int) -> dict[str, Any]:
    """lakeFS pagination over (key, value) pairs sorted by key: values with key > after."""
    keys = [k for k, _ in items]
    start = bisect.bisect_right(keys, after) if after else 0
    rest = items[start:]
    page, has_more = rest[:amount], len(rest) > amount
    return {
        "pagination": {
            "has_more": has_more,
            "next_offset": page[-1][0] if has_more and page else "",
            "results": len(page),
            "max_per_page": _MAX_PER_PAGE,
        },
        "results": [v for _, v in page],
    }


def _prefixed(items: list[tuple[str, Any]], prefix: str | None) -> list[tuple[str, Any]]:
    return [it for it in items if it[0].startswith(prefix)] if prefix else items


def _grouped(
    paths: list[str], prefix: str, delimiter: str | None
) -> Iterator[tuple[str, str | None]]:
    """(key, path) in order; a run of paths sharing a common prefix collapses to (prefix, None)."""
    last = None
    for path in paths:
        rest = path[len(prefix) :]
        cut = rest.find(delimiter) if delimiter else -1
        if cut < 0:
            yield path, path
            continue
        common = prefix + rest[: cut + len(delimiter)]
        if common != last:
            last = common
            yield common, None


# --- JSON shapes -------------------------------------------------------------------------


def _repo_json(r: Repo) -> dict[str, Any]:
    return {
        "id": r.id,
        "creation_date": r.creation_date,
        "default_branch": r.default_branch,
        "storage_namespace": r.storage_namespace,
        "storage_id": "",
        "read_only": False,
    }


def _commit_json(c: Commit) -> dict[str, Any]:
    return {
        "id": c.id,
        "parents": c.parents,
        "committer": c.committer,
        "message": c.message,
        "creation_date": c.creation_date,
        "meta_range_id": c.meta_range_id,
        "metadata": c.metadata,
        "generation": c.generation,
        "version": 1,
    }


def _stats_json(e: Entry, namespace: str, user_metadata: bool = True) -> dict[str, Any]:
    stats = {
        "path": e.path,
        "path_type": "object",
        "physical_address": f"{namespace.rstrip('/')}/data/{e.address}",
        "checksum": e.checksum,
        "size_bytes": e.size,
        "mtime": e.mtime,
        "content_type": e.content_type,
    }
    if user_metadata:
        stats["metadata"] = dict(e.metadata)
    return stats


def _prefix_json(path: str) -> dict[str, Any]:
    # Go serialises the required fields as zero values for a common prefix; so do we.
    return {
        "path": path,
        "path_type": "common_prefix",
        "physical_address": "",
        "checksum": "",
        "mtime": 0,
    }


def _diff_page(request: Request, changes: list[Change]) -> Response:
    prefix = _query(request, "prefix") or ""
    delimiter = _query(request, "delimiter")
    by_path = {c.path: c for c in changes if c.path.startswith(prefix)}
    items: list[tuple[str, Any]] = []
    for key, path in _grouped(sorted(by_path), prefix, delimiter):
        if path is None:
            items.append(
                (key, {"type": "prefix_changed", "path": key, "path_type": "common_prefix"})
            )
        else:
            c = by_path[path]
            items.append(
                (
                    key,
                    {
                        "type": c.type,
                        "path": path,
                        "path_type": "object",
                        "size_bytes": c.entry.size,
                    },
                )
            )
    return JSONResponse(_page(items, _query(request, "after") or "", _amount(request)))


# --- config and setup ------------------------------------------------------------------------


async def healthcheck(request: Request) -> Response:
    return Response(status_code=204)


def _storage_config() -> dict[str, Any]:
    return {
        "blockstore_type": "local",
        "blockstore_namespace_example": "local://example-bucket/",
        "blockstore_namespace_ValidityRegex": "^local://",
        "default_namespace_prefix": "",
        "pre_sign_support": False,
        "pre_sign_support_ui": False,
        "import_support": False,
        "import_validity_regex": "^local://",
        "pre_sign_multipart_upload": False,
        "blockstore_id": "",
        "blockstore_description": "pawpaw lakeFS emulator: local files",
    }


def _version_config() -> dict[str, Any]:
    return {
        "version": EMULATOR_VERSION,
        "version_context": "emulator",
        "upgrade_recommended": False,
    }


async def get_config(request: Request) -> Response:
    return JSONResponse(
        {
            "version_config": _version_config(),
            "storage_config": _storage_config(),
            "capabilities_config": {},
        }
    )


async def get_version(request: Request) -> Response:
    return JSONResponse(_version_config())


async def get_storage_config(request: Request) -> Response:
    return JSONResponse(_storage_config())


async def setup_state(request: Request) -> Response:
    # The one user exists from the start: the installation is always set up.
    return JSONResponse({"state": "initialized", "comm_prefs_missing": False})


async def setup(request: Request) -> Response:
    return _error(409, "lakeFS already initialized (emulator: credentials are fixed at start)")


async def current_user(request: Request) -> Response:
    user = {"id": _store(request).committer, "creation_date": request.app.state.started}
    return JSONResponse({"user": user})


# --- repositories ------------------------------------------------------------------------


async def list_repositories(request: Request) -> Response:
    search = _query(request, "search") or ""
    items = [(r.id, _repo_json(r)) for r in _store(request).list_repos() if search in r.id]
    items = _prefixed(items, _query(request, "prefix"))
    return JSONResponse(_page(items, _query(request, "after") or "", _amount(request)))


async def create_repository(request: Request) -> Response:
    body = await _json_body(request, ("name", "storage_namespace"))
    if _bool(request, "bare"):
        raise BadRequest("bare repositories are not supported by the emulator")
    namespace = body["storage_namespace"]
    if not re.match(_storage_config()["blockstore_namespace_ValidityRegex"], namespace):
        raise BadRequest(f"storage namespace {namespace!r} must match ^local://")
    repo = _store(request).create_repo(
        body["name"], namespace, body.get("default_branch") or "main"
    )
    return JSONResponse(_repo_json(repo), status_code=201)


async def get_repository(request: Request, repository: str) -> Response:
    return JSONResponse(_repo_json(_store(request).get_repo(repository)))


async def delete_repository(request: Request, repository: str) -> Response:
    _store(request).delete_repo(repository)
    return Response(status_code=204)


async def get_repository_metadata(request: Request, repository: str) -> Response:
    _store(request).get_repo(repository)
    return JSONResponse({})


# --- branches ------------------------------------------------------------------------------


async def list_branches(request: Request, repository: str) -> Response:
    branches = _store(request).list_branches(repository, _bool(request, "show_hidden"))
    items = [(name, {"id": name, "commit_id": cid}) for name, cid in branches]
    items = _prefixed(items, _query(request, "prefix"))
    return JSONResponse(_page(items, _query(request, "after") or "", _amount(request)))


async def create_branch(request: Request, repository: str) -> Response:
    body = await _json_body(request, ("name", "source"))
    commit_id = _store(request).create_branch(
        repository, body["name"], body["source"], bool(body.get("hidden"))
    )
    return Response(commit_id, status_code=201, media_type="text/html")


async def get_branch(request: Request, repository: str, branch: str) -> Response:
    commit_id = _store(request).get_branch(repository, branch)
    return JSONResponse({"id": branch, "commit_id": commit_id})


async def delete_branch(request: Request, repository: str, branch: str) -> Response:
    _store(request).delete_branch(repository, branch)
    return Response(status_code=204)


async def reset_branch(request: Request, repository: str, branch: str) -> Response:
    body = await _json_body(request, ("type",))
    _store(request).reset_branch(repository, branch, body["type"], body.get("path"))
    return Response(status_code=204)


async def diff_branch(request: Request, repository: str, branch: str) -> Response:
    return _diff_page(request, _store(request).diff_branch(repository, branch))


# --- tags ----------------------------------------------------------------------------------


async def list_tags(request: Request, repository: str) -> Response:
    items = [(n, {"id": n, "commit_id": c}) for n, c in _store(request).list_tags(repository)]
    items = _prefixed(items, _query(request, "prefix"))
    return JSONResponse(_page(items, _query(request, "after") or "", _amount(request)))


async def create_tag(request: Request, repository: str) -> Response:
    body = await _json_body(request, ("id", "ref"))
    commit_id = _store(request).create_tag(
        repository, body["id"], body["ref"], bool(body.get("force"))
    )
    return JSONResponse({"id": body["id"], "commit_id": commit_id}, status_code=201)


async def get_tag(request: Request, repository: str, tag: str) -> Response:
    return JSONResponse({"id": tag, "commit_id": _store(request).get_tag(repository, tag)})


async def delete_tag(request: Request, repository: str, tag: str) -> Response:
    _store(request).delete_tag(repository, tag)
    return Response(status_code=204)


# --- commits, log, diff, merge -------------------------------------------------------------


async def commit(request: Request, repository: str, branch: str) -> Response:
    body = await _json_body(request, ("message",))
    metadata = body.get("metadata") or {}
    if not all(isinstance(v, str) for v in metadata.values()):
        raise BadRequest("commit metadata values must be strings")
    c = _store(request).commit(
        repository,
        branch,
        body["message"],
        metadata,
        body.get("date"),
        bool(body.get("allow_empty")),
    )
    return JSONResponse(_commit_json(c), status_code=201)


async def get_commit(request: Request, repository: str, commit_id: str) -> Response:
    return JSONResponse(_commit_json(_store(request).resolve_commit(repository, commit_id)))


async def log_commits(request: Request, repository: str, ref: str) -> Response:
    commits = _store(request).log(
        repository,
        ref,
        first_parent=_bool(request, "first_parent"),
        paths=request.query_params.getlist("objects"),
        prefixes=request.query_params.getlist("prefixes"),
        stop_at=_query(request, "stop_at") or None,
    )
    after, amount = _query(request, "after") or "", _amount(request)
    ids = [c.id for c in commits]
    start = ids.index(after) + 1 if after in ids else 0
    page = commits[start : start + amount]
    has_more = start + amount < len(commits)
    return JSONResponse(
        {
            "pagination": {
                "has_more": has_more,
                "next_offset": page[-1].id if has_more and page else "",
                "results": len(page),
                "max_per_page": _MAX_PER_PAGE,
            },
            "results": [_commit_json(c) for c in page],
        }
    )


async def diff_refs(request: Request, repository: str, left: str, right: str) -> Response:
    kind = _query(request, "type") or "three_dot"
    if kind not in ("two_dot", "three_dot"):
        raise BadRequest(f"diff type must be two_dot or three_dot, got {kind!r}")
    changes = _store(request).diff_refs(repository, left, right, three_dot=kind == "three_dot")
    return _diff_page(request, changes)


async def merge(request: Request, repository: str, source: str, dest: str) -> Response:
    body = await _json_body(request)
    c = _store(request).merge(
        repository,
        source,
        dest,
        message=body.get("message"),
        metadata=body.get("metadata"),
        strategy=body.get("strategy"),
        allow_empty=bool(body.get("allow_empty") or body.get("force")),
        squash=bool(body.get("squash_merge")),
    )
    return JSONResponse({"reference": c.id})


async def find_merge_base(request: Request, repository: str, source: str, dest: str) -> Response:
    store = _store(request)
    src, dst = store.resolve_commit(repository, source), store.resolve_commit(repository, dest)
    base = store.merge_base(repository, src.id, dst.id)
    return JSONResponse(
        {"source_commit_id": src.id, "destination_commit_id": dst.id, "base_commit_id": base.id}
    )


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
    store = _store(request)
    entry = store.get_entry(repository, ref, _query(request, "path", required=True))
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
            return _error(
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
    store = _store(request)
    entry = store.get_entry(repository, ref, _query(request, "path", required=True))
    namespace = store.get_repo(repository).storage_namespace
    return JSONResponse(_stats_json(entry, namespace, _bool(request, "user_metadata", True)))


async def list_objects(request: Request, repository: str, ref: str) -> Response:
    store = _store(request)
    namespace = store.get_repo(repository).storage_namespace
    view = store.view(repository, ref)
    prefix, delimiter = _query(request, "prefix") or "", _query(request, "delimiter")
    user_metadata = _bool(request, "user_metadata", True)
    paths = sorted(p for p in view if p.startswith(prefix))
    items = [
        (
            key,
            _prefix_json(key)
            if path is None
            else _stats_json(view[path], namespace, user_metadata),
        )
        for key, path in _grouped(paths, prefix, delimiter)
    ]
    return JSONResponse(_page(items, _query(request, "after") or "", _amount(request)))


def _user_metadata(request: Request) -> dict[str, str]:
    n = len(_META_HEADER)
    return {k[n:]: v for k, v in request.headers.items() if k.lower().startswith(_META_HEADER)}


async def upload_object(request: Request, repository: str, branch: str) -> Response:
    store = _store(request)
    path = _query(request, "path", required=True)
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
    return JSONResponse(_stats_json(entry, namespace), status_code=201)


async def delete_object(request: Request, repository: str, branch: str) -> Response:
    _store(request).delete_objects(repository, branch, [_query(request, "path", required=True)])
    return Response(status_code=204)


async def delete_objects(request: Request, repository: str, branch: str) -> Response:
    body = await _json_body(request)
    paths = body.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise BadRequest("request body must be {'paths': [str, ...]}")
    _store(request).delete_objects(repository, branch, paths)
    return JSONResponse({"errors": []})


async def copy_object(request: Request, repository: str, branch: str) -> Response:
    store = _store(request)
    dest_path = _query(request, "dest_path", required=True)
    body = await _json_body(request, ("src_path",))
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
    return JSONResponse(_stats_json(entry, namespace), status_code=201)


# --- the application -------------------------------------------------------------------------

_R = "/api/v1/repositories/{repository}"
_ROUTES: list[tuple[str, Handler, list[str], bool]] = [
    ("/api/v1/healthcheck", healthcheck, ["GET"], False),
    ("/api/v1/setup_lakefs", setup_state, ["GET"], False),
    ("/api/v1/setup_lakefs", setup, ["POST"], False),
    ("/api/v1/config", get_config, ["GET"], True),
    ("/api/v1/config/version", get_version, ["GET"], True),
    ("/api/v1/config/storage", get_storage_config, ["GET"], True),
    ("/api/v1/user", current_user, ["GET"], True),
    ("/api/v1/repositories", list_repositories, ["GET"], True),
    ("/api/v1/repositories", create_repository, ["POST"], True),
    (_R, get_repository, ["GET"], True),
    (_R, delete_repository, ["DELETE"], True),
    (_R + "/metadata", get_repository_metadata, ["GET"], True),
    (_R + "/branches", list_branches, ["GET"], True),
    (_R + "/branches", create_branch, ["POST"], True),
    (_R + "/branches/{branch}", get_branch, ["GET"], True),
    (_R + "/branches/{branch}", delete_branch, ["DELETE"], True),
    (_R + "/branches/{branch}", reset_branch, ["PUT"], True),
    (_R + "/branches/{branch}/commits", commit, ["POST"], True),
    (_R + "/branches/{branch}/diff", diff_branch, ["GET"], True),
    (_R + "/branches/{branch}/objects", upload_object, ["POST"], True),
    (_R + "/branches/{branch}/objects", delete_object, ["DELETE"], True),
    (_R + "/branches/{branch}/objects/delete", delete_objects, ["POST"], True),
    (_R + "/branches/{branch}/objects/copy", copy_object, ["POST"], True),
    (_R + "/tags", list_tags, ["GET"], True),
    (_R + "/tags", create_tag, ["POST"], True),
    (_R + "/tags/{tag}", get_tag, ["GET"], True),
    (_R + "/tags/{tag}", delete_tag, ["DELETE"], True),
    (_R + "/commits/{commit_id}", get_commit, ["GET"], True),
    (_R + "/refs/{ref}/commits", log_commits, ["GET"], True),
    (_R + "/refs/{left}/diff/{right}", diff_refs, ["GET"], True),
    (_R + "/refs/{source}/merge/{dest}", merge, ["POST"], True),
    (_R + "/refs/{source}/merge/{dest}", find_merge_base, ["GET"], True),
    (_R + "/refs/{ref}/objects", get_object, ["GET", "HEAD"], True),
    (_R + "/refs/{ref}/objects/stat", stat_object, ["GET"], True),
    (_R + "/refs/{ref}/objects/ls", list_objects, ["GET"], True),
]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")


def create_app(store: Store, access_key_id: str, secret_access_key: str) -> Starlette:
    """The ASGI app over `store`, accepting only the given access key pair."""
    routes = [Route(p, _endpoint(fn, auth), methods=m) for p, fn, m, auth in _ROUTES]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.store = store
    app.state.access_key_id = access_key_id
    app.state.secret_access_key = secret_access_key
    app.state.started = int(time.time())
    return app
