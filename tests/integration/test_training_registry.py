"""Training, evaluation and champion/challenger decisions against a real MLflow server and
lakeFS (the emulator, or a real one via LAKEFS_TEST_ENDPOINT), on a small synthetic sample.

The backbone export and the embedding cache are shared by the tests of this module (that is
what the cache is for), so only the first test pays for embedding the images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pawpaw import evaluation, registry
from pawpaw.config import Settings, get_settings
from pawpaw.data.labeled import LabeledImages
from pawpaw.data.sampling import SampleSpec, draw_sample
from pawpaw.decisions import EvalResult, should_promote
from pawpaw.model.heads import FittedHead
from pawpaw.schema import COLUMNS, FLAGS, ID, TARGET
from pawpaw.tracking import mlflow_client
from pawpaw.train import TrainingError, register_model, train
from tests.fixtures.lakefs import lakefs_namespace
from tests.fixtures.models import predict_in_fresh_process

pytestmark = pytest.mark.integration

SPEC = SampleSpec(n=60, seed=3, val_fraction=0.2, test_fraction=0.3)


@pytest.fixture(scope="module")
def pool(synthetic_pool: Path) -> LabeledImages:
    from pawpaw.data.kaggle import read_dataset

    return read_dataset(synthetic_pool)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture
def st(
    mlflow_settings: Settings,
    lakefs_server,
    lakefs_repo,
    model_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    """Settings on the MLflow server and this test's lakeFS repository, via the environment so
    that the CLI (get_settings) sees the same; backbones and embeddings shared per module."""
    env = {
        "PAWPAW_LAKEFS_ENDPOINT": lakefs_server.endpoint,
        "PAWPAW_LAKEFS_ACCESS_KEY_ID": lakefs_server.access_key_id,
        "PAWPAW_LAKEFS_SECRET_ACCESS_KEY": lakefs_server.secret_access_key,
        "PAWPAW_LAKEFS_REPO": lakefs_repo.id,
        "PAWPAW_LAKEFS_STORAGE_NAMESPACE": lakefs_namespace(lakefs_server, lakefs_repo.id),
        "PAWPAW_LAKEFS_UPLOAD_WORKERS": "4",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("backbones", "embeddings"):
        (model_cache / name).mkdir(exist_ok=True)
        (settings.data_dir / name).symlink_to(model_cache / name, target_is_directory=True)
    return settings


def _commit(settings: Settings, pool: LabeledImages, key: str = "2026-01", **kw) -> str:
    from pawpaw.versioning import commit_sample

    spec = SampleSpec(**{**SPEC.to_dict(), **kw}) if kw else SPEC
    return commit_sample(settings, pool, spec, key=key).commit_id


def _aliases(settings: Settings) -> dict[str, str]:
    client = mlflow_client(settings)
    return {
        k: str(v) for k, v in client.get_registered_model(settings.registered_model).aliases.items()
    }


def _versions(settings: Settings) -> list[str]:
    client = mlflow_client(settings)
    name = settings.registered_model
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        return []
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{name}'"))


def _register_constant(settings: Settings, commit_id: str, score: float) -> str:
    """A deliberately bad model: the real backbone, a head that always says ``score``."""
    from pawpaw.model.embed import Embedder

    embedder = Embedder.from_settings(settings)
    head = FittedHead.linear(np.zeros(embedder.dim), score, params={"family": "constant"})
    _, version = register_model(
        settings,
        commit_id=commit_id,
        mode="head",
        onnx_path=embedder.onnx_path,
        preprocess_config=embedder.preprocess_config,
        backbone_id=embedder.backbone_id,
        head=head,
        train_key=f"constant-{score}",
        progress=False,
    )
    return version


def _cli(*args: str):
    from pawpaw.cli import app

    return CliRunner().invoke(app, list(args))


def test_first_model_becomes_champion_and_a_worse_challenger_is_refused(
    st: Settings, pool: LabeledImages
) -> None:
    commit = _commit(st, pool)
    assert _cli("rollback").exit_code == 1  # nothing registered: a clear error, no traceback

    result = _cli("train", "--commit", commit)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "1"
    assert "no champion yet: v1 promoted to champion" in result.output
    assert _aliases(st) == {"champion": "1"}

    bad = _register_constant(st, commit, 1.0)
    assert (bad, _aliases(st)) == ("2", {"champion": "1", "challenger": "2"})
    refused = _cli("promote")
    assert refused.exit_code == 1
    assert "v2 not promoted" in refused.output and "is not below champion v1" in refused.output
    assert _aliases(st) == {"champion": "1", "challenger": "2"}

    # The comparison stored both evaluations: the champion really was better on the test split.
    champion, challenger = (
        evaluation.evaluate(st, commit, version=v, progress=False) for v in ("1", "2")
    )
    assert champion.rmse < challenger.rmse
    assert champion.n_test == SPEC.sizes["test"]

    no_previous = _cli("rollback")
    assert no_previous.exit_code == 1 and "nothing to roll back to" in no_previous.output
    listing = _cli("models")
    assert (
        listing.exit_code == 0 and "champion" in listing.output and "challenger" in listing.output
    )


def test_better_challenger_is_promoted_and_rollback_restores(
    st: Settings, pool: LabeledImages
) -> None:
    commit = _commit(st, pool)
    weak = _register_constant(st, commit, 1.0)
    registry.promote(st, weak)
    assert _aliases(st) == {"champion": weak}

    trained = train(st, commit, progress=False)
    assert trained.version == "2" and not trained.reused
    assert _aliases(st) == {"champion": "1", "challenger": "2"}
    decision = should_promote(*evaluation.head_to_head(st, trained.version, progress=False))
    assert decision.value, decision.reason

    promoted = _cli("promote")
    assert promoted.exit_code == 0, promoted.output
    assert "previous champion: v1" in promoted.output
    assert _aliases(st) == {"champion": "2", "previous": "1"}
    registry.promote(st, "2")  # idempotent
    assert _aliases(st) == {"champion": "2", "previous": "1"}

    assert registry.rollback(st) == "1"
    assert _aliases(st) == {"champion": "1", "previous": "2"}
    again = _cli("rollback")  # a second rollback swaps back
    assert again.exit_code == 0 and "v2 is champion again" in again.output
    assert _aliases(st) == {"champion": "2", "previous": "1"}

    rows = evaluation.describe_models(st)
    assert [r["version"] for r in rows] == ["2", "1"]
    assert rows[0]["aliases"] == ["champion"] and rows[0]["commit_id"] == commit
    assert rows[0]["evaluations"][0]["rmse"] < rows[1]["evaluations"][0]["rmse"]


def test_evaluation_is_stored_once_per_version_and_commit(
    st: Settings, pool: LabeledImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = _commit(st, pool)
    trained = train(st, commit, progress=False)
    again = train(st, commit, progress=False)  # same (commit, mode, config)
    assert (again.version, again.reused) == (trained.version, True)
    assert _versions(st) == ["1"]

    calls: list[str] = []
    real_predict = evaluation._predict

    def counting(model, data, progress):
        calls.append(data.source)
        return real_predict(model, data, progress)

    monkeypatch.setattr(evaluation, "_predict", counting)
    assert evaluation.evaluate(st, commit, progress=False) is None  # no champion yet
    first = evaluation.evaluate(st, commit, version="1", progress=False)
    second = evaluation.evaluate(st, commit[:16], version="1", progress=False)
    assert first == second and len(calls) == 1
    registry.promote(st, "1")
    assert evaluation.evaluate(st, commit, progress=False) == first  # the champion, stored
    assert len(calls) == 1

    assert first.n_test == SPEC.sizes["test"] and first.mean_rmse > 0
    assert 0 < first.rmse < 100 and first.mae <= first.rmse
    synth = json.loads((Path(pool.source) / "synth.json").read_text())
    assert "noise_floor" in synth
    assert first.noise_floor is not None
    assert first.noise_floor == pytest.approx(synth["noise_floor"])
    assert EvalResult.from_dict(json.loads(json.dumps(first.to_dict()))) == first

    preds = evaluation.load_predictions(st, "1", commit)
    assert list(preds.columns) == [ID, *FLAGS, "prediction", TARGET]
    assert len(preds) == first.n_test and preds["prediction"].between(1, 100).all()
    rmse = float(np.sqrt(np.mean((preds["prediction"] - preds[TARGET]) ** 2)))
    assert rmse == pytest.approx(first.rmse)

    later = _commit(st, pool, key="2026-02", seed=4)
    evaluation.evaluate(st, later, progress=False)
    assert len(calls) == 2
    with pytest.raises(evaluation.EvaluationError, match="no version '9'"):
        evaluation.evaluate(st, commit, version="9", progress=False)


def test_registered_model_loads_in_a_fresh_process(
    st: Settings, pool: LabeledImages, tmp_path: Path
) -> None:
    from pawpaw.versioning import load_split

    commit = _commit(st, pool)
    trained = train(st, commit, progress=False)
    client = mlflow_client(st)
    local = client.download_artifacts(trained.run_id, "val_predictions.parquet", str(tmp_path))
    after_training = pd.read_parquet(local)
    val = load_split(st, commit, "val")
    pred, heavy = predict_in_fresh_process(
        f"models:/{st.registered_model}/{trained.version}",
        [val.load(i) for i in after_training[ID]],
        tmp_path,
        tracking_uri=st.tracking_uri,
    )
    assert heavy == []
    np.testing.assert_allclose(pred, after_training["prediction"], rtol=1e-4, atol=1e-3)


def test_bad_input_fails_clearly_and_registers_nothing(
    st: Settings, pool: LabeledImages, lakefs_repo
) -> None:
    from pawpaw.versioning import commit_sample

    initial = lakefs_repo.branch("main").get_commit().id  # lakeFS's own first commit: no sample
    with pytest.raises(TrainingError, match=initial[:12]):
        train(st, initial, progress=False)
    with pytest.raises(TrainingError, match="mode must be one of"):
        train(st, initial, mode="forest", progress=False)

    # A commit whose val split is empty (written by hand, not by commit_sample).
    main = lakefs_repo.branch("main")
    header = ",".join(COLUMNS) + "\n"
    good = commit_sample(st, pool, SPEC, key="2026-01").commit_id
    train_csv = (
        lakefs_repo.commit(good).object("splits/train.csv").reader(mode="rb", pre_sign=False).read()
    )
    main.object("splits/val.csv").upload(data=header.encode(), mode="wb")
    main.object("splits/train.csv").upload(data=train_csv, mode="wb")
    empty_val = main.commit(message="empty val split").get_commit().id
    with pytest.raises(TrainingError, match="val split is empty"):
        train(st, empty_val, progress=False)

    # A corrupt (truncated) image among the training rows of a sample.
    victim = str(draw_sample(pool.frame, SPEC)["train"][ID].iloc[0])
    broken = LabeledImages(
        frame=pool.frame,
        load=lambda i: pool.load(i)[:300] if i == victim else pool.load(i),
        source=pool.source,
    )
    corrupt = commit_sample(st, broken, SPEC, key="corrupt").commit_id
    with pytest.raises(TrainingError, match=victim):
        train(st, corrupt, progress=False)

    assert _versions(st) == []
    client = mlflow_client(st)
    experiment = client.get_experiment_by_name(st.mlflow_experiment)
    runs = client.search_runs([experiment.experiment_id]) if experiment is not None else []
    assert runs == []


def test_finetune_mode_registers_a_servable_model(
    st: Settings, pool: LabeledImages, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The GPU path's wiring, kept small enough for a CPU: one epoch at 64 px."""
    from pawpaw import train as train_module
    from pawpaw.model.finetune import FinetuneConfig
    from pawpaw.versioning import load_split

    tiny = FinetuneConfig(
        backbone=st.backbone, input_size=64, epochs=1, batch_size=16, num_workers=0, augment=False
    )
    monkeypatch.setattr(train_module, "finetune_config", lambda settings: tiny)
    commit = _commit(st, pool)
    trained = train(st, commit, mode="finetune", progress=False)
    assert (trained.mode, trained.version, trained.reused) == ("finetune", "1", False)
    assert trained.head.startswith("finetuned-linear")
    client = mlflow_client(st)
    run = client.get_run(trained.run_id)
    assert run.data.params["target_transform"] == "sigmoid*100"
    assert "epoch/val_rmse" in run.data.metrics  # the training curve, one step per epoch

    local = client.download_artifacts(trained.run_id, "val_predictions.parquet", str(tmp_path))
    after_training = pd.read_parquet(local)
    val = load_split(st, commit, "val")
    model = evaluation.load_model(st, trained.version, tmp_path / "model")
    served = model.predict(pd.DataFrame({"image": [val.load(i) for i in after_training[ID]]}))
    np.testing.assert_allclose(served, after_training["prediction"], rtol=1e-4, atol=1e-3)
    assert train(st, commit, mode="finetune", progress=False).reused
