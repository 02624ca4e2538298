"""Samples versioned in lakeFS (the emulator, or a real lakeFS via LAKEFS_TEST_ENDPOINT)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pawpaw import versioning
from pawpaw.config import Settings
from pawpaw.data.labeled import LabeledImages
from pawpaw.data.sampling import SampleSpec, draw_sample
from pawpaw.schema import ID, SPLITS, TARGET
from pawpaw.versioning import VersioningError
from pawpaw.versioning import commit as committing
from tests.fixtures.lakefs import lakefs_namespace

pytestmark = pytest.mark.integration

COMMIT_ID = re.compile(r"^[0-9a-f]{64}$")


def _settings(tmp_path: Path, server, repo: str, **kw) -> Settings:
    values = {
        "data_dir": tmp_path / "data",
        "lakefs_endpoint": server.endpoint,
        "lakefs_access_key_id": server.access_key_id,
        "lakefs_secret_access_key": server.secret_access_key,
        "lakefs_repo": repo,
        "lakefs_branch": "main",
        "lakefs_storage_namespace": lakefs_namespace(server, repo),
        "lakefs_upload_workers": 4,
    }
    values.update(kw)
    return Settings(**values)


@pytest.fixture
def lf(tmp_path: Path, lakefs_server, lakefs_repo) -> Settings:
    return _settings(tmp_path, lakefs_server, lakefs_repo.id)


@pytest.fixture(scope="module")
def pool(synthetic_pool: Path) -> LabeledImages:
    from pawpaw.data.kaggle import read_dataset

    return read_dataset(synthetic_pool)


def _spec(n: int = 80, seed: int = 1, **kw) -> SampleSpec:
    return SampleSpec(n=n, seed=seed, val_fraction=0.15, test_fraction=0.25, **kw)


def _main(lf: Settings):
    import lakefs

    client = versioning.make_client(lf)
    return lakefs.Repository(lf.lakefs_repo, client=client).branch("main")


def _tree(ref) -> dict[str, str]:
    return {o.path: o.checksum for o in ref.objects()}


def test_sample_commit_is_idempotent_by_key(lf: Settings, pool: LabeledImages) -> None:
    spec = _spec(bias={"Eyes": 0.5})
    first = versioning.commit_sample(lf, pool, spec, key="2026-10")
    assert first.created and COMMIT_ID.match(first.commit_id)
    assert first.sizes == spec.sizes
    assert first.tag == versioning.sample_tag("2026-10")
    log_before = versioning.list_commits(lf, samples_only=False)

    again = versioning.commit_sample(lf, pool, spec, key="2026-10")
    assert (again.commit_id, again.created) == (first.commit_id, False)
    assert versioning.list_commits(lf, samples_only=False) == log_before
    # Nothing left behind: no run branch, main at the sample commit.
    main = _main(lf)
    assert main.get_commit().id == first.commit_id
    assert [b.id for b in _branches(lf)] == ["main"]

    [info] = versioning.list_commits(lf)
    assert info.id == first.commit_id and info.key == "2026-10"
    meta = info.metadata
    assert (meta["seed"], meta["n"], meta["pool"]) == ("1", "80", pool.source)
    assert meta["bias"] == '{"Eyes": 0.5}'
    assert meta["sizes"] == '{"test": 20, "train": 48, "val": 12}'
    assert meta["code_version"]

    with pytest.raises(VersioningError, match=r"already names commit .* different sample"):
        versioning.commit_sample(lf, pool, _spec(seed=2), key="2026-10")

    # A crash between tagging and deleting the run branch: the next run cleans it up.
    import lakefs

    repo = lakefs.Repository(lf.lakefs_repo, client=versioning.make_client(lf))
    repo.branch(committing._run_branch("2026-10")).create(first.commit_id)
    assert len(_branches(lf)) == 2
    assert versioning.commit_sample(lf, pool, spec, key="2026-10").commit_id == first.commit_id
    assert [b.id for b in _branches(lf)] == ["main"]


def _branches(lf: Settings) -> list:
    import lakefs

    return list(lakefs.Repository(lf.lakefs_repo, client=versioning.make_client(lf)).branches())


def test_repository_is_created_when_missing(tmp_path: Path, lakefs_server, pool) -> None:
    import lakefs

    name = f"auto-{uuid.uuid4().hex[:10]}"
    lf = _settings(tmp_path, lakefs_server, name)
    try:
        result = versioning.commit_sample(lf, pool, _spec(n=30), key="first")
        repo = lakefs.Repository(name, client=versioning.make_client(lf))
        assert repo.properties.default_branch == "main"
        assert repo.branch("main").get_commit().id == result.commit_id
    finally:
        with contextlib.suppress(Exception):
            lakefs.Repository(name, client=versioning.make_client(lf)).delete()


def _assert_split_matches(lf, commit_id, pool, spec) -> None:
    expected = draw_sample(pool.frame, spec)
    for split in SPLITS:
        got = versioning.load_split(lf, commit_id, split)
        pd.testing.assert_frame_equal(got.frame, expected[split], check_dtype=False)
        assert got.source == f"lakefs://{lf.lakefs_repo}/{commit_id}/{split}"
        assert set(got.content_keys) == set(expected[split][ID])
        for image_id in got.frame[ID]:
            data = got.load(image_id)
            assert data == pool.load(image_id)
            assert got.content_keys[image_id] == hashlib.md5(data).hexdigest()


def test_failure_midway_leaves_main_unchanged_then_retry_completes(
    lf: Settings, pool: LabeledImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    month1 = versioning.commit_sample(lf, pool, _spec(seed=1), key="2026-10")
    main = _main(lf)
    tree_before = _tree(main)

    real_upload = committing._upload_object
    calls = {"n": 0}
    lock = threading.Lock()

    def flaky(branch, item):
        with lock:
            calls["n"] += 1
            if calls["n"] > 20:
                raise ConnectionError("network cut")
        real_upload(branch, item)

    monkeypatch.setattr(committing, "_upload_object", flaky)
    spec2 = _spec(seed=2, bias={"Eyes": 0.5})
    with pytest.raises(VersioningError, match="unchanged, rerun to retry") as info:
        versioning.commit_sample(lf, pool, spec2, key="2026-11")
    assert "network cut" in str(info.value)
    assert main.get_commit().id == month1.commit_id
    assert _tree(main) == tree_before
    assert next(iter(main.uncommitted()), None) is None
    assert "run-" in " ".join(b.id for b in _branches(lf))  # the leftover is there ...

    monkeypatch.setattr(committing, "_upload_object", real_upload)
    month2 = versioning.commit_sample(lf, pool, spec2, key="2026-11")
    assert month2.created and month2.commit_id != month1.commit_id
    assert [b.id for b in _branches(lf)] == ["main"]  # ... and gone after the retry
    _assert_split_matches(lf, month2.commit_id, pool, spec2)
    # Exactly one sample in the commit: images are the sample's Ids, nothing else.
    ids = {i for f in draw_sample(pool.frame, spec2).values() for i in f[ID]}
    images = {Path(p).stem for p in _tree(main) if p.startswith("images/")}
    assert images == ids
    assert len(versioning.list_commits(lf)) == 2


def test_failure_after_the_run_commit_is_resumed(
    lf: Settings, pool: LabeledImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakefs.reference import Reference

    def merge_fails(self, destination_branch, **kwargs):
        raise ConnectionError("merge interrupted")

    before = _main(lf).get_commit().id
    with monkeypatch.context() as patch:
        patch.setattr(Reference, "merge_into", merge_fails)
        with pytest.raises(VersioningError, match="merge interrupted"):
            versioning.commit_sample(lf, pool, _spec(n=30), key="resume")
    assert _main(lf).get_commit().id == before
    [run] = [b for b in _branches(lf) if b.id != "main"]
    staged = run.get_commit().id

    uploads = []
    real_upload = committing._upload_object
    monkeypatch.setattr(committing, "_upload_object", lambda b, i: uploads.append(i.path))
    result = versioning.commit_sample(lf, pool, _spec(n=30), key="resume")
    monkeypatch.setattr(committing, "_upload_object", real_upload)
    assert uploads == []  # the committed run branch was merged as it was
    assert result.created
    assert set(_main(lf).get_commit().parents) == {before, staged}

    # The tag is lost (e.g. deleted by hand): the key is still found in main's history.
    import lakefs

    repo = lakefs.Repository(lf.lakefs_repo, client=versioning.make_client(lf))
    repo.tag(result.tag).delete()
    again = versioning.commit_sample(lf, pool, _spec(n=30), key="resume")
    assert (again.commit_id, again.created) == (result.commit_id, False)
    assert repo.tag(result.tag).get_commit().id == result.commit_id


def test_old_commit_reads_old_content_and_diff_lists_images(
    lf: Settings, pool: LabeledImages
) -> None:
    spec1, spec2 = _spec(seed=1), _spec(seed=5, bias={"Human": 0.4})
    month1 = versioning.commit_sample(lf, pool, spec1, key="2026-10")
    month2 = versioning.commit_sample(lf, pool, spec2, key="2026-11")
    _assert_split_matches(lf, month1.commit_id, pool, spec1)  # after the newer commit

    info1 = versioning.sample_info(lf, month1.commit_id)
    assert info1["key"] == "2026-10" and info1["commit_id"] == month1.commit_id
    assert SampleSpec.from_dict(info1["spec"]) == spec1
    assert info1["sizes"] == spec1.sizes
    assert versioning.sample_info(lf, month2.commit_id)["flag_shares"]["sample"][
        "Human"
    ] == pytest.approx(0.4, abs=0.01)
    assert versioning.commit_time(lf, month1.commit_id) <= versioning.commit_time(
        lf, month2.commit_id
    )
    commits = versioning.list_commits(lf)
    assert [c.id for c in commits] == [month2.commit_id, month1.commit_id]
    assert commits[0].parents[0] == month1.commit_id

    ids1 = {i for f in draw_sample(pool.frame, spec1).values() for i in f[ID]}
    ids2 = {i for f in draw_sample(pool.frame, spec2).values() for i in f[ID]}
    entries = versioning.diff_commits(lf, month1.commit_id, month2.commit_id)
    images = {
        t: {Path(e.path).stem for e in entries if e.type == t and e.path.startswith("images/")}
        for t in ("added", "removed", "changed")
    }
    assert images == {"added": ids2 - ids1, "removed": ids1 - ids2, "changed": set()}
    summary = versioning.summarize_diff(entries)
    assert summary["images/"] == {
        "added": len(ids2 - ids1),
        "removed": len(ids1 - ids2),
        "changed": 0,
    }
    assert summary["splits/"]["changed"] == 3
    assert versioning.diff_commits(lf, month1.commit_id, month1.commit_id) == []


def test_synthetic_pool_description_travels_with_the_sample(
    lf: Settings, pool: LabeledImages, synthetic_pool: Path
) -> None:
    result = versioning.commit_sample(lf, pool, _spec(n=60), key="synth")
    info = versioning.sample_info(lf, result.commit_id)
    synth = json.loads((synthetic_pool / "synth.json").read_text())
    assert info["synth"] == synth
    assert info["noise_floor"] == synth["noise_floor"] > 0
    floors = info["noise_floor_by_split"]
    assert set(floors) == set(SPLITS) and all(f > 0 for f in floors.values())
    # Each split's floor is its own rows' RMSE against the noise-free score.
    truth = pd.read_csv(synthetic_pool / "synth_truth.csv", dtype={ID: str}).set_index(ID)
    test = versioning.load_split(lf, result.commit_id, "test").frame
    gap = test[TARGET].to_numpy(float) - truth.loc[test[ID], "noise_free"].to_numpy(float)
    assert floors["test"] == pytest.approx(float(np.sqrt(np.mean(gap**2))))


def test_reads_need_an_explicit_existing_commit(lf: Settings, pool: LabeledImages) -> None:
    result = versioning.commit_sample(lf, pool, _spec(n=30), key="k")
    with pytest.raises(VersioningError, match=r"'main' is a branch or tag .* not a commit id"):
        versioning.load_split(lf, "main", "test")
    with pytest.raises(VersioningError, match=f"reading commit '{'0' * 64}': not found"):
        versioning.load_split(lf, "0" * 64, "test")
    with pytest.raises(VersioningError, match="unknown split 'holdout'"):
        versioning.load_split(lf, result.commit_id, "holdout")
    # An abbreviated commit id is fine; the full one is used from then on.
    short = versioning.load_split(lf, result.commit_id[:12], "val")
    assert short.source.endswith(f"{result.commit_id}/val")


def test_bad_credentials_and_unreachable_endpoint_are_explained(
    tmp_path: Path, lakefs_server, lakefs_repo, pool: LabeledImages
) -> None:
    bad = _settings(tmp_path, lakefs_server, lakefs_repo.id, lakefs_secret_access_key="wrong")
    with pytest.raises(VersioningError) as info:
        versioning.commit_sample(bad, pool, _spec(n=30), key="x")
    message = str(info.value)
    assert lakefs_server.endpoint in message and "rejected access key" in message
    assert "HTTP 401" in message and "Traceback" not in message

    gone = _settings(tmp_path, lakefs_server, lakefs_repo.id, lakefs_endpoint="http://127.0.0.1:9")
    with pytest.raises(VersioningError, match=r"lakeFS at http://127.0.0.1:9 is unreachable"):
        versioning.list_commits(gone)
    missing = _settings(tmp_path, lakefs_server, "no-such-repo-here")
    with pytest.raises(VersioningError, match=r"repository 'no-such-repo-here'.*not found"):
        versioning.list_commits(missing)


def test_cli_sample_commits_diff(
    lf: Settings, synthetic_pool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pawpaw.cli import app
    from pawpaw.config import get_settings

    for name in (
        "lakefs_endpoint",
        "lakefs_access_key_id",
        "lakefs_repo",
        "lakefs_storage_namespace",
        "data_dir",
    ):
        monkeypatch.setenv(f"PAWPAW_{name.upper()}", str(getattr(lf, name)))
    monkeypatch.setenv(
        "PAWPAW_LAKEFS_SECRET_ACCESS_KEY", lf.lakefs_secret_access_key.get_secret_value()
    )
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        args = ["sample", "--pool", str(synthetic_pool), "--n", "40", "--seed", "3"]
        first = runner.invoke(app, args)
        assert first.exit_code == 0, first.output
        commit1 = first.stdout.strip().splitlines()[-1]
        assert COMMIT_ID.match(commit1)
        rerun = runner.invoke(app, args)  # default key: same pool, n, seed, bias
        assert rerun.stdout.strip().splitlines()[-1] == commit1
        second = runner.invoke(app, [*args[:-1], "4", "--bias", "Blur=0.25", "--key", "m2"])
        assert second.exit_code == 0, second.output
        commit2 = second.stdout.strip().splitlines()[-1]

        listed = runner.invoke(app, ["commits"])
        assert listed.exit_code == 0, listed.output
        assert commit2[:12] in listed.stdout and commit1[:12] in listed.stdout
        assert "m2" in listed.stdout and "Blur=0.25" in listed.stdout

        diff = runner.invoke(app, ["diff", commit1, commit2])
        assert diff.exit_code == 0, diff.output
        assert "images/" in diff.stdout and "added" in diff.stdout

        bad = runner.invoke(app, ["sample", "--pool", str(synthetic_pool), "--bias", "Fur=0.2"])
        assert bad.exit_code == 1 and "unknown flag(s) ['Fur']" in bad.stderr
        assert "Traceback" not in bad.output
    finally:
        get_settings.cache_clear()
