"""lakeFS contract: what our code relies on, through the official SDKs (`lakefs`, `lakefs_sdk`).

Runs against the project's emulator by default and, unchanged, against a real lakeFS when
LAKEFS_TEST_ENDPOINT (+ LAKEFS_TEST_ACCESS_KEY_ID / _SECRET_ACCESS_KEY / _NAMESPACE_ROOT) is
set: the fixtures in tests/fixtures/lakefs.py make the switch. Where the emulator is known to
differ, the test says so.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import lakefs
import lakefs_sdk
import pytest
from lakefs.exceptions import (
    BadRequestException,
    ConflictException,
    NotAuthorizedException,
    NotFoundException,
    ObjectExistsException,
    ObjectNotFoundException,
)

from tests.fixtures.lakefs import LakeFSEndpoint, lakefs_namespace

# lakefs_real: `LAKEFS_TEST_ENDPOINT=... pytest -m lakefs_real` runs exactly this suite on lakeFS.
pytestmark = [pytest.mark.integration, pytest.mark.lakefs_real]


def _put(branch: lakefs.Branch, path: str, data: bytes | str, **kwargs) -> None:
    branch.object(path).upload(data, **kwargs)


def _read(repo: lakefs.Repository, ref: str, path: str) -> bytes:
    return repo.ref(ref).object(path).reader("rb").read()


def _paths(ref: lakefs.Reference, **kwargs) -> list[str]:
    return [o.path for o in ref.objects(**kwargs)]


def _sdk(client: lakefs.Client) -> lakefs_sdk.client.LakeFSClient:
    return client.sdk_client


# --- server ----------------------------------------------------------------------------------


def test_server_config_health_and_setup(lakefs_server: LakeFSEndpoint, lakefs_client) -> None:
    assert httpx.get(f"{lakefs_server.endpoint}/api/v1/healthcheck").status_code == 204
    setup = httpx.get(f"{lakefs_server.endpoint}/api/v1/setup_lakefs")
    assert setup.status_code == 200 and setup.json()["state"] == "initialized"
    # Uploads must go through the API (the production compose disables pre-signed URLs too).
    assert lakefs_client.storage_config.pre_sign_support is False
    assert lakefs_client.storage_config.blockstore_namespace_validity_regex
    if lakefs_server.is_emulator:
        assert lakefs_client.version.startswith("pawpaw-lakefs-emulator-")


def test_bad_credentials_are_rejected(lakefs_server: LakeFSEndpoint, lakefs_repo) -> None:
    bad = lakefs.Client(
        host=lakefs_server.endpoint, username=lakefs_server.access_key_id, password="wrong"
    )
    with pytest.raises(NotAuthorizedException):
        lakefs.Repository(lakefs_repo.id, client=bad).properties  # noqa: B018
    with pytest.raises(lakefs_sdk.exceptions.UnauthorizedException):
        bad.sdk_client.repositories_api.list_repositories()
    reply = httpx.get(f"{lakefs_server.endpoint}/api/v1/repositories")  # no auth at all
    assert reply.status_code == 401 and reply.json()["message"]


# --- repositories and branches -----------------------------------------------------------------


def test_repository_lifecycle(lakefs_server: LakeFSEndpoint, lakefs_client) -> None:
    name = f"test-{uuid.uuid4().hex[:12]}"
    ns = lakefs_namespace(lakefs_server, name)
    repo = lakefs.Repository(name, client=lakefs_client).create(storage_namespace=ns)
    again = lakefs.Repository(name, client=lakefs_client).create(
        storage_namespace=ns, exist_ok=True
    )
    assert again.properties.storage_namespace == ns
    assert again.properties.default_branch == "main"
    with pytest.raises(ConflictException):
        lakefs.Repository(name, client=lakefs_client).create(storage_namespace=ns)
    assert name in [r.id for r in lakefs.repositories(client=lakefs_client, prefix=name)]

    # A new repository starts with one parentless commit on its default branch.
    (first,) = list(repo.branch("main").log())
    assert first.parents == [] and first.message == "Repository created"
    assert len(first.id) == 64

    repo.delete()
    with pytest.raises(NotFoundException):
        lakefs.Repository(name, client=lakefs_client).properties  # noqa: B018


def test_branches(lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    _put(main, "a.txt", "a")
    main.commit("add a")
    dev = lakefs_repo.branch("dev").create("main")
    assert dev.head.id == main.head.id
    assert _read(lakefs_repo, "dev", "a.txt") == b"a"
    with pytest.raises(ConflictException):
        lakefs_repo.branch("dev").create("main")
    lakefs_repo.branch("dev").create("main", exist_ok=True)
    assert {b.id for b in lakefs_repo.branches()} == {"main", "dev"}

    # A branch made from a branch takes its head commit, not its staged changes.
    _put(main, "staged.txt", "s")
    lakefs_repo.branch("from-staged").create("main")
    assert _paths(lakefs_repo.ref("from-staged")) == ["a.txt"]

    dev.delete()
    with pytest.raises(NotFoundException):
        lakefs_repo.branch("dev").head  # noqa: B018
    with pytest.raises(NotFoundException):
        lakefs_repo.branch("x").create("no-such-ref")


# --- objects ---------------------------------------------------------------------------------


def test_upload_read_stat_with_metadata(lakefs_client, lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    data = bytes(range(256)) * 40
    _put(main, "img/x.jpg", data, content_type="image/jpeg", metadata={"split": "train"})
    assert _read(lakefs_repo, "main", "img/x.jpg") == data
    stat = main.object("img/x.jpg").stat()
    assert stat.size_bytes == len(data)
    assert stat.content_type == "image/jpeg"
    assert stat.metadata == {"split": "train"}
    assert stat.physical_address and stat.mtime > 0
    # The stat through the generated SDK carries the path type.
    raw = _sdk(lakefs_client).objects_api.stat_object(lakefs_repo.id, "main", "img/x.jpg")
    assert raw.path_type == "object" and raw.checksum == stat.checksum

    # Overwrite replaces content and metadata; the checksum follows the bytes.
    _put(main, "img/x.jpg", b"other", metadata={"split": "test"})
    stat2 = lakefs_repo.branch("main").object("img/x.jpg").stat()
    assert (stat2.size_bytes, stat2.metadata) == (5, {"split": "test"})
    assert stat2.checksum != stat.checksum


def test_exclusive_create(lakefs_server: LakeFSEndpoint, lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    _put(main, "once.txt", "1", mode="x")
    with pytest.raises(ObjectExistsException):
        _put(main, "once.txt", "2", mode="x")
    assert _read(lakefs_repo, "main", "once.txt") == b"1"
    # The server enforces If-None-Match itself (the SDK's pre-check is only a shortcut).
    reply = httpx.post(
        f"{lakefs_server.endpoint}/api/v1/repositories/{lakefs_repo.id}/branches/main/objects",
        params={"path": "once.txt"},
        content=b"3",
        headers={"If-None-Match": "*", "Content-Type": "application/octet-stream"},
        auth=(lakefs_server.access_key_id, lakefs_server.secret_access_key),
    )
    assert reply.status_code == 412
    assert _read(lakefs_repo, "main", "once.txt") == b"1"


def test_range_reads(lakefs_client, lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    _put(main, "r.bin", b"0123456789")
    with main.object("r.bin").reader("rb") as f:
        f.seek(3)
        assert f.read(4) == b"3456"
        assert f.read() == b"789"
        assert f.read(1) == b""
    api = _sdk(lakefs_client).objects_api
    part = api.get_object_with_http_info(lakefs_repo.id, "main", "r.bin", range="bytes=2-4")
    assert part.status_code == 206 and part.data == b"234"
    assert part.headers["Content-Range"] == "bytes 2-4/10"
    tail = api.get_object_with_http_info(lakefs_repo.id, "main", "r.bin", range="bytes=-3")
    assert tail.data == b"789"
    with pytest.raises(lakefs_sdk.exceptions.ApiException) as exc:
        api.get_object(lakefs_repo.id, "main", "r.bin", range="bytes=10-")
    assert exc.value.status == 416
    assert main.object("r.bin").exists() and not main.object("nope.bin").exists()


def test_list_with_delimiter_and_pagination(lakefs_client, lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    paths = ["a/1", "a/2", "b/1", "c", "d/e/f", "d/g"]
    for p in paths:
        _put(main, p, p)
    assert _paths(main) == paths
    top = list(main.objects(delimiter="/"))
    assert [o.path for o in top] == ["a/", "b/", "c", "d/"]
    assert [type(o).__name__ for o in top] == ["CommonPrefix"] * 2 + ["ObjectInfo", "CommonPrefix"]
    assert _paths(main, prefix="d/", delimiter="/") == ["d/e/", "d/g"]
    assert _paths(main, prefix="a/") == ["a/1", "a/2"]
    assert _paths(main, after="b/1") == ["c", "d/e/f", "d/g"]
    assert _paths(main, max_amount=3) == paths[:3]

    # Pages of two: has_more / next_offset walk the whole listing exactly once.
    api, seen, after, pages = _sdk(lakefs_client).objects_api, [], "", 0
    while True:
        page = api.list_objects(lakefs_repo.id, "main", amount=2, after=after)
        seen += [o.path for o in page.results]
        pages += 1
        assert page.pagination.results == len(page.results) <= 2
        if not page.pagination.has_more:
            break
        after = page.pagination.next_offset
    assert seen == paths and pages == 3
    # Same with common prefixes: the offset of a prefix skips everything under it.
    page = api.list_objects(lakefs_repo.id, "main", amount=1, delimiter="/")
    assert [o.path for o in page.results] == ["a/"] and page.pagination.has_more
    nxt = api.list_objects(
        lakefs_repo.id, "main", amount=1, delimiter="/", after=page.pagination.next_offset
    )
    assert [o.path_type for o in nxt.results] == ["common_prefix"]
    assert [o.path for o in nxt.results] == ["b/"]


def test_delete_objects(lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    for p in ["x/1", "x/2", "x/3", "keep"]:
        _put(main, p, p)
    main.commit("four")
    main.object("x/1").delete()
    main.delete_objects(["x/2", "x/3", "never-existed"])  # missing paths are not an error
    assert _paths(main) == ["keep"]
    assert _paths(lakefs_repo.ref(main.head.id)) == ["keep", "x/1", "x/2", "x/3"]
    main.commit("three gone")
    assert _paths(main) == ["keep"]
    with pytest.raises(ObjectNotFoundException):
        _read(lakefs_repo, "main", "x/1")


# --- commits, refs, log ---------------------------------------------------------------------


def test_commit_metadata_and_empty_commits(lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    before = main.head.id
    _put(main, "f", "1")
    ref = main.commit("sample 2024-01", metadata={"key": "2024-01", "n": "10"})
    commit = lakefs_repo.commit(ref.id).get_commit()
    assert commit.id == ref.id == main.head.id
    assert commit.message == "sample 2024-01"
    assert commit.metadata == {"key": "2024-01", "n": "10"}
    assert commit.parents == [before]
    assert commit.creation_date > 0 and commit.committer
    with pytest.raises(BadRequestException):  # nothing staged: "no changes"
        main.commit("empty")
    empty = main.commit("empty on purpose", allow_empty=True)
    assert lakefs_repo.commit(empty.id).get_commit().parents == [ref.id]


def test_log_order_parents_and_pagination(lakefs_client, lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    ids = []
    for i in range(3):
        _put(main, f"f{i}", str(i))
        ids.append(main.commit(f"c{i}").id)
    log = list(main.log())
    assert [c.message for c in log] == ["c2", "c1", "c0", "Repository created"]
    for child, parent in itertools.pairwise(log):
        assert child.parents == [parent.id]
    assert [c.id for c in main.log(max_amount=2)] == ids[::-1][:2]
    assert [c.id for c in lakefs_repo.ref(ids[1]).log()][:2] == [ids[1], ids[0]]

    api = _sdk(lakefs_client).refs_api
    page = api.log_commits(lakefs_repo.id, "main", amount=2)
    assert [c.id for c in page.results] == ids[::-1][:2] and page.pagination.has_more
    rest = api.log_commits(lakefs_repo.id, "main", amount=2, after=page.pagination.next_offset)
    assert [c.message for c in rest.results] == ["c0", "Repository created"]
    assert not rest.pagination.has_more


def test_refs_resolve_branch_commit_short_id_and_tag(lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    _put(main, "v", "one")
    c1 = main.commit("one").id
    lakefs_repo.tag("v1").create(c1)
    _put(main, "v", "two")  # staged: visible on the branch only
    assert _read(lakefs_repo, "main", "v") == b"two"
    for ref in (c1, c1[:12], "v1", "main@"):
        assert _read(lakefs_repo, ref, "v") == b"one", ref
    c2 = main.commit("two").id
    assert _read(lakefs_repo, c2, "v") == b"two"
    assert _read(lakefs_repo, "main~1", "v") == b"one"
    assert lakefs_repo.ref(c1[:10]).get_commit().id == c1
    assert lakefs_repo.ref("v1").get_commit().id == c1
    with pytest.raises(NotFoundException):
        lakefs_repo.ref("0" * 64).get_commit()


def test_tags(lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    _put(main, "f", "1")
    c1 = main.commit("c1").id
    tag = lakefs_repo.tag("sample-2024-01").create("main")
    assert tag.get_commit().id == c1
    with pytest.raises(ConflictException):
        lakefs_repo.tag("sample-2024-01").create(c1)
    lakefs_repo.tag("sample-2024-01").create(c1, exist_ok=True)
    assert [t.id for t in lakefs_repo.tags()] == ["sample-2024-01"]
    lakefs_repo.tag("sample-2024-01").delete()
    assert list(lakefs_repo.tags()) == []
    with pytest.raises(NotFoundException):
        lakefs_repo.tag("sample-2024-01").get_commit()


# --- diff and merge ----------------------------------------------------------------------


def _changes(changes) -> set[tuple[str, str, str]]:
    return {(c.type, c.path, c.path_type) for c in changes}


def test_diff_between_commits(lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    _put(main, "a", "1")
    _put(main, "b", "1")
    c1 = main.commit("c1").id
    _put(main, "a", "2")
    main.object("b").delete()
    _put(main, "c", "1")
    c2 = main.commit("c2").id
    expected = {("changed", "a", "object"), ("removed", "b", "object"), ("added", "c", "object")}
    assert _changes(lakefs_repo.ref(c1).diff(c2)) == expected
    # Three-dot: the left side's own later changes do not show up as changes of the right.
    dev = lakefs_repo.branch("dev").create(c1)
    _put(dev, "d", "1")
    dev.commit("d on dev")
    assert _changes(main.diff(dev)) == {("added", "d", "object")}
    assert _changes(dev.diff(main)) == expected


def test_uncommitted_changes(lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    _put(main, "a", "1")
    _put(main, "b", "1")
    main.commit("base")
    assert list(main.uncommitted()) == []
    _put(main, "a", "2")
    main.object("b").delete()
    _put(main, "n/c", "1")
    assert _changes(main.uncommitted()) == {
        ("changed", "a", "object"),
        ("removed", "b", "object"),
        ("added", "n/c", "object"),
    }
    main.reset_changes(path_type="object", path="a")
    assert {c.path for c in main.uncommitted()} == {"b", "n/c"}
    main.reset_changes()
    assert list(main.uncommitted()) == []


def test_merge_when_destination_did_not_move(lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    base = main.head.id
    dev = lakefs_repo.branch("dev").create("main")
    _put(dev, "new", "1")
    dev_head = dev.commit("on dev").id
    merged = dev.merge_into(main, message="bring dev", metadata={"why": "test"})
    assert main.head.id == merged
    commit = lakefs_repo.commit(merged).get_commit()
    # lakeFS does not fast-forward: it always writes a merge commit (dest first, then source).
    assert commit.parents == [base, dev_head]
    assert commit.message == "bring dev" and commit.metadata["why"] == "test"
    assert _paths(main) == ["new"]
    with pytest.raises(BadRequestException):  # already merged: nothing to merge
        dev.merge_into(main)


def test_true_merge_and_conflicts(lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    _put(main, "shared", "base")
    main.commit("base")
    dev = lakefs_repo.branch("dev").create("main")
    _put(dev, "dev-only", "d")
    dev.commit("dev side")
    _put(main, "main-only", "m")
    main.commit("main side")
    merged = dev.merge_into(main)
    assert _paths(main) == ["dev-only", "main-only", "shared"]
    assert len(lakefs_repo.commit(merged).get_commit().parents) == 2

    _put(dev, "shared", "dev wins?")
    dev.commit("dev edits shared")
    _put(main, "shared", "main wins?")
    main.commit("main edits shared")
    with pytest.raises(ConflictException):
        dev.merge_into(main)
    assert _read(lakefs_repo, "main", "shared") == b"main wins?"
    dev.merge_into(main, strategy="source-wins")
    assert _read(lakefs_repo, "main", "shared") == b"dev wins?"


def test_merge_into_dirty_branch_is_refused(lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    dev = lakefs_repo.branch("dev").create("main")
    _put(dev, "x", "1")
    dev.commit("x")
    _put(main, "staged", "1")
    with pytest.raises(BadRequestException):
        dev.merge_into(main)


def test_transaction_commits_and_merges(lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    with main.transact(commit_message="tx", commit_metadata={"k": "v"}) as tx:
        _put(tx, "in-tx", "1")
    assert _paths(main) == ["in-tx"]
    assert [b.id for b in lakefs_repo.branches()] == ["main"]  # the tx branch is gone


# --- errors and concurrency ------------------------------------------------------------------


def test_missing_things_are_not_found(lakefs_client, lakefs_repo: lakefs.Repository) -> None:
    with pytest.raises(NotFoundException):
        lakefs.Repository("no-such-repo-x", client=lakefs_client).properties  # noqa: B018
    with pytest.raises(NotFoundException):
        lakefs_repo.branch("no-such-branch").head  # noqa: B018
    with pytest.raises(ObjectNotFoundException):
        lakefs_repo.branch("main").object("no/such/object").stat()
    with pytest.raises(NotFoundException):
        _put(lakefs_repo.branch("no-such-branch"), "f", "1")
    with pytest.raises(NotFoundException):
        lakefs_repo.branch("no-such-branch").commit("nothing")


def test_concurrent_uploads_then_one_commit(lakefs_repo: lakefs.Repository) -> None:
    main = lakefs_repo.branch("main")
    blobs = {f"img/{i:03d}.bin": hashlib.sha256(str(i).encode()).digest() * 64 for i in range(96)}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: _put(main, kv[0], kv[1]), blobs.items()))
    ref = main.commit(f"{len(blobs)} objects")
    assert _paths(lakefs_repo.ref(ref.id)) == sorted(blobs)
    assert _read(lakefs_repo, ref.id, "img/042.bin") == blobs["img/042.bin"]


# --- emulator only ---------------------------------------------------------------------------


def test_emulator_restart_keeps_state(lakefs_server: LakeFSEndpoint, tmp_path: Path) -> None:
    if not lakefs_server.is_emulator:
        pytest.skip("restarts a server process: only the emulator can be restarted by a test")
    from lakefs_emulator import EmulatorServer

    def client(server: EmulatorServer) -> lakefs.Client:
        return lakefs.Client(
            host=server.endpoint,
            username=server.access_key_id,
            password=server.secret_access_key,
        )

    with EmulatorServer(tmp_path / "state") as server:
        repo = lakefs.Repository("restart", client=client(server)).create("local://restart")
        main = repo.branch("main")
        _put(main, "committed", "c", metadata={"m": "1"})
        commit_id = main.commit("c", metadata={"k": "v"}).id
        repo.tag("t").create(commit_id)
        dev = repo.branch("dev").create("main")
        _put(dev, "staged", "s")
    with EmulatorServer(tmp_path / "state") as server:
        repo = lakefs.Repository("restart", client=client(server))
        assert repo.properties.storage_namespace == "local://restart"
        assert repo.branch("main").head.id == commit_id
        assert repo.tag("t").get_commit().metadata == {"k": "v"}
        assert repo.branch("main").object("committed").stat().metadata == {"m": "1"}
        assert _read(repo, "dev", "staged") == b"s"  # staging survives too
        assert _changes(repo.branch("dev").uncommitted()) == {("added", "staged", "object")}
