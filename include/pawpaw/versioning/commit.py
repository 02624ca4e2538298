"""Monthly samples in lakeFS: every sample is one commit, and its commit id is the dataset.

Layout of the main branch (a commit holds exactly ONE sample; a new sample replaces the last):

    images/<Id>.jpg          the pool's image bytes as-is; the extension comes from the bytes
    images/<Id>.png          (JPEG -> .jpg, PNG -> .png, ...) and the object's content type says it
    splits/train.csv         rows of each split, columns ``schema.COLUMNS``, sorted by Id
    splits/val.csv
    splits/test.csv
    sample.json              key, spec, pool, sizes, flag shares, fingerprint, code version;
                             for a synthetic pool also its noise floor and each split's own
    pool/synth.json          copy of the synthetic pool's description, when it has one

Why replace instead of keeping ``months/<key>/`` side by side: then a commit id alone names the
dataset (no path to carry with it), every stage reads the same fixed paths, and the diff of two
monthly commits is exactly the images that came and went. History is lakeFS's job.

How a sample is committed (atomic and idempotent, keyed by the sample ``key``):

1. The tag ``sample-<safe key>`` exists: return its commit (``created=False``), after checking
   that it holds the same sample (fingerprint); a different sample under the same key is refused.
2. Main's history already holds a sample commit with this key (a run died before tagging it):
   tag it and return it.
3. The run branch ``run-<safe key>`` is created from main. A leftover one (a failed run) is
   reused only if it holds a finished commit of this very sample on top of main's current head;
   otherwise it is deleted and redone.
4. Images are uploaded concurrently (``settings.lakefs_upload_workers``) straight through the
   lakeFS API (no pre-signed URLs), skipping images whose bytes are already there (MD5 equals
   the lakeFS checksum); objects of the previous sample that are not in this one are deleted;
   splits and ``sample.json`` are written; the run branch is committed.
5. The run branch is merged into main; the merge commit carries the sample's metadata, is
   tagged, and is the dataset's identity. The run branch is then deleted.

Anything failing before step 5 leaves main unchanged. Main's first-parent history therefore
holds one commit per sample (plus lakeFS's initial commit); :func:`list_commits` lists those.
``<safe key>`` is the key reduced to ``[A-Za-z0-9_-]`` plus 8 hex of its sha256, so distinct keys
never share a tag. Two different keys committed at the same moment: the second merge is refused
("main moved") rather than mixing two samples; rerunning it redoes it on the new head.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pawpaw.config import PROJECT_ROOT, Settings
from pawpaw.data.labeled import LabeledImages
from pawpaw.data.sampling import SampleSpec, draw_sample, flag_shares
from pawpaw.progress import say
from pawpaw.schema import COLUMNS, FLAGS, ID, SPLITS, TARGET

if TYPE_CHECKING:  # the SDK is imported lazily: `pawpaw --help` should not pay for it
    import lakefs

__all__ = [
    "CommitInfo",
    "DiffEntry",
    "SampleCommit",
    "VersioningError",
    "commit_sample",
    "commit_time",
    "diff_commits",
    "ensure_repository",
    "list_commits",
    "load_split",
    "make_client",
    "sample_info",
    "sample_tag",
    "summarize_diff",
]

IMAGES = "images/"
SPLITS_DIR = "splits/"
SAMPLE_JSON = "sample.json"
SYNTH_JSON = "pool/synth.json"
_MANAGED = (IMAGES, SPLITS_DIR, "pool/", SAMPLE_JSON)  # everything a sample owns on main
_KIND_SAMPLE = "sample"  # commit metadata "kind" of the merge commit on main (the identity)
_KIND_RUN = "sample-run"  # ... of the commit on the run branch
_DELETE_BATCH = 1000  # lakeFS's limit of paths per delete_objects call
_LIST_PAGE = 1000


class VersioningError(RuntimeError):
    """A lakeFS problem explained: which endpoint, repository, commit or path, and why."""


@dataclass(frozen=True)
class SampleCommit:
    """The result of :func:`commit_sample`: the dataset's commit id and what it holds."""

    commit_id: str
    created: bool  # False: the key was already committed, nothing was written
    sizes: dict[str, int]
    metadata: dict[str, str]
    key: str = ""
    tag: str = ""


@dataclass(frozen=True)
class CommitInfo:
    id: str
    message: str
    metadata: dict[str, str]
    created: datetime  # UTC
    parents: tuple[str, ...] = ()

    @property
    def key(self) -> str | None:
        return self.metadata.get("key")


@dataclass(frozen=True)
class DiffEntry:
    path: str
    type: str  # "added" | "removed" | "changed" (as seen going from the first ref to the second)
    size_bytes: int | None = None


@dataclass(frozen=True)
class _File:
    """One object to write: path, bytes, content type."""

    path: str
    data: bytes = field(repr=False)
    content_type: str


# --- client, repository, errors ------------------------------------------------------------


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
        config.connection_pool_maxsize or 0, 2 * _workers(settings)
    )
    client.sdk_client.objects_api.api_client.rest_client = rest.RESTClientObject(config)
    return client


def _workers(settings: Settings) -> int:
    return max(1, int(settings.lakefs_upload_workers))


@contextmanager
def _explained(settings: Settings, doing: str) -> Iterator[None]:
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
    with _explained(settings, "creating or opening the repository"):
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


# --- keys, tags, fingerprints ----------------------------------------------------------------


def _safe(key: str) -> str:
    """A lakeFS-safe id (branch and tag rules: ``^\\w[-\\w]*$``) that stays unique per key."""
    if not key or not key.strip() or len(key) > 200 or not key.isprintable():
        raise VersioningError(f"sample key must be 1-200 printable characters, got {key!r}")
    slug = re.sub(r"[^A-Za-z0-9_]+", "-", key).strip("-")[:48] or "key"
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def sample_tag(key: str) -> str:
    """The lakeFS tag that marks the commit of the sample with this key."""
    return f"sample-{_safe(key)}"


def _drop_leftover_run_branch(repo: lakefs.Repository, key: str) -> None:
    from lakefs.exceptions import NotFoundException

    with suppress(NotFoundException):
        repo.branch(_run_branch(key)).delete()


def _run_branch(key: str) -> str:
    return f"run-{_safe(key)}"


def _split_csv(frame: pd.DataFrame) -> bytes:
    return frame.loc[:, list(COLUMNS)].to_csv(index=False, lineterminator="\n").encode()


def _fingerprint(spec: SampleSpec, csvs: dict[str, bytes]) -> str:
    """What makes two samples the same: the spec and the rows (Ids, flags, targets)."""
    h = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode())
    for split in SPLITS:
        h.update(split.encode() + b"\0" + csvs[split])
    return h.hexdigest()


def _code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("pawpaw")
    except PackageNotFoundError:
        text = "unknown"
    if (PROJECT_ROOT / ".git").exists():
        try:
            out = subprocess.run(
                ["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            )
            text += f"+git.{out.stdout.strip()}"
        except (OSError, subprocess.SubprocessError):
            pass
    return text


_MAGIC = (
    (b"\xff\xd8\xff", ".jpg", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", ".png", "image/png"),
    (b"GIF8", ".gif", "image/gif"),
    (b"BM", ".bmp", "image/bmp"),
)


def _image_kind(image_id: str, data: bytes) -> tuple[str, str]:
    for magic, ext, content_type in _MAGIC:
        if data.startswith(magic):
            return ext, content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp", "image/webp"
    raise VersioningError(f"image of Id {image_id!r} is not a JPEG/PNG/GIF/BMP/WebP file")


# --- progress --------------------------------------------------------------------------------


class _Progress:
    """Plain progress lines on stderr (Airflow logs and terminals both read them), thread-safe."""

    def __init__(self, total: int, what: str, enabled: bool) -> None:
        self.total, self.what, self.enabled = total, what, enabled
        self.done = self.skipped = 0
        self.start = self.last = time.monotonic()
        self._lock = threading.Lock()

    def step(self, *, skipped: bool = False) -> None:
        with self._lock:
            self.done += 1
            self.skipped += skipped
            now = time.monotonic()
            if self.enabled and (now - self.last >= 2.0 or self.done == self.total):
                self.last = now
                rate = self.done / max(now - self.start, 1e-9)
                print(
                    f"[sample] {self.what}: {self.done}/{self.total} "
                    f"({self.skipped} unchanged, {rate:.0f}/s)",
                    file=sys.stderr,
                    flush=True,
                )


_say = functools.partial(say, tag="sample")


# --- committing a sample ---------------------------------------------------------------------


def _upload_object(branch: lakefs.Branch, item: _File) -> None:
    """Write one object on the branch through the lakeFS API (a seam the tests break)."""
    branch.object(item.path).upload(
        item.data, mode="wb", pre_sign=False, content_type=item.content_type
    )


def _listing(ref: lakefs.Reference, prefix: str) -> dict[str, str]:
    """path -> checksum of every object under ``prefix`` (one paginated ls)."""
    return {
        o.path: o.checksum
        for o in ref.objects(prefix=prefix, amount=_LIST_PAGE)
        if getattr(o, "checksum", None) is not None
    }


def _pool_dir(pool: LabeledImages) -> Path | None:
    if not pool.source:
        return None
    path = Path(pool.source)
    return path if path.is_dir() else None


def _sample_document(
    pool: LabeledImages,
    spec: SampleSpec,
    key: str,
    splits: dict[str, pd.DataFrame],
    fingerprint: str,
    synth: dict[str, Any] | None,
    code_version: str,
) -> dict[str, Any]:
    everything = pd.concat(splits.values())
    doc: dict[str, Any] = {
        "key": key,
        "spec": spec.to_dict(),
        "pool": {"source": pool.source, "rows": len(pool.frame)},
        "sizes": {s: len(f) for s, f in splits.items()},
        "flag_shares": {
            "sample": flag_shares(everything),
            "pool": flag_shares(pool.frame),
            **{s: flag_shares(f) for s, f in splits.items()},
        },
        "target": {
            s: {"mean": float(f[TARGET].mean()), "std": float(f[TARGET].std(ddof=0))}
            for s, f in splits.items()
        },
        "fingerprint": fingerprint,
        "code_version": code_version,
        "layout": {
            "images": "images/<Id>.<ext> (extension and content type from the image bytes)",
            "splits": "splits/<split>.csv",
            "synth": SYNTH_JSON if synth is not None else None,
        },
    }
    if synth is not None:
        doc["noise_floor"] = _noise_floor(synth)
        doc["noise_floor_by_split"] = _split_noise_floors(pool, splits)
    return doc


def _noise_floor(synth: dict[str, Any]) -> float | None:
    """The pool's noise floor (best achievable RMSE) that the synthetic generator wrote."""
    value = synth.get("noise_floor")
    return float(value) if isinstance(value, int | float) else None


def _split_noise_floors(
    pool: LabeledImages, splits: dict[str, pd.DataFrame]
) -> dict[str, float] | None:
    """Noise floor of each split's own rows, from the synthetic pool's per-row truth.

    The pool's floor is an average over all its rows; a 500-row test split's floor differs
    from it by sampling noise, and that is the number a model's test RMSE should be held to.
    """
    folder = _pool_dir(pool)
    path = folder / "synth_truth.csv" if folder else None
    if path is None or not path.is_file():
        return None
    truth = pd.read_csv(path, dtype={ID: str}, usecols=lambda c: c in (ID, "noise_free"))
    if "noise_free" not in truth.columns:
        return None
    noise_free = truth.set_index(ID)["noise_free"]
    floors = {}
    for split, frame in splits.items():
        expected = noise_free.reindex(frame[ID])
        if expected.isna().any():
            return None  # truth of another pool: no floor rather than a wrong one
        gap = frame[TARGET].to_numpy(float) - expected.to_numpy(float)
        floors[split] = float(np.sqrt(np.mean(gap**2)))
    return floors


def _metadata(
    spec: SampleSpec, key: str, pool: LabeledImages, fingerprint: str, code_version: str
) -> dict[str, str]:
    # lakeFS metadata values are strings.
    return {
        "kind": _KIND_SAMPLE,
        "key": key,
        "pool": pool.source,
        "n": str(spec.n),
        "seed": str(spec.seed),
        "val_fraction": str(spec.val_fraction),
        "test_fraction": str(spec.test_fraction),
        "sizes": json.dumps(spec.sizes, sort_keys=True),
        "bias": json.dumps(spec.bias, sort_keys=True),
        "fingerprint": fingerprint,
        "code_version": code_version,
    }


def _sizes_of(metadata: dict[str, str]) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in json.loads(metadata.get("sizes", "{}")).items()}
    except (ValueError, AttributeError):
        return {}


def _existing(
    repo: lakefs.Repository, settings: Settings, key: str, fingerprint: str
) -> tuple[str, dict[str, str]] | None:
    """The commit already holding this key's sample: by tag, else by main's history."""
    from lakefs.exceptions import NotFoundException

    tag = sample_tag(key)
    commit = None
    try:
        commit = repo.tag(tag).get_commit()
    except NotFoundException:
        for c in repo.branch(settings.lakefs_branch).log(
            max_amount=200, first_parent=True, amount=200
        ):
            meta = c.metadata or {}
            if meta.get("kind") == _KIND_SAMPLE and meta.get("key") == key:
                commit = c
                break
    if commit is None:
        return None
    meta = dict(commit.metadata or {})
    if meta.get("fingerprint") != fingerprint:
        raise VersioningError(
            f"sample key {key!r} already names commit {commit.id} in repository "
            f"{settings.lakefs_repo!r} with a different sample (seed {meta.get('seed')}, "
            f"n {meta.get('n')}, bias {meta.get('bias')}, pool {meta.get('pool')}): "
            "use another key"
        )
    repo.tag(tag).create(commit.id, exist_ok=True)  # no-op when the tag was what found it
    return commit.id, meta


def _prepare_run_branch(
    repo: lakefs.Repository, settings: Settings, key: str, fingerprint: str, progress: bool
) -> tuple[lakefs.Branch, bool]:
    """The run branch, fresh from main; or (branch, True) when it already holds this sample."""
    from lakefs.exceptions import NotFoundException

    main_head = repo.branch(settings.lakefs_branch).get_commit().id
    run = repo.branch(_run_branch(key))
    try:
        head = run.get_commit()
    except NotFoundException:
        head = None
    if head is not None:
        meta = head.metadata or {}
        finished = (
            meta.get("kind") == _KIND_RUN
            and meta.get("fingerprint") == fingerprint
            and list(head.parents or []) == [main_head]
        )
        dirty = next(iter(run.uncommitted(max_amount=1)), None) is not None
        if finished and not dirty:
            _say(progress, f"reusing committed run branch {run.id} ({head.id[:12]})")
            return run, True
        _say(progress, f"deleting leftover run branch {run.id} from an earlier failed run")
        run.delete()
    run.create(main_head)
    return run, False


def _upload_images(
    branch: lakefs.Branch,
    pool: LabeledImages,
    ids: list[str],
    present: dict[str, str],
    settings: Settings,
    progress: bool,
) -> set[str]:
    """Upload each Id's image (skipping bytes already there); returns the paths written."""
    bar = _Progress(len(ids), "images", progress)
    paths: set[str] = set()
    lock = threading.Lock()

    def one(image_id: str) -> None:
        try:
            data = pool.load(image_id)
        except Exception as exc:
            raise VersioningError(
                f"reading the pool image of Id {image_id!r} failed: {exc}"
            ) from exc
        ext, content_type = _image_kind(image_id, data)
        path = f"{IMAGES}{image_id}{ext}"
        with lock:
            paths.add(path)
        unchanged = present.get(path) == hashlib.md5(data).hexdigest()
        if not unchanged:
            try:
                _upload_object(branch, _File(path, data, content_type))
            except VersioningError:
                raise
            except Exception as exc:
                raise VersioningError(
                    f"uploading {path} to branch {branch.id!r} of repository "
                    f"{settings.lakefs_repo!r} at {settings.lakefs_endpoint} failed ({exc}); "
                    f"branch {settings.lakefs_branch!r} is unchanged, rerun to retry"
                ) from exc
        bar.step(skipped=unchanged)

    with ThreadPoolExecutor(max_workers=_workers(settings), thread_name_prefix="lakefs-up") as ex:
        futures = [ex.submit(one, i) for i in ids]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in done if f.exception() is not None), None)
        if failed is not None:
            for f in futures:
                f.cancel()
            raise failed.exception()  # type: ignore[misc]
    return paths


def commit_sample(
    settings: Settings,
    pool: LabeledImages,
    spec: SampleSpec,
    *,
    key: str,
    client: lakefs.Client | None = None,
    progress: bool = False,
) -> SampleCommit:
    """Draw ``spec`` from ``pool`` and commit it as main's new content; idempotent by ``key``.

    Returns the commit that holds the sample (the merge commit on main, tagged
    :func:`sample_tag`). The same key returns the same commit without writing anything.
    """
    tag = sample_tag(key)  # validates the key before anything else
    splits = draw_sample(pool.frame, spec)
    csvs = {s: _split_csv(f) for s, f in splits.items()}
    fingerprint = _fingerprint(spec, csvs)
    sizes = {s: len(f) for s, f in splits.items()}
    client = client or make_client(settings)
    repo = ensure_repository(client, settings)

    with _explained(settings, f"looking up sample key {key!r}"):
        found = _existing(repo, settings, key, fingerprint)
    if found is not None:
        commit_id, meta = found
        _say(progress, f"key {key!r} is already commit {commit_id}: nothing to do")
        _drop_leftover_run_branch(repo, key)  # a crash between tagging and the branch's delete
        return SampleCommit(commit_id, False, _sizes_of(meta) or sizes, meta, key, tag)

    code_version = _code_version()
    metadata = _metadata(spec, key, pool, fingerprint, code_version)
    synth = _read_synth(pool)
    started = time.monotonic()
    with _explained(settings, f"preparing run branch {_run_branch(key)!r}"):
        run, finished = _prepare_run_branch(repo, settings, key, fingerprint, progress)
    if not finished:
        with _explained(settings, f"writing the sample to branch {run.id!r}"):
            present = _listing(run, "")
            present = {p: c for p, c in present.items() if p.startswith(_MANAGED)}
            ids = [i for s in SPLITS for i in splits[s][ID]]
            _say(progress, f"{len(ids)} images -> {run.id} ({_workers(settings)} workers)")
            written = _upload_images(run, pool, ids, present, settings, progress)
            files = [_File(f"{SPLITS_DIR}{s}.csv", csvs[s], "text/csv") for s in SPLITS] + [
                _File(
                    SAMPLE_JSON,
                    _json_bytes(
                        _sample_document(pool, spec, key, splits, fingerprint, synth, code_version)
                    ),
                    "application/json",
                )
            ]
            if synth is not None:
                files.append(_File(SYNTH_JSON, _json_bytes(synth), "application/json"))
            for item in files:
                if present.get(item.path) != hashlib.md5(item.data).hexdigest():
                    _upload_object(run, item)
                written.add(item.path)
            stale = sorted(set(present) - written)
            for i in range(0, len(stale), _DELETE_BATCH):
                run.delete_objects(stale[i : i + _DELETE_BATCH])
            _say(progress, f"removed {len(stale)} objects of the previous sample")
            run.commit(
                message=f"stage sample {key}",
                metadata={**metadata, "kind": _KIND_RUN},
                allow_empty=True,
            )

    with _explained(settings, f"merging {run.id!r} into {settings.lakefs_branch!r}"):
        main = repo.branch(settings.lakefs_branch)
        base = run.get_commit().parents
        if list(base or []) != [main.get_commit().id]:
            raise VersioningError(
                f"branch {settings.lakefs_branch!r} of repository {settings.lakefs_repo!r} moved "
                f"while sample {key!r} was being written; rerun to redo it on the new head"
            )
        commit_id = run.merge_into(
            main,
            message=_message(key, spec),
            metadata=metadata,
            allow_empty=True,
        )
        repo.tag(tag).create(commit_id, exist_ok=True)
        run.delete()
    _say(progress, f"committed {commit_id} in {time.monotonic() - started:.1f}s (tag {tag})")
    return SampleCommit(commit_id, True, sizes, metadata, key, tag)


def _message(key: str, spec: SampleSpec) -> str:
    bias = ", ".join(f"{f}={s:g}" for f, s in spec.bias.items()) or "none"
    return f"sample {key}: n={spec.n} seed={spec.seed} bias={bias}"


def _json_bytes(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _read_synth(pool: LabeledImages) -> dict[str, Any] | None:
    folder = _pool_dir(pool)
    path = folder / "synth.json" if folder else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VersioningError(f"{path}: not readable JSON ({exc})") from exc


# --- reading a commit ------------------------------------------------------------------------


def _repo(client: lakefs.Client, settings: Settings) -> lakefs.Repository:
    import lakefs

    return lakefs.Repository(settings.lakefs_repo, client=client)


def _resolve_commit(repo: lakefs.Repository, settings: Settings, commit_id: str) -> Any:
    """The commit named by an explicit (full or abbreviated) commit id; never a branch or tag."""
    if not isinstance(commit_id, str) or not commit_id.strip():
        raise VersioningError(f"a commit id is required, got {commit_id!r}")
    with _explained(settings, f"reading commit {commit_id!r}"):
        commit = repo.commit(commit_id).get_commit()
    if not commit.id.startswith(commit_id.lower()):
        raise VersioningError(
            f"{commit_id!r} is a branch or tag of repository {settings.lakefs_repo!r} (now at "
            f"commit {commit.id}), not a commit id: pass the commit id so the data cannot change"
        )
    return commit


def _read(ref: lakefs.Reference, path: str) -> bytes:
    return ref.object(path).reader(mode="rb", pre_sign=False).read()


def _parse_split(data: bytes, where: str) -> pd.DataFrame:
    frame = pd.read_csv(io.BytesIO(data), dtype={ID: str})
    if tuple(frame.columns) != COLUMNS:
        raise VersioningError(f"{where}: columns {list(frame.columns)} are not {list(COLUMNS)}")
    return frame.astype({**dict.fromkeys(FLAGS, "int64"), TARGET: "int64"})


def load_split(
    settings: Settings, commit_id: str, split: str, *, client: lakefs.Client | None = None
) -> LabeledImages:
    """Rows and images of one split exactly as committed at ``commit_id`` (a commit, not a branch).

    ``content_keys`` holds each image's lakeFS checksum (from one listing of ``images/``), so a
    cache keyed by it can skip downloading images it has already seen.
    """
    if split not in SPLITS:
        raise VersioningError(f"unknown split {split!r}; splits are {list(SPLITS)}")
    client = client or make_client(settings)
    repo = _repo(client, settings)
    commit = _resolve_commit(repo, settings, commit_id)
    ref = repo.commit(commit.id)
    where = f"lakefs://{settings.lakefs_repo}/{commit.id}/{SPLITS_DIR}{split}.csv"
    with _explained(settings, f"reading {where}"):
        frame = _parse_split(_read(ref, f"{SPLITS_DIR}{split}.csv"), where)
    with _explained(settings, f"listing {IMAGES} at commit {commit.id}"):
        listing = _listing(ref, IMAGES)
    by_id = {PurePosixPath(p).stem: (p, checksum) for p, checksum in listing.items()}
    missing = [i for i in frame[ID] if i not in by_id]
    if missing:
        raise VersioningError(
            f"{where}: {len(missing)} Id(s) have no image under {IMAGES} at commit {commit.id}, "
            f"e.g. {missing[0]!r}"
        )
    paths = {i: by_id[i][0] for i in frame[ID]}

    def load(image_id: str) -> bytes:
        if image_id not in paths:
            raise KeyError(f"Id {image_id!r} is not in split {split!r} of commit {commit.id}")
        with _explained(settings, f"reading {paths[image_id]} at commit {commit.id}"):
            return _read(ref, paths[image_id])

    return LabeledImages(
        frame=frame,
        load=load,
        content_keys={i: by_id[i][1] for i in frame[ID]},
        source=f"lakefs://{settings.lakefs_repo}/{commit.id}/{split}",
    )


def sample_info(
    settings: Settings, commit_id: str, *, client: lakefs.Client | None = None
) -> dict[str, Any]:
    """``sample.json`` of the commit, plus ``commit_id`` and the synthetic pool's description."""
    from lakefs.exceptions import NotFoundException

    client = client or make_client(settings)
    repo = _repo(client, settings)
    commit = _resolve_commit(repo, settings, commit_id)
    ref = repo.commit(commit.id)
    with _explained(settings, f"reading {SAMPLE_JSON} at commit {commit.id}"):
        info = json.loads(_read(ref, SAMPLE_JSON))
        try:
            synth = json.loads(_read(ref, SYNTH_JSON))
        except NotFoundException:
            synth = None
    info["commit_id"] = commit.id
    if synth is not None:
        info["synth"] = synth
        info.setdefault("noise_floor", _noise_floor(synth))
    return info


def commit_time(
    settings: Settings, commit_id: str, *, client: lakefs.Client | None = None
) -> datetime:
    """When the commit was made (UTC)."""
    client = client or make_client(settings)
    commit = _resolve_commit(_repo(client, settings), settings, commit_id)
    return datetime.fromtimestamp(commit.creation_date, tz=UTC)


def _info(c: Any) -> CommitInfo:
    return CommitInfo(
        id=c.id,
        message=c.message,
        metadata=dict(c.metadata or {}),
        created=datetime.fromtimestamp(c.creation_date, tz=UTC),
        parents=tuple(c.parents or ()),
    )


def list_commits(
    settings: Settings,
    *,
    limit: int = 50,
    samples_only: bool = True,
    client: lakefs.Client | None = None,
) -> list[CommitInfo]:
    """Main's history, newest first: one commit per sample (``samples_only``) or every commit."""
    client = client or make_client(settings)
    branch = _repo(client, settings).branch(settings.lakefs_branch)
    out: list[CommitInfo] = []
    with _explained(settings, f"reading the history of branch {settings.lakefs_branch!r}"):
        # first_parent: the run branches' own commits are not main's story.
        for c in branch.log(first_parent=True, amount=min(max(limit, 1), 1000)):
            if samples_only and (c.metadata or {}).get("kind") != _KIND_SAMPLE:
                continue
            out.append(_info(c))
            if len(out) >= limit:
                break
    return out


def diff_commits(
    settings: Settings, a: str, b: str, *, client: lakefs.Client | None = None
) -> list[DiffEntry]:
    """Objects added, removed or changed going from ref ``a`` to ref ``b``."""
    client = client or make_client(settings)
    repo = _repo(client, settings)
    for ref in (a, b):
        with _explained(settings, f"reading commit {ref!r}"):
            repo.ref(ref).get_commit()
    with _explained(settings, f"diffing {a!r} against {b!r}"):
        return [
            DiffEntry(path=d.path, type=d.type, size_bytes=d.size_bytes)
            for d in repo.ref(a).diff(b, amount=_LIST_PAGE)
            if d.path_type == "object"
        ]


def summarize_diff(entries: list[DiffEntry]) -> dict[str, dict[str, int]]:
    """Counts per top-level prefix (``images/``, ``splits/``, ...) and change type."""
    counts: dict[str, Counter[str]] = {}
    for e in entries:
        head, sep, _ = e.path.partition("/")
        counts.setdefault(head + sep, Counter())[e.type] += 1
    return {
        prefix: {t: c[t] for t in ("added", "removed", "changed")}
        for prefix, c in sorted(counts.items())
    }
