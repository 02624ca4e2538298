"""The backbone: packaged ImageNet weights load offline and see a cat; weights hash is stable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pawpaw.model import backbone
from pawpaw.model.backbone import create_backbone, weights_id
from pawpaw.model.preprocess import PreprocessConfig, preprocess

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return create_backbone("tf_efficientnet_lite0", weights="package")


def test_package_weights_classify_chelsea_as_a_cat(lite0: torch.nn.Module) -> None:
    from skimage.data import chelsea

    x = preprocess([chelsea()], PreprocessConfig.from_model(lite0))
    with torch.inference_mode():
        probs = lite0(torch.from_numpy(x)).softmax(-1)[0]
    top = int(probs.argmax())
    assert 281 <= top <= 285, f"top class {top} is not a cat"
    assert float(probs[281:286].sum()) > 0.5


def test_package_weights_are_the_packaged_tensors_in_order(lite0: torch.nn.Module) -> None:
    packaged = list(backbone._package_state_dict("tf_efficientnet_lite0").values())
    mine = list(lite0.state_dict().values())
    assert len(packaged) == len(mine) == 296
    assert all(torch.equal(a, b) for a, b in zip(packaged, mine, strict=True))


def test_a_shape_mismatch_fails_naming_the_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    state = dict(backbone._package_state_dict("tf_efficientnet_lite0"))
    state["_fc.weight"] = torch.zeros(10, 1280)
    monkeypatch.setattr(backbone, "_package_state_dict", lambda name: state)
    with pytest.raises(RuntimeError, match=r"#294 '_fc.weight'.*\(10, 1280\).*'classifier.weight'"):
        create_backbone(weights="package")


def test_a_missing_tensor_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    state = dict(backbone._package_state_dict("tf_efficientnet_lite0"))
    state.pop("_fc.bias")
    monkeypatch.setattr(backbone, "_package_state_dict", lambda name: state)
    with pytest.raises(RuntimeError, match="295 tensors, model has 296"):
        create_backbone(weights="package")


@pytest.mark.parametrize(
    ("name", "weights", "message"),
    [
        ("resnet10t", "package", "no packaged weights for 'resnet10t'"),
        ("no_such_model", "none", "unknown timm model 'no_such_model'"),
        ("tf_efficientnet_lite0", "imagenet", "weights must be one of"),
    ],
)
def test_bad_requests_get_clear_errors(name: str, weights: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_backbone(name, weights=weights)


def test_any_timm_model_builds_with_random_weights() -> None:
    model = create_backbone("resnet10t", weights="none")
    assert not model.training
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1000)


def test_weights_id_is_stable_and_content_addressed(lite0: torch.nn.Module) -> None:
    a, b = create_backbone(weights="none"), create_backbone(weights="none")
    assert weights_id(a) == weights_id(b)  # "none" is seeded: reproducible caches
    assert len(weights_id(a)) == 12
    assert weights_id(a) != weights_id(lite0)
    assert weights_id(lite0) == weights_id(lite0.state_dict())
    with torch.no_grad():
        next(b.parameters()).add_(1e-3)
    assert weights_id(a) != weights_id(b)
    # fork_rng: building a "none" model leaves the caller's random stream alone.
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    create_backbone(weights="none")
    assert np.allclose(torch.rand(3).numpy(), expected.numpy())
