"""The emulator's HTTP API: lakeFS's REST API under ``/api/v1`` (the subset our code uses).

EMULATOR, not lakeFS: it answers the calls of the official ``lakefs`` / ``lakefs_sdk`` clients
with lakeFS's shapes and status codes (checked against treeverse/lakeFS ``api/swagger.yml``).
HTTP basic auth against one access key; errors are ``{"message": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lakefs_emulator.commits import (
    commit,
    diff_refs,
    find_merge_base,
    get_commit,
    log_commits,
    merge,
)
from lakefs_emulator.config import (
    current_user,
    get_config,
    get_storage_config,
    get_version,
    healthcheck,
    setup,
    setup_state,
)
from lakefs_emulator.objects import (
    copy_object,
    delete_object,
    delete_objects,
    get_object,
    list_objects,
    stat_object,
    upload_object,
)
from lakefs_emulator.records import EmulatorError
from lakefs_emulator.repositories import (
    create_branch,
    create_repository,
    create_tag,
    delete_branch,
    delete_repository,
    delete_tag,
    diff_branch,
    get_branch,
    get_repository,
    get_repository_metadata,
    get_tag,
    list_branches,
    list_repositories,
    list_tags,
    reset_branch,
)
from lakefs_emulator.store import Store
from lakefs_emulator.web import error

__all__ = ["create_app"]

_log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Response]]


# --- authentication and errors ---------------------------------------------------------------


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
            return error(401, "error authenticating request")
        try:
            return await fn(request, **request.path_params)
        except EmulatorError as exc:
            return error(exc.status, exc.message)
        except Exception as exc:  # a bug: answer like lakeFS's 500, keep the trace in the log
            _log.exception("emulator error on %s %s", request.method, request.url.path)
            return error(500, f"internal emulator error: {exc!r}")

    return handler


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
    return error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")


def create_app(store: Store, access_key_id: str, secret_access_key: str) -> Starlette:
    """The ASGI app over `store`, accepting only the given access key pair."""
    routes = [Route(p, _endpoint(fn, auth), methods=m) for p, fn, m, auth in _ROUTES]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.store = store
    app.state.access_key_id = access_key_id
    app.state.secret_access_key = secret_access_key
    app.state.started = int(time.time())
    return app
