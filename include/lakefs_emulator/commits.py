"""Handlers for commits, the log, diffs between refs and merges."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lakefs_emulator.records import BadRequest
from lakefs_emulator.web import (
    MAX_PER_PAGE,
    commit_json,
    diff_page,
    json_body,
    page_amount,
    query,
    query_bool,
    store_of,
)

__all__ = ["commit", "diff_refs", "find_merge_base", "get_commit", "log_commits", "merge"]


# --- commits, log, diff, merge -------------------------------------------------------------


async def commit(request: Request, repository: str, branch: str) -> Response:
    body = await json_body(request, ("message",))
    metadata = body.get("metadata") or {}
    if not all(isinstance(v, str) for v in metadata.values()):
        raise BadRequest("commit metadata values must be strings")
    c = store_of(request).commit(
        repository,
        branch,
        body["message"],
        metadata,
        body.get("date"),
        bool(body.get("allow_empty")),
    )
    return JSONResponse(commit_json(c), status_code=201)


async def get_commit(request: Request, repository: str, commit_id: str) -> Response:
    return JSONResponse(commit_json(store_of(request).resolve_commit(repository, commit_id)))


async def log_commits(request: Request, repository: str, ref: str) -> Response:
    commits = store_of(request).log(
        repository,
        ref,
        first_parent=query_bool(request, "first_parent"),
        paths=request.query_params.getlist("objects"),
        prefixes=request.query_params.getlist("prefixes"),
        stop_at=query(request, "stop_at") or None,
    )
    after, amount = query(request, "after") or "", page_amount(request)
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
                "max_per_page": MAX_PER_PAGE,
            },
            "results": [commit_json(c) for c in page],
        }
    )


async def diff_refs(request: Request, repository: str, left: str, right: str) -> Response:
    kind = query(request, "type") or "three_dot"
    if kind not in ("two_dot", "three_dot"):
        raise BadRequest(f"diff type must be two_dot or three_dot, got {kind!r}")
    changes = store_of(request).diff_refs(repository, left, right, three_dot=kind == "three_dot")
    return diff_page(request, changes)


async def merge(request: Request, repository: str, source: str, dest: str) -> Response:
    body = await json_body(request)
    c = store_of(request).merge(
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
    store = store_of(request)
    src, dst = store.resolve_commit(repository, source), store.resolve_commit(repository, dest)
    base = store.merge_base(repository, src.id, dst.id)
    return JSONResponse(
        {"source_commit_id": src.id, "destination_commit_id": dst.id, "base_commit_id": base.id}
    )
