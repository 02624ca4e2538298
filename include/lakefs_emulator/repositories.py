"""Handlers for repositories, branches and tags (``/api/v1/repositories/...``)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lakefs_emulator.config import storage_config
from lakefs_emulator.records import BadRequest
from lakefs_emulator.web import (
    diff_page,
    json_body,
    page,
    page_amount,
    prefixed,
    query,
    query_bool,
    repo_json,
    store_of,
)

__all__ = [
    "create_branch",
    "create_repository",
    "create_tag",
    "delete_branch",
    "delete_repository",
    "delete_tag",
    "diff_branch",
    "get_branch",
    "get_repository",
    "get_repository_metadata",
    "get_tag",
    "list_branches",
    "list_repositories",
    "list_tags",
    "reset_branch",
]


# --- repositories ------------------------------------------------------------------------


async def list_repositories(request: Request) -> Response:
    search = query(request, "search") or ""
    items = [(r.id, repo_json(r)) for r in store_of(request).list_repos() if search in r.id]
    items = prefixed(items, query(request, "prefix"))
    return JSONResponse(page(items, query(request, "after") or "", page_amount(request)))


async def create_repository(request: Request) -> Response:
    body = await json_body(request, ("name", "storage_namespace"))
    if query_bool(request, "bare"):
        raise BadRequest("bare repositories are not supported by the emulator")
    namespace = body["storage_namespace"]
    if not re.match(storage_config()["blockstore_namespace_ValidityRegex"], namespace):
        raise BadRequest(f"storage namespace {namespace!r} must match ^local://")
    repo = store_of(request).create_repo(
        body["name"], namespace, body.get("default_branch") or "main"
    )
    return JSONResponse(repo_json(repo), status_code=201)


async def get_repository(request: Request, repository: str) -> Response:
    return JSONResponse(repo_json(store_of(request).get_repo(repository)))


async def delete_repository(request: Request, repository: str) -> Response:
    store_of(request).delete_repo(repository)
    return Response(status_code=204)


async def get_repository_metadata(request: Request, repository: str) -> Response:
    store_of(request).get_repo(repository)
    return JSONResponse({})


# --- branches ------------------------------------------------------------------------------


async def list_branches(request: Request, repository: str) -> Response:
    branches = store_of(request).list_branches(repository, query_bool(request, "show_hidden"))
    items = [(name, {"id": name, "commit_id": cid}) for name, cid in branches]
    items = prefixed(items, query(request, "prefix"))
    return JSONResponse(page(items, query(request, "after") or "", page_amount(request)))


async def create_branch(request: Request, repository: str) -> Response:
    body = await json_body(request, ("name", "source"))
    commit_id = store_of(request).create_branch(
        repository, body["name"], body["source"], bool(body.get("hidden"))
    )
    return Response(commit_id, status_code=201, media_type="text/html")


async def get_branch(request: Request, repository: str, branch: str) -> Response:
    commit_id = store_of(request).get_branch(repository, branch)
    return JSONResponse({"id": branch, "commit_id": commit_id})


async def delete_branch(request: Request, repository: str, branch: str) -> Response:
    store_of(request).delete_branch(repository, branch)
    return Response(status_code=204)


async def reset_branch(request: Request, repository: str, branch: str) -> Response:
    body = await json_body(request, ("type",))
    store_of(request).reset_branch(repository, branch, body["type"], body.get("path"))
    return Response(status_code=204)


async def diff_branch(request: Request, repository: str, branch: str) -> Response:
    return diff_page(request, store_of(request).diff_branch(repository, branch))


# --- tags ----------------------------------------------------------------------------------


async def list_tags(request: Request, repository: str) -> Response:
    items = [(n, {"id": n, "commit_id": c}) for n, c in store_of(request).list_tags(repository)]
    items = prefixed(items, query(request, "prefix"))
    return JSONResponse(page(items, query(request, "after") or "", page_amount(request)))


async def create_tag(request: Request, repository: str) -> Response:
    body = await json_body(request, ("id", "ref"))
    commit_id = store_of(request).create_tag(
        repository, body["id"], body["ref"], bool(body.get("force"))
    )
    return JSONResponse({"id": body["id"], "commit_id": commit_id}, status_code=201)


async def get_tag(request: Request, repository: str, tag: str) -> Response:
    return JSONResponse({"id": tag, "commit_id": store_of(request).get_tag(repository, tag)})


async def delete_tag(request: Request, repository: str, tag: str) -> Response:
    store_of(request).delete_tag(repository, tag)
    return Response(status_code=204)
