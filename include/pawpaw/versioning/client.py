"""The lakeFS side that writing and reading samples share: the client, errors explained, the
repository, the layout of main, and resolving commit ids.

Layout of the main branch (a commit holds exactly ONE sample; a new sample replaces the last):

    images/<Id>.jpg          the pool's image bytes as-is; the extension comes from the bytes
    images/<Id>.png          (JPEG -> .jpg, PNG -> .png, WebP -> .webp: the one format table in
                             :mod:`pawpaw.data.images`) and the object's content type says it
    splits/train.csv         rows of each split, columns ``schema.COLUMNS``, sorted by Id
    splits/val.csv
    splits/test.csv
    sample.json              key, spec, pool, sizes, flag shares, fingerprint, code version;
                             for a synthetic pool also its noise floor and each split's own
    pool/synth.json          copy of the synthetic pool's description, when it has one

Why replace instead of keeping ``months/<key>/`` side by side: then a commit id alone names the
dataset (no path to carry with it), every stage reads the same fixed paths, and the diff of two
monthly commits is exactly the images that came and went. History is lakeFS's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pawpaw.config import Settings
from pawpaw.synth.truth import SYNTH_FILE

if TYPE_CHECKING:  # the SDK is imported lazily: `pawpaw --help` should not pay for it
    import lakefs

__all__ = [
    "IMAGES",
    "KIND_RUN",
    "KIND_SAMPLE",
    "LIST_PAGE",
    "MANAGED",
    "SAMPLE_JSON",
    "SPLITS_DIR",
    "SYNTH_JSON",
    "VersioningError",
    "ensure_repository",
    "explained",
    "listing",
    "make_client",
    "open_repository",
    "resolve_commit",
    "upload_workers",
]

IMAGES = "images/"
SPLITS_DIR = "splits/"
SAMPLE_JSON = "sample.json"
SYNTH_JSON = f"pool/{SYNTH_FILE}"
MANAGED = (IMAGES, SPLITS_DIR, "pool/", SAMPLE_JSON)  # everything a sample owns on main
KIND_SAMPLE = "sample"  # commit metadata "kind" of the merge commit on main (the identity)
KIND_RUN = "sample-run"  # ... of the commit on the run branch
LIST_PAGE = 1000


class VersioningError(RuntimeError):
    """A lakeFS problem explained: which endpoint, repository, commit or path, and why."""


def make_client(settings: Settings) -> lakefs.Client:
    """A lakeFS client for ``settings.lakefs_endpoint`` (HTTP basic auth with the access key)."""
    import lakefs
    from lakefs_sdk import rest

    client = lakefs.Client(
        host=settings.lakefs_endpoint,
        username=settings.lakefs_access_key_id,
        password=settings.lakefs_secret_access_key.get_secret_value(),
    )
    # urllib3 keeps cpu_count*5 connections per host by default; with more upload workers it
    # would open and drop a connection per request (and warn each time).
    config = client.config
    config.connection_pool_maxsize = max(
        config.connection_pool_maxsize or 0, 2 * upload_workers(settings)
    )
    client.sdk_client.objects_api.api_client.rest_client = rest.RESTClientObject(config)
    return client


def upload_workers(settings: Settings) -> int:
    """Concurrent uploads (``settings.lakefs_upload_workers``, at least 1)."""
    return max(1, int(settings.lakefs_upload_workers))


@contextmanager
def explained(settings: Settings, doing: str) -> Iterator[None]:
    """Turn SDK and connection errors into one-line VersioningErrors that name the context."""
    import urllib3
    from lakefs.exceptions import (
        ForbiddenException,
        LakeFSException,
        NotAuthorizedException,
        NotFoundException,
        ServerException,
    )

    where = f"lakeFS at {settings.lakefs_endpoint}, repository {settings.lakefs_repo!r}"
    try:
        yield
    except VersioningError:
        raise
    except NotAuthorizedException as exc:
        raise VersioningError(
            f"{where}: {doing}: the server rejected access key "
            f"{settings.lakefs_access_key_id!r} (HTTP {exc.status_code}); check "
            "PAWPAW_LAKEFS_ACCESS_KEY_ID / PAWPAW_LAKEFS_SECRET_ACCESS_KEY"
        ) from None
    except ForbiddenException as exc:
        raise VersioningError(
            f"{where}: {doing}: not permitted for access key "
            f"{settings.lakefs_access_key_id!r} ({_server_message(exc)})"
        ) from None
    except NotFoundException as exc:
        raise VersioningError(f"{where}: {doing}: not found ({_server_message(exc)})") from None
    except ServerException as exc:
        raise VersioningError(
            f"{where}: {doing}: HTTP {exc.status_code} ({_server_message(exc)})"
        ) from None
    except LakeFSException as exc:
        raise VersioningError(f"{where}: {doing}: {exc}") from None
    except (urllib3.exceptions.HTTPError, ConnectionError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise VersioningError(
            f"lakeFS at {settings.lakefs_endpoint} is unreachable while {doing}: {reason}"
        ) from None


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None) or {}
    return str(body.get("message") or getattr(exc, "reason", "") or exc)


def ensure_repository(client: lakefs.Client, settings: Settings) -> lakefs.Repository:
    """The configured repository and branch, created when missing (no manual lakeFS step)."""
    import lakefs
    from lakefs.exceptions import NotFoundException

    repo = lakefs.Repository(settings.lakefs_repo, client=client)
    with explained(settings, "creating or opening the repository"):
        repo.create(
            storage_namespace=settings.lakefs_storage_namespace,
            default_branch=settings.lakefs_branch,
            exist_ok=True,
        )
        branch = repo.branch(settings.lakefs_branch)
        try:
            branch.head  # noqa: B018 (a GET that raises when the branch is missing)
        except NotFoundException:
            branch.create(repo.properties.default_branch, exist_ok=True)
    return repo


def open_repository(client: lakefs.Client, settings: Settings) -> lakefs.Repository:
    """The configured repository as it is (nothing created)."""
    import lakefs

    return lakefs.Repository(settings.lakefs_repo, client=client)


def resolve_commit(repo: lakefs.Repository, settings: Settings, commit_id: str) -> Any:
    """The commit named by an explicit (full or abbreviated) commit id; never a branch or tag."""
    if not isinstance(commit_id, str) or not commit_id.strip():
        raise VersioningError(f"a commit id is required, got {commit_id!r}")
    with explained(settings, f"reading commit {commit_id!r}"):
        commit = repo.commit(commit_id).get_commit()
    if not commit.id.startswith(commit_id.lower()):
        raise VersioningError(
            f"{commit_id!r} is a branch or tag of repository {settings.lakefs_repo!r} (now at "
            f"commit {commit.id}), not a commit id: pass the commit id so the data cannot change"
        )
    return commit


def listing(ref: lakefs.Reference, prefix: str) -> dict[str, str]:
    """path -> checksum of every object under ``prefix`` (one paginated ls)."""
    return {
        o.path: o.checksum
        for o in ref.objects(prefix=prefix, amount=LIST_PAGE)
        if getattr(o, "checksum", None) is not None
    }
