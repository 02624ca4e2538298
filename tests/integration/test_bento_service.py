"""The Bento service, three ways: in-process over ASGI, `bentoml build`, and a real `bentoml serve`.

The model is a tiny but real MLflow pyfunc that follows the champion's contract (DataFrame
column ``image`` of encoded bytes -> float scores in 1..100; here: brightness) and, like the real
champion, ships its own copy of ``pawpaw`` modules as ``code_paths``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from pawpaw import export
from pawpaw.config import Settings
from tests.fixtures.common import free_port, serving

pytestmark = pytest.mark.integration

MODEL_NAME = "pawpularity-svc-test"
BENTO_NAME = "pawpularity-svc-test"

# The model's code (MLflow "models from code"): it imports pawpaw from its own code_paths copy.
MODEL_CODE = '''
import mlflow
import numpy as np

from pawpaw.model.preprocess import decode_image


class BrightnessModel(mlflow.pyfunc.PythonModel):
    """Pawpularity from mean luminance: 1 (black) .. 100 (white)."""

    def predict(self, context, model_input, params=None):
        scores = []
        for blob in model_input["image"]:
            grey = decode_image(bytes(blob)).convert("L").resize((32, 32))
            scores.append(1.0 + 99.0 * float(np.asarray(grey, dtype=np.float64).mean()) / 255.0)
        return np.asarray(scores, dtype=np.float64)


mlflow.models.set_model(BrightnessModel())
'''
MODEL_PINS = ["mlflow==3.17.2", "numpy==2.4.6", "pandas==2.3.3", "pillow==13.0.0"]
MARKER = "SHIPPED_WITH_MODEL = True"


def _image(value: int, fmt: str = "JPEG", size: tuple[int, int] = (480, 360)) -> bytes:
    """A photo-like test image of the given mean grey level (a ramp, so it has edges)."""
    img = Image.linear_gradient("L").resize(size).point(lambda p: min(255, p // 4 + value))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format=fmt)
    return buf.getvalue()


def _expected(blob: bytes) -> float:
    grey = Image.open(io.BytesIO(blob)).convert("L").resize((32, 32))
    return 1.0 + 99.0 * sum(grey.getdata()) / (32 * 32) / 255.0


def _bentoml_cli(
    *args: str, home: Path, cwd: Path | None = None, extra_env: dict[str, str] | None = None
) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("bentoml")), *args],
        cwd=cwd,  # `bentoml build` reads only files under its working directory
        env={**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True",
             **(extra_env or {})},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"bentoml {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bento_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One BentoML store per session (BentoML resolves its home once per process)."""
    home = tmp_path_factory.getbasetemp() / "bentoml-home"
    mp = pytest.MonkeyPatch()
    mp.setenv("BENTOML_HOME", str(home))
    mp.setenv("BENTOML_DO_NOT_TRACK", "True")
    mp.setenv("MLFLOW_UV_AUTO_DETECT", "false")  # don't copy this repo's uv.lock into models
    yield home
    mp.undo()


@pytest.fixture(scope="module")
def model_tag(bento_home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny pyfunc, saved by MLflow and imported into the BentoML store."""
    import bentoml.mlflow
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    import pawpaw.model.preprocess

    root = tmp_path_factory.mktemp("tiny-model")
    package = root / "code" / "pawpaw"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""pawpaw modules shipped with the model."""\n')
    # The model's copy differs from the library's by a marker: the bento must carry this one.
    library_copy = Path(pawpaw.model.preprocess.__file__).read_text()
    (package / "preprocess.py").write_text(f"{library_copy}\n{MARKER}\n")
    code = root / "brightness_model.py"
    code.write_text(MODEL_CODE)
    signature = ModelSignature(
        inputs=Schema([ColSpec("binary", "image")]), outputs=Schema([ColSpec("double")])
    )
    mlflow.pyfunc.save_model(
        path=str(root / "model"),
        python_model=str(code),
        code_paths=[str(package)],
        signature=signature,
        pip_requirements=MODEL_PINS,
    )
    labels = {"registered_model": "tiny", "version": "1", "stage": "champion", "commit_id": "c0"}
    model = bentoml.mlflow.import_model(MODEL_NAME, str(root / "model"), labels=labels)
    return str(model.tag)


@pytest.fixture(scope="module")
def client(model_tag: str) -> Iterator:
    """The service from bentos/ in this process, as an ASGI app behind Starlette's TestClient."""
    import bentoml
    from starlette.testclient import TestClient

    mp = pytest.MonkeyPatch()
    mp.setenv("PAWPAW_BENTO_MODEL_TAG", model_tag)  # read when service.py is imported
    for module in ("service", "page", "uploads"):  # fresh import with this environment
        sys.modules.pop(module, None)
    svc = bentoml.load("service:PawpularityService", working_dir=str(Settings().bento_service_dir))
    with TestClient(svc.to_asgi()) as test_client:
        yield test_client
    mp.undo()


@pytest.fixture(scope="module")
def built_bento(model_tag: str, bento_home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`bentoml build` (the CLI, offline) on the staged service pinned to the tiny model."""
    import bentoml

    ctx = export.stage_bento_context(
        Settings(bentoml_home=bento_home),
        bentoml.models.get(model_tag),
        tmp_path_factory.mktemp("stage") / "ctx",
    )
    out = _bentoml_cli("build", ".", "--name", BENTO_NAME, "-o", "tag", home=bento_home, cwd=ctx)
    return next(line for line in out.splitlines() if line.startswith("__tag__:"))[8:].strip()


@pytest.fixture(scope="module")
def server(built_bento: str, bento_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """`pawpaw serve --bento TAG` (which execs `bentoml serve`) on a free port; once per module."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    cmd = [str(Path(sys.executable).with_name("pawpaw")), "serve", "--bento", built_bento,
           "--port", str(port)]  # fmt: skip
    env = {**os.environ, "BENTOML_HOME": str(bento_home), "BENTOML_DO_NOT_TRACK": "True"}
    with serving(cmd, url=url, log_path=log_path, env=env):
        yield url, log_path


# --- in process (ASGI) ------------------------------------------------------------------------


def test_predict_scores_a_batch_of_jpeg_and_png(client) -> None:
    blobs = [_image(10), _image(120, "PNG"), _image(230), _image(60, "PNG")]
    files = [("images", (f"p{i}", b, "image/*")) for i, b in enumerate(blobs)]
    response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text
    scores = response.json()
    assert len(scores) == len(blobs)
    assert all(1.0 <= s <= 100.0 for s in scores)
    assert scores == pytest.approx([_expected(b) for b in blobs], abs=1e-6)


def test_advise_returns_score_and_advice(client) -> None:
    blob = _image(20, size=(200, 150))
    response = client.post("/advise", files={"image": ("dim.jpg", blob, "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["score"] == pytest.approx(_expected(blob), abs=1e-6)
    codes = [a["code"] for a in body["advice"]]
    assert codes[0] == "score_low"
    assert "dark" in codes and "low_resolution" in codes


def test_info_names_the_served_model(client, model_tag: str) -> None:
    response = client.post("/info", json={})
    assert response.status_code == 200
    assert response.json()["tag"] == model_tag
    assert response.json()["labels"]["stage"] == "champion"


def test_page_renders_a_form_and_scores_an_upload(client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.text and 'name="photo"' in page.text
    blob = _image(200, "PNG")
    result = client.post("/", files={"photo": ("rex.png", blob, "image/png")})
    assert result.status_code == 200, result.text
    assert f'data-score="{_expected(blob):.1f}"' in result.text
    assert 'class="advice"' in result.text and "<li>" in result.text


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"images": ("notes.txt", b"just text", "text/plain")}, "not an image"),
        ({"images": ("empty.jpg", b"", "image/jpeg")}, "empty"),
        ({"images": ("cut.jpg", _image(100)[:2500], "image/jpeg")}, "truncated"),
        ({"images": ("huge.jpg", b"\xff\xd8" + b"\0" * (11 * 2**20), "image/jpeg")}, "limit"),
        ({"photos": ("a.jpg", _image(100), "image/jpeg")}, "no file in the field 'images'"),
    ],
    ids=["not-image", "empty", "truncated", "too-large", "wrong-field"],
)
def test_bad_upload_is_a_clear_400(client, files: dict, message: str) -> None:
    response = client.post("/predict", files=files)
    assert response.status_code == 400
    assert message in response.text
    assert client.post("/predict", files={"images": ("ok.jpg", _image(90))}).status_code == 200


def test_malformed_requests_are_4xx_not_500(client) -> None:
    as_json = client.post("/predict", json={"images": ["http://example.com/cat.jpg"]})
    assert as_json.status_code == 415 and "multipart/form-data" in as_json.json()["error"]
    as_text = client.post("/predict", data={"images": "cat.jpg"}, files={"x": ("x", b"1")})
    assert as_text.status_code == 400 and "not text" in as_text.json()["error"]
    garbage = client.post(
        "/advise", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=z"}
    )
    assert garbage.status_code == 400 and "malformed" in garbage.json()["error"]
    too_big = client.post("/predict", files={"images": ("big", b"\0" * (65 * 2**20))})
    assert too_big.status_code == 413 and "too large" in too_big.json()["error"]
    assert client.get("/readyz").status_code == 200


def test_page_rejects_a_bad_upload_with_the_reason(client) -> None:
    response = client.post("/", files={"photo": ("cat.gif", b"GIF89a-broken", "image/gif")})
    assert response.status_code == 400
    assert "cat.gif" in response.text and 'role="alert"' in response.text
    assert 'name="photo"' in response.text  # the form is back for another try
    assert client.post("/", data={"nothing": "here"}).status_code == 400


# --- bentoml build ----------------------------------------------------------------------------


def test_bentoml_build_writes_a_dockerfile_and_pins_the_model(
    built_bento: str, model_tag: str, bento_home: Path
) -> None:
    import yaml

    name, version = built_bento.split(":")
    bento = bento_home / "bentos" / name / version
    assert (bento / "env" / "docker" / "Dockerfile").is_file()
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().split()
    assert {"mlflow==3.17.2", "onnxruntime==1.32.0", "pillow==13.0.0"} <= set(requirements)
    pin = json.loads((bento / "src" / "champion.json").read_text())
    assert pin["model_tag"] == model_tag
    # The pawpaw modules travel with the bento; where the model ships one, the model's copy wins.
    assert (bento / "src" / "pawpaw" / "advice.py").is_file()
    assert MARKER in (bento / "src" / "pawpaw" / "preprocess.py").read_text()
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["services"][0]["models"][0]["tag"] == model_tag
    assert "gpu" not in info["services"][0]["config"].get("resources", {})


def test_gpu_build_reserves_a_gpu_and_installs_onnxruntime_gpu(
    model_tag: str, bento_home: Path, tmp_path: Path
) -> None:
    import bentoml
    import yaml

    ctx = export.stage_bento_context(
        Settings(bentoml_home=bento_home), bentoml.models.get(model_tag), tmp_path / "ctx"
    )
    out = _bentoml_cli(
        "build", ".", "--name", f"{BENTO_NAME}-gpu", "-o", "tag",
        home=bento_home, cwd=ctx, extra_env={"PAWPAW_SERVE_GPU": "1"},
    )  # fmt: skip
    name, version = next(x for x in out.splitlines() if x.startswith("__tag__:"))[8:].split(":")
    bento = bento_home / "bentos" / name / version
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "onnxruntime-gpu[cuda,cudnn]==1.31.1" in requirements
    assert "\nonnxruntime==" not in requirements
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["services"][0]["config"]["resources"] == {"gpu": 1}
    assert "PAWPAW_SERVE_GPU=1" in (bento / "env" / "docker" / "Dockerfile").read_text()


# --- a real `bentoml serve` -------------------------------------------------------------------


def test_real_server_is_ready_and_prints_its_urls(server) -> None:
    url, log_path = server
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert httpx.get(f"{url}/livez").status_code == 200
    log = log_path.read_text()
    assert f"page: {url}/" in log and f"{url}/predict" in log
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and 'name="photo"' in page.text


def test_real_server_predicts_with_the_bentoml_client(server, tmp_path: Path) -> None:
    import bentoml

    url, _ = server
    paths = []
    for i, (value, fmt) in enumerate([(15, "JPEG"), (200, "PNG"), (110, "JPEG")]):
        path = tmp_path / f"photo{i}.{fmt.lower()}"
        path.write_bytes(_image(value, fmt))
        paths.append(path)
    with bentoml.SyncHTTPClient(url, timeout=60) as bento_client:
        scores = bento_client.predict(images=paths)
        served = bento_client.info()
    assert scores == pytest.approx([_expected(p.read_bytes()) for p in paths], abs=1e-6)
    assert served["labels"]["commit_id"] == "c0"


def test_real_server_batches_concurrent_requests_correctly(server) -> None:
    """Adaptive batching merges requests; each caller must still get its own scores back."""
    url, _ = server
    blobs = [_image(v) for v in (5, 40, 80, 120, 160, 200, 240, 60)]
    results: dict[int, httpx.Response] = {}

    def call(i: int) -> None:
        files = [("images", ("a", blobs[i], "image/jpeg")), ("images", ("b", blobs[-1 - i]))]
        results[i] = httpx.post(f"{url}/predict", files=files, timeout=60)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(blobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, response in results.items():
        assert response.status_code == 200, response.text
        want = [_expected(blobs[i]), _expected(blobs[-1 - i])]
        assert response.json() == pytest.approx(want, abs=1e-6)
    bad = httpx.post(f"{url}/predict", files={"images": ("x.jpg", b"nope", "image/jpeg")})
    assert bad.status_code == 400 and "not an image" in bad.text
    assert export.request_score(url, blobs[0]) == pytest.approx(_expected(blobs[0]), abs=1e-6)


def test_bentoml_cli_lists_the_model_and_the_bento(
    server, model_tag: str, built_bento: str, bento_home: Path
) -> None:
    models = json.loads(_bentoml_cli("models", "list", "-o", "json", home=bento_home))
    assert model_tag in {m["tag"] for m in models}
    bentos = json.loads(_bentoml_cli("list", "-o", "json", home=bento_home))
    assert built_bento in {b["tag"] for b in bentos}
