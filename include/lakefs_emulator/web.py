"""Request and response helpers of the emulator's HTTP API: lakeFS's error shape, query
parameters, JSON bodies, pagination, listings grouped by delimiter, and the JSON shapes of
repositories, commits, objects and diffs.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lakefs_emulator.records import BadRequest, Change, Commit, Entry, Repo
from lakefs_emulator.store import Store

__all__ = [
    "MAX_PER_PAGE",
    "commit_json",
    "diff_page",
    "error",
    "grouped",
    "json_body",
    "page",
    "page_amount",
    "prefix_json",
    "prefixed",
    "query",
    "query_bool",
    "repo_json",
    "stats_json",
    "store_of",
]

MAX_PER_PAGE = 1000  # lakeFS's DefaultMaxPerPage
_DEFAULT_PER_PAGE = 100


# --- requests and responses ------------------------------------------------------------------


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def store_of(request: Request) -> Store:
    return request.app.state.store


def query(request: Request, name: str, required: bool = False) -> str | None:
    value = request.query_params.get(name)
    if required and not value:
        raise BadRequest(f"query parameter {name!r} is required")
    return value


def query_bool(request: Request, name: str, default: bool = False) -> bool:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if value.lower() not in ("true", "false", "1", "0"):
        raise BadRequest(f"query parameter {name!r} must be a boolean, got {value!r}")
    return value.lower() in ("true", "1")


def page_amount(request: Request) -> int:
    raw = request.query_params.get("amount")
    if raw is None or raw == "":
        return _DEFAULT_PER_PAGE
    try:
        amount = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter 'amount' must be an integer, got {raw!r}") from None
    if amount <= 0:
        return _DEFAULT_PER_PAGE
    return min(amount, MAX_PER_PAGE)


async def json_body(request: Request, required: tuple[str, ...] = ()) -> dict[str, Any]:
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


def page(items: list[tuple[str, Any]], after: str, amount: int) -> dict[str, Any]:
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
            "max_per_page": MAX_PER_PAGE,
        },
        "results": [v for _, v in page],
    }


def prefixed(items: list[tuple[str, Any]], prefix: str | None) -> list[tuple[str, Any]]:
    return [it for it in items if it[0].startswith(prefix)] if prefix else items


def grouped(
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


# --- JSON shapes -----------------------------------------------------------------------------


def repo_json(r: Repo) -> dict[str, Any]:
    return {
        "id": r.id,
        "creation_date": r.creation_date,
        "default_branch": r.default_branch,
        "storage_namespace": r.storage_namespace,
        "storage_id": "",
        "read_only": False,
    }


def commit_json(c: Commit) -> dict[str, Any]:
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


def stats_json(e: Entry, namespace: str, user_metadata: bool = True) -> dict[str, Any]:
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


def prefix_json(path: str) -> dict[str, Any]:
    # Go serialises the required fields as zero values for a common prefix; so do we.
    return {
        "path": path,
        "path_type": "common_prefix",
        "physical_address": "",
        "checksum": "",
        "mtime": 0,
    }


def diff_page(request: Request, changes: list[Change]) -> Response:
    prefix = query(request, "prefix") or ""
    delimiter = query(request, "delimiter")
    by_path = {c.path: c for c in changes if c.path.startswith(prefix)}
    items: list[tuple[str, Any]] = []
    for key, path in grouped(sorted(by_path), prefix, delimiter):
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
    return JSONResponse(page(items, query(request, "after") or "", page_amount(request)))
