"""The lakeFS emulator's store and HTTP layer in-process: merge rules, refs, persistence, errors."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from pathlib import Path

import pytest
from lakefs_emulator import create_app
from lakefs_emulator.records import (
    BadRequest,
    Conflict,
    Entry,
    Forbidden,
    NotFound,
    PreconditionFailed,
)
from lakefs_emulator.store import Store
from starlette.testclient import TestClient

pytestmark = pytest.mark.unit

R = "rep"  # the repository every store test uses


def _entry(path: str, data: bytes, **metadata: str) -> Entry:
    return Entry(
        path,
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data).hexdigest(),
        len(data),
        int(time.time()),
        metadata=metadata,
    )


def _put(store: Store, branch: str, path: str, data: bytes, **metadata: str) -> None:
    store.stage(R, branch, _entry(path, data, **metadata))


def _content(store: Store, ref: str) -> dict[str, str]:
    return {p: e.checksum for p, e in store.view(R, ref).items()}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state")
    s.create_repo(R, "local://r")
    yield s
    s.close()


def test_new_repository_has_one_parentless_commit(store: Store) -> None:
    (first,) = store.log(R, "main")
    assert first.parents == [] and first.message == "Repository created"
    assert store.get_branch(R, "main") == first.id and len(first.id) == 64


def test_names_namespaces_and_default_branch_rules(store: Store) -> None:
    with pytest.raises(BadRequest, match="invalid"):
        store.create_repo("Bad_Name", "local://x")
    with pytest.raises(Conflict):
        store.create_repo(R, "local://other")
    store.delete_repo(R)
    # Like lakeFS: a namespace that held a repository is never reused, even after deletion.
    with pytest.raises(BadRequest, match="already in use"):
        store.create_repo(R, "local://r")
    store.create_repo(R, "local://r2")
    with pytest.raises(Forbidden):
        store.delete_branch(R, "main")
    with pytest.raises(BadRequest):
        store.create_branch(R, "bad name", "main")


def test_reupload_of_identical_object_is_no_change(store: Store) -> None:
    _put(store, "main", "a", b"1", k="v")
    store.commit(R, "main", "a")
    _put(store, "main", "a", b"1", k="v")  # same size, checksum, metadata, content type
    assert store.diff_branch(R, "main") == []
    with pytest.raises(BadRequest, match="no changes"):
        store.commit(R, "main", "again")
    _put(store, "main", "a", b"1", k="other")  # metadata is part of an object's identity
    assert [c.type for c in store.diff_branch(R, "main")] == ["changed"]


def test_if_none_match_is_atomic(store: Store) -> None:
    results: list[str] = []

    def put() -> None:
        try:
            store.stage(R, "main", _entry("once", b"x"), if_none_match=True)
            results.append("ok")
        except PreconditionFailed:
            results.append("412")

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["412"] * 7 + ["ok"]


def test_three_way_merge_rules(store: Store) -> None:
    for path in ("keep", "edit-src", "edit-dst", "del-src", "both-same", "clash"):
        _put(store, "main", path, b"base")
    store.commit(R, "main", "base")
    store.create_branch(R, "dev", "main")
    _put(store, "dev", "edit-src", b"src")
    store.delete_objects(R, "dev", ["del-src"])
    _put(store, "dev", "both-same", b"same")
    _put(store, "dev", "clash", b"src")
    _put(store, "dev", "new-src", b"src")
    store.commit(R, "dev", "dev")
    _put(store, "main", "edit-dst", b"dst")
    _put(store, "main", "both-same", b"same")
    _put(store, "main", "clash", b"dst")
    main_head = store.commit(R, "main", "main").id

    changes = {(c.type, c.path) for c in store.diff_refs(R, "main", "dev")}
    assert changes == {
        ("changed", "edit-src"),
        ("removed", "del-src"),
        ("added", "new-src"),
        ("conflict", "clash"),
    }
    with pytest.raises(Conflict, match="clash"):
        store.merge(R, "dev", "main")
    merged = store.merge(R, "dev", "main", strategy="dest-wins")
    md5 = {
        k: hashlib.md5(v).hexdigest() for k, v in {"b": b"base", "s": b"src", "d": b"dst"}.items()
    }
    assert _content(store, "main") == {
        "keep": md5["b"],
        "edit-src": md5["s"],
        "edit-dst": md5["d"],
        "both-same": hashlib.md5(b"same").hexdigest(),
        "clash": md5["d"],
        "new-src": md5["s"],
    }
    assert merged.metadata[".lakefs.merge.strategy"] == "dest-wins"
    assert merged.parents == [main_head, store.get_branch(R, "dev")]


def test_ref_expressions_and_ambiguous_prefixes(store: Store) -> None:
    ids = []
    for i in range(20):
        _put(store, "main", "f", str(i).encode())
        ids.append(store.commit(R, "main", f"c{i}").id)
    assert store.resolve_commit(R, "main~2").id == ids[-3]
    assert store.resolve_commit(R, "main^").id == ids[-2]
    # 21 commits, 16 hex digits: some first digit is shared; lakeFS rejects ambiguous prefixes.
    firsts = [c.id[0] for c in store.log(R, "main")]
    shared = next(ch for ch in firsts if firsts.count(ch) > 1)
    with pytest.raises(NotFound):
        store.resolve_commit(R, shared)
    assert store.resolve_commit(R, ids[5][:7]).id == ids[5]
    store.create_tag(R, "v1", "main")
    with pytest.raises(BadRequest):
        store.resolve_commit(R, "v1@")  # '@' applies to branches only


def test_log_filters(store: Store) -> None:
    _put(store, "main", "a/1", b"1")
    store.commit(R, "main", "touch a")
    _put(store, "main", "b/1", b"1")
    store.commit(R, "main", "touch b")
    assert [c.message for c in store.log(R, "main", prefixes=["a/"])] == ["touch a"]
    assert [c.message for c in store.log(R, "main", paths=["b/1"])] == ["touch b"]
    stop = store.log(R, "main")[1].id
    assert [c.message for c in store.log(R, "main", stop_at=stop)] == ["touch b", "touch a"]


def test_state_survives_reopen_and_aborted_uploads_leave_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.create_repo(R, "local://r")
    _put(store, "main", "c", b"c")
    commit = store.commit(R, "main", "c")
    _put(store, "main", "staged", b"s")
    writer = store.blob_writer()
    writer.write(b"half an upload")
    writer.abort()
    store.close()

    reopened = Store(tmp_path / "s")
    assert reopened.get_branch(R, "main") == commit.id
    assert set(reopened.view(R, "main")) == {"c", "staged"}
    assert set(reopened.view(R, commit.id)) == {"c"}
    assert list((tmp_path / "s" / "tmp").iterdir()) == []
    blobs = [p for p in (tmp_path / "s" / "blobs").rglob("*") if p.is_file()]
    assert blobs == []  # staged entries above were never written as blobs
    reopened.close()


# --- HTTP layer (in-process) -----------------------------------------------------------------

_AUTH = {"Authorization": "Basic " + base64.b64encode(b"key:secret").decode()}


@pytest.fixture
def http(tmp_path: Path) -> TestClient:
    store = Store(tmp_path / "http")
    with TestClient(create_app(store, "key", "secret")) as client:
        client.headers.update(_AUTH)
        yield client
    store.close()


def test_http_errors_are_lakefs_shaped(http: TestClient) -> None:
    assert http.get("/api/v1/repositories", headers={"Authorization": ""}).status_code == 401
    wrong = "Basic " + base64.b64encode(b"key:nope").decode()
    reply = http.get("/api/v1/config", headers={"Authorization": wrong})
    assert reply.status_code == 401 and reply.json() == {"message": "error authenticating request"}
    assert http.get("/api/v1/healthcheck", headers={"Authorization": ""}).status_code == 204
    missing = http.get("/api/v1/repositories/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["message"]
    assert http.get("/api/v1/no/such/route").json()["message"]
    bad = http.post("/api/v1/repositories", content=b"{not json")
    assert bad.status_code == 400 and "JSON" in bad.json()["message"]
    reply = http.post("/api/v1/repositories", json={"name": "rr1", "storage_namespace": "s3://b"})
    assert reply.status_code == 400 and "local://" in reply.json()["message"]
    assert http.get("/api/v1/repositories", params={"amount": "x"}).status_code == 400


def test_http_multipart_upload_and_chunked_body(http: TestClient) -> None:
    repo = http.post("/api/v1/repositories", json={"name": "rr1", "storage_namespace": "local://m"})
    assert repo.status_code == 201 and repo.json()["default_branch"] == "main"
    url = "/api/v1/repositories/rr1/branches/main/objects"
    multipart = http.post(
        url, params={"path": "m.txt"}, files={"content": ("m.txt", b"hi", "text/plain")}
    )
    assert multipart.status_code == 201 and multipart.json()["content_type"] == "text/plain"

    def body():
        yield b"chunk-1 "
        yield b"chunk-2"

    chunked = http.post(
        url, params={"path": "c.txt"}, content=body(), headers={"x-lakefs-meta-Owner": "me"}
    )
    assert chunked.status_code == 201
    got = http.get("/api/v1/repositories/rr1/refs/main/objects", params={"path": "c.txt"})
    assert got.content == b"chunk-1 chunk-2"
    assert got.headers["etag"] == f'"{hashlib.md5(b"chunk-1 chunk-2").hexdigest()}"'
    stat = http.get("/api/v1/repositories/rr1/refs/main/objects/stat", params={"path": "c.txt"})
    assert stat.json()["metadata"] == {"owner": "me"}  # header names arrive lower-cased
    head = http.head("/api/v1/repositories/rr1/refs/main/objects", params={"path": "c.txt"})
    assert head.status_code == 200 and head.headers["content-length"] == "15"


# --- CLI -------------------------------------------------------------------------------------


def test_cli_serves_what_the_settings_point_at(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import lakefs_emulator
    from typer.testing import CliRunner

    from pawpaw.cli import app
    from pawpaw.config import get_settings

    monkeypatch.setenv("PAWPAW_LAKEFS_ENDPOINT", "http://127.0.0.1:9123")
    monkeypatch.setenv("PAWPAW_LAKEFS_ACCESS_KEY_ID", "k1")
    monkeypatch.setenv("PAWPAW_LAKEFS_SECRET_ACCESS_KEY", "s1")
    get_settings.cache_clear()
    calls = []
    monkeypatch.setattr(lakefs_emulator, "serve", lambda *a: calls.append(a))
    assert CliRunner().invoke(app, ["lakefs-emulator"]).exit_code == 0
    assert calls == [(get_settings().data_dir / "lakefs", "127.0.0.1", 9123, "k1", "s1")]


def test_cli_reports_a_busy_port_in_one_line(settings) -> None:
    import socket

    from typer.testing import CliRunner

    from pawpaw.cli import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["lakefs-emulator", "--port", str(port)])
    assert result.exit_code == 1
    assert "error: cannot serve on 127.0.0.1" in result.output
    assert "Traceback" not in result.output
