"""Committing a monthly sample to lakeFS: every sample is one commit, and its id is the dataset.

The layout it writes on main is described in :mod:`pawpaw.versioning.client`. How a sample is
committed (atomic and idempotent, keyed by the sample ``key``):

1. The tag ``sample-<safe key>`` exists: return its commit (``created=False``), after checking
   that it holds the same sample (fingerprint); a different sample under the same key is refused.
2. Main's history already holds a sample commit with this key (a run died before tagging it):
   tag it and return it.
3. The run branch ``run-<safe key>`` is created from main. A leftover one (a failed run) is
   reused only if it holds a finished commit of this very sample on top of main's current head;
   otherwise it is deleted and redone.
4. Images are identified by their signature bytes (:func:`pawpaw.data.images.identify`: the
   extension and content type; the reader already decoded them) and uploaded
   concurrently (``settings.lakefs_upload_workers``) straight through the lakeFS API (no
   pre-signed URLs), skipping images whose bytes are
   already there (MD5 equals the lakeFS checksum); objects of the previous sample that are not
   in this one are deleted; splits and ``sample.json`` are written; the run branch is committed.
5. The run branch is merged into main; the merge commit carries the sample's metadata, is
   tagged, and is the dataset's identity. The run branch is then deleted.

Anything failing before step 5 leaves main unchanged. Main's first-parent history therefore
holds one commit per sample (plus lakeFS's initial commit); :func:`pawpaw.versioning.list_commits`
lists those. ``<safe key>`` is the key reduced to ``[A-Za-z0-9_-]`` plus 8 hex of its sha256, so
distinct keys never share a tag. Two different keys committed at the same moment: the second
merge is refused ("main moved") rather than mixing two samples; rerunning it redoes it on the
new head.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import subprocess
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pawpaw.config import PROJECT_ROOT, Settings
from pawpaw.data.images import ImageError, identify
from pawpaw.data.labeled import LabeledImages
from pawpaw.data.sampling import SampleSpec, draw_sample, flag_shares
from pawpaw.progress import Progress, say
from pawpaw.schema import COLUMNS, ID, SPLITS, TARGET
from pawpaw.synth.truth import SYNTH_FILE, pool_noise_floor, split_noise_floors
from pawpaw.versioning.client import (
    IMAGES,
    KIND_RUN,
    KIND_SAMPLE,
    MANAGED,
    SAMPLE_JSON,
    SPLITS_DIR,
    SYNTH_JSON,
    VersioningError,
    ensure_repository,
    explained,
    listing,
    make_client,
    upload_workers,
)

if TYPE_CHECKING:  # the SDK is imported lazily: `pawpaw --help` should not pay for it
    import lakefs

__all__ = ["SampleCommit", "commit_sample", "sample_tag"]

_DELETE_BATCH = 1000  # lakeFS's limit of paths per delete_objects call


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
class _File:
    """One object to write: path, bytes, content type."""

    path: str
    data: bytes = field(repr=False)
    content_type: str


_say = functools.partial(say, tag="sample")


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


# --- committing a sample ---------------------------------------------------------------------


def _upload_object(branch: lakefs.Branch, item: _File) -> None:
    """Write one object on the branch through the lakeFS API (a seam the tests break)."""
    branch.object(item.path).upload(
        item.data, mode="wb", pre_sign=False, content_type=item.content_type
    )


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
        doc["noise_floor"] = pool_noise_floor(synth)
        doc["noise_floor_by_split"] = split_noise_floors(_pool_dir(pool), splits)
    return doc


def _metadata(
    spec: SampleSpec, key: str, pool: LabeledImages, fingerprint: str, code_version: str
) -> dict[str, str]:
    # lakeFS metadata values are strings.
    return {
        "kind": KIND_SAMPLE,
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
            if meta.get("kind") == KIND_SAMPLE and meta.get("key") == key:
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
            meta.get("kind") == KIND_RUN
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
    bar = Progress(len(ids), "images", enabled=progress, tag="sample")
    paths: set[str] = set()
    lock = threading.Lock()

    def one(image_id: str) -> None:
        try:
            data = pool.load(image_id)
        except Exception as exc:
            raise VersioningError(
                f"reading the pool image of Id {image_id!r} failed: {exc}"
            ) from exc
        try:
            image = identify(data)
        except ImageError as exc:
            raise VersioningError(f"the pool image of Id {image_id!r} {exc.problem}") from None
        path = f"{IMAGES}{image_id}{image.extension}"
        with lock:
            paths.add(path)
        unchanged = present.get(path) == hashlib.md5(data).hexdigest()
        if not unchanged:
            try:
                _upload_object(branch, _File(path, data, image.content_type))
            except VersioningError:
                raise
            except Exception as exc:
                raise VersioningError(
                    f"uploading {path} to branch {branch.id!r} of repository "
                    f"{settings.lakefs_repo!r} at {settings.lakefs_endpoint} failed ({exc}); "
                    f"branch {settings.lakefs_branch!r} is unchanged, rerun to retry"
                ) from exc
        bar.advance(skipped=int(unchanged))

    with ThreadPoolExecutor(
        max_workers=upload_workers(settings), thread_name_prefix="lakefs-up"
    ) as ex:
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

    with explained(settings, f"looking up sample key {key!r}"):
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
    with explained(settings, f"preparing run branch {_run_branch(key)!r}"):
        run, finished = _prepare_run_branch(repo, settings, key, fingerprint, progress)
    if not finished:
        with explained(settings, f"writing the sample to branch {run.id!r}"):
            present = listing(run, "")
            present = {p: c for p, c in present.items() if p.startswith(MANAGED)}
            ids = [i for s in SPLITS for i in splits[s][ID]]
            _say(progress, f"{len(ids)} images -> {run.id} ({upload_workers(settings)} workers)")
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
                metadata={**metadata, "kind": KIND_RUN},
                allow_empty=True,
            )

    with explained(settings, f"merging {run.id!r} into {settings.lakefs_branch!r}"):
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
    path = folder / SYNTH_FILE if folder else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VersioningError(f"{path}: not readable JSON ({exc})") from exc
