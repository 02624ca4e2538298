"""Image embeddings on ONNX Runtime: export once, embed many times, cache per backbone.

- :func:`export_onnx` turns a timm model (classifier removed) into an ONNX graph
  ``images [N, 3, H, W] float32 -> features [N, D] float32`` (dynamic batch axis), checked
  against PyTorch before it is atomically moved into place.
- :class:`Embedder` runs such a graph on CPU. Next to every ``<backbone_id>.onnx`` lies a
  ``<backbone_id>.json`` holding the :class:`~pawpaw.model.preprocess.PreprocessConfig`, the
  ``backbone_id`` and ``dim``, so ``Embedder(onnx_path)`` needs no torch (serving).
  ``backbone_id = f"{model name}-{weights_id}-{preprocessing hash}"``: the file name includes
  the preprocessing hash because the graph's spatial size is fixed at export (TF "same" padding).
- :class:`EmbeddingCache` stores one ``.npy`` per content key under ``root/backbone_id/``; each
  file appears by an atomic rename, so concurrent readers never see half a vector and a crash
  leaves at most a stray temp file. Entries already written stay valid if a later image fails:
  the cache is a memo of pure results, never of outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from pawpaw.data.labeled import LabeledImages
from pawpaw.model.preprocess import ImageInput, PreprocessConfig, preprocess_one
from pawpaw.progress import Progress, say
from pawpaw.schema import ID

if TYPE_CHECKING:
    import torch

    from pawpaw.config import Settings

__all__ = ["Embedder", "EmbeddingCache", "backbone_id_for", "export_onnx", "prefetch_batches"]

INPUT_NAME = "images"
OUTPUT_NAME = "features"
DEFAULT_OPSET = 17
T = TypeVar("T")
# Bytes read only to hash a key are kept for the embedding pass up to this total.
_KEEP_FETCHED_BYTES = 256 * 2**20


def backbone_id_for(name: str, weights_hash: str, cfg: PreprocessConfig) -> str:
    """``name-weights_id-preprocess_hash``: what an embedding depends on, as a file-safe id."""
    pp = hashlib.sha256(cfg.to_json().encode()).hexdigest()[:8]
    return f"{name}-{weights_hash}-{pp}"


def export_onnx(
    model: torch.nn.Module,
    cfg: PreprocessConfig,
    path: Path,
    *,
    opset: int = DEFAULT_OPSET,
    atol: float = 1e-3,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Export ``model``'s pooled features (classifier removed) to ``path``; return ``path``.

    The model is copied to CPU float32 first (the caller's model is left untouched). The graph
    is verified against PyTorch on a batch of two; a mismatch beyond ``atol`` (absolute, plus
    the same relative to the largest feature) raises ``RuntimeError`` and writes nothing. The
    sidecar ``path.with_suffix(".json")`` (config + ``metadata``) is written first, the ONNX
    file last, both by atomic rename: an existing ``.onnx`` always has its ``.json``.
    """
    import copy

    import onnxruntime as ort
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    features = (
        copy.deepcopy(model)
        .to(device="cpu", dtype=torch.float32, memory_format=torch.contiguous_format)
        .eval()
    )
    if getattr(features, "num_classes", 0):
        features.reset_classifier(0)  # timm: the head becomes identity after global pooling
    example = torch.from_numpy(
        np.random.default_rng(0).standard_normal((2, *cfg.input_size), dtype=np.float32)
    )
    with torch.inference_mode():
        expected = features(example).numpy()
    if expected.ndim != 2:
        raise RuntimeError(f"expected pooled features [N, D], the model returns {expected.shape}")

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        tmp_onnx = Path(tmp) / "model.onnx"
        # The legacy (TorchScript) exporter: timm's dynamic "same" padding traces cleanly and
        # fast here, while the dynamo exporter is slower and needs a full torch.export.
        torch.onnx.export(
            features,
            (example,),
            str(tmp_onnx),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
        session = ort.InferenceSession(str(tmp_onnx), providers=["CPUExecutionProvider"])
        got = session.run(None, {INPUT_NAME: example.numpy()})[0]
        diff = float(np.abs(got - expected).max())
        if diff > atol * max(1.0, float(np.abs(expected).max())):
            raise RuntimeError(
                f"ONNX export of {type(model).__name__} differs from PyTorch by {diff:.3g}"
            )
        sidecar = {
            "preprocess": cfg.to_dict(),
            "dim": int(expected.shape[1]),
            "opset": opset,
            "max_abs_diff_vs_torch": diff,
            **(metadata or {}),
        }
        _atomic_write_bytes(path.with_suffix(".json"), json.dumps(sidecar, indent=2).encode())
        os.replace(tmp_onnx, path)
    return path


class Embedder:
    """Embeds images with an exported ONNX backbone on ONNX Runtime (CPU by default).

    Attributes: ``backbone_id``, ``onnx_path``, ``preprocess_config``, ``dim``.
    """

    def __init__(
        self,
        onnx_path: Path,
        *,
        threads: int = 0,
        batch_size: int = 32,
        workers: int | None = None,
        draft: bool = False,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        """Load ``onnx_path`` and its ``.json`` sidecar.

        ``threads``: ONNX Runtime intra-op threads (0: all cores). ``workers``: decode threads
        (default: the core count). ``draft``: approximate fast JPEG decode (see preprocess).
        """
        self.onnx_path = Path(onnx_path)
        sidecar_path = self.onnx_path.with_suffix(".json")
        if not self.onnx_path.is_file() or not sidecar_path.is_file():
            raise FileNotFoundError(
                f"{self.onnx_path} (and its {sidecar_path.name}) must both exist"
            )
        meta = json.loads(sidecar_path.read_text())
        self.meta: dict[str, Any] = meta
        self.preprocess_config = PreprocessConfig.from_dict(meta["preprocess"])
        self.backbone_id: str = meta.get("backbone_id") or self.onnx_path.stem
        self.dim: int = int(meta["dim"])
        self.threads = threads or os.cpu_count() or 1
        self.batch_size = batch_size
        self.workers = workers or os.cpu_count() or 1
        self.draft = draft
        self.providers = tuple(providers)
        self._session: Any = None

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        weights: str | None = None,
        input_size: int | None = None,
    ) -> Embedder:
        """The embedder of ``settings.backbone`` with ``settings.backbone_weights``.

        Exports ``data_dir/backbones/<backbone_id>.onnx`` (+ ``.json``) on first use and reuses
        it afterwards. ``input_size`` overrides the model's square input size (tests, speed).
        """
        from pawpaw.config import get_settings
        from pawpaw.model.backbone import create_backbone

        settings = settings or get_settings()
        weights = weights or settings.backbone_weights
        model = create_backbone(settings.backbone, weights=weights)
        return cls.from_model(
            model,
            settings.backbone,
            settings.data_dir / "backbones",
            input_size=input_size,
            threads=settings.embed_threads,
            batch_size=settings.embed_batch_size,
        )

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        name: str,
        directory: Path,
        *,
        input_size: int | None = None,
        **kwargs: Any,
    ) -> Embedder:
        """Export ``model`` into ``directory`` (unless that backbone_id is already there)."""
        from pawpaw.model.backbone import weights_id

        cfg = PreprocessConfig.from_model(model, input_size=input_size)
        backbone_id = backbone_id_for(name, weights_id(model), cfg)
        path = Path(directory) / f"{backbone_id}.onnx"
        if not path.is_file():
            say(True, f"exporting {backbone_id} to ONNX ...")
            export_onnx(model, cfg, path, metadata={"backbone_id": backbone_id, "model": name})
        return cls(path, **kwargs)

    # --- inference ----------------------------------------------------------------------
    @property
    def session(self) -> Any:
        """The ONNX Runtime session, created on first use (and after unpickling)."""
        if self._session is None:
            from pawpaw.model.predictor import ort_session

            self._session = ort_session(
                self.onnx_path, intra_op_threads=self.threads, providers=self.providers
            )
        return self._session

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_session": None}  # sessions do not pickle; rebuilt lazily

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Features of an already preprocessed float32 NCHW batch: [N, dim]."""
        return self.session.run(
            [OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, np.float32)}
        )[0]

    def embed_bytes(
        self, images: Sequence[ImageInput], batch_size: int | None = None
    ) -> np.ndarray:
        """Embeddings [N, dim] float32 of encoded images (or arrays / PIL images), in order.

        An undecodable image raises ``ValueError`` naming its index.
        """
        loaders = [_constant(image) for image in images]
        labels = [f"image #{i}" for i in range(len(images))]
        return self._run(loaders, labels, batch_size=batch_size)

    def embed(
        self,
        data: LabeledImages,
        cache: EmbeddingCache | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Embeddings [len(data), dim] aligned with ``data.frame`` rows.

        A row's key is ``data.content_keys[Id]`` when known (no download needed for a hit),
        else the sha256 of its bytes. Only cache misses are decoded and embedded (each distinct
        key once); a bad image raises ``ValueError`` naming its ``Id`` and ``data.source``.
        """
        if cache is not None and cache.backbone_id != self.backbone_id:
            raise ValueError(
                f"cache is for backbone {cache.backbone_id!r}, "
                f"this embedder is {self.backbone_id!r}"
            )
        ids = [str(v) for v in data.frame[ID].tolist()]
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        if not ids:
            return out
        fetched = _Fetched()  # bytes read only to hash them; reused for misses
        keys = [data.content_keys.get(i) or fetched.hash_key(data, i) for i in ids]
        hits = cache.get_many(set(keys)) if cache is not None else {}
        fetched.drop([i for i, key in zip(ids, keys, strict=True) if key in hits])

        first_row: dict[str, int] = {}
        for row, key in enumerate(keys):
            if key not in hits:
                first_row.setdefault(key, row)
        misses = list(first_row.items())  # (key, row) of each distinct missing key
        say(
            progress,
            f"embedding {len(ids)} images from {data.source or 'data'}: "
            f"{len(ids) - len(misses)} cached, {len(misses)} to embed with {self.backbone_id}",
        )

        def loader(image_id: str) -> Callable[[], bytes]:
            return lambda: fetched.take(image_id) or data.load(image_id)

        where = f" in {data.source}" if data.source else ""
        new = self._run(
            [loader(ids[row]) for _, row in misses],
            [f"image Id={ids[row]}{where}" for _, row in misses],
            progress=progress,
            on_batch=(
                None
                if cache is None
                else lambda start, vecs: cache.put_many(
                    {misses[start + j][0]: v for j, v in enumerate(vecs)}
                )
            ),
        )
        computed = {key: new[j] for j, (key, _) in enumerate(misses)}
        for row, key in enumerate(keys):
            out[row] = hits[key] if key in hits else computed[key]
        return out

    # --- internals ----------------------------------------------------------------------
    def _run(
        self,
        loaders: Sequence[Callable[[], ImageInput]],
        labels: Sequence[str],
        *,
        batch_size: int | None = None,
        progress: bool = False,
        on_batch: Callable[[int, np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """Load+preprocess in a thread pool, one batch ahead of inference (PIL and ORT both
        release the GIL, so decoding the next batch overlaps with running this one)."""
        n = len(loaders)
        bs = batch_size or self.batch_size
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        cfg, draft = self.preprocess_config, self.draft

        def prepare(i: int) -> np.ndarray:
            try:
                return preprocess_one(loaders[i](), cfg, draft=draft)
            except Exception as exc:  # name the image; keep the cause chained
                raise ValueError(f"{labels[i]} cannot be embedded: {exc}") from exc

        counter = Progress(n, "  embedded", enabled=progress, unit="img")
        with ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="pawpaw-decode"
        ) as pool:
            batches = prefetch_batches(pool, prepare, n, bs)
            try:
                for start, futures in batches:
                    x = np.stack([f.result() for f in futures])
                    vecs = self.embed_arrays(x)
                    out[start : start + len(vecs)] = vecs
                    if on_batch is not None:
                        on_batch(start, vecs)
                    counter.advance(len(vecs))
            finally:
                batches.close()  # cancels queued decodes when a batch fails
        return out


class EmbeddingCache:
    """Embeddings on disk, one ``.npy`` per content key under ``root/backbone_id/``."""

    def __init__(self, root: Path, backbone_id: str) -> None:
        if not backbone_id or "/" in backbone_id or backbone_id.startswith("."):
            raise ValueError(f"invalid backbone_id {backbone_id!r}")
        self.root = Path(root)
        self.backbone_id = backbone_id
        self.directory = self.root / backbone_id

    @classmethod
    def for_embedder(cls, embedder: Embedder, settings: Settings | None = None) -> EmbeddingCache:
        """The cache of ``embedder`` under ``settings.data_dir / "embeddings"``."""
        from pawpaw.config import get_settings

        settings = settings or get_settings()
        return cls(settings.data_dir / "embeddings", embedder.backbone_id)

    def _path(self, key: str) -> Path:
        # Keys are arbitrary strings (checksums, "sha256:..."): hash them to a file-safe name,
        # fanned out over 256 folders so no directory grows huge.
        name = hashlib.sha256(key.encode()).hexdigest()
        return self.directory / name[:2] / f"{name[2:]}.npy"

    def get_many(self, keys: Iterator[str] | Sequence[str] | set[str]) -> dict[str, np.ndarray]:
        """The cached vectors of ``keys`` that exist (missing keys are simply absent)."""
        found: dict[str, np.ndarray] = {}
        for key in keys:
            try:
                found[key] = np.load(self._path(key), allow_pickle=False)
            except FileNotFoundError:
                continue
            except (ValueError, OSError):
                continue  # unreadable entry (e.g. disk trouble): recompute rather than fail
        return found

    def put_many(self, vectors: Mapping[str, np.ndarray]) -> None:
        """Store vectors; each appears atomically (temp file + rename), rewriting is harmless."""
        for key, vec in vectors.items():
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.save(fh, np.asarray(vec, dtype=np.float32), allow_pickle=False)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.npy")) if self.directory.is_dir() else 0


class _Fetched:
    """Bytes read to hash a key, kept (within a memory budget) so a miss is not read twice."""

    def __init__(self, budget: int = _KEEP_FETCHED_BYTES) -> None:
        self._bytes: dict[str, bytes] = {}
        self._left = budget

    def hash_key(self, data: LabeledImages, image_id: str) -> str:
        raw = data.load(image_id)
        if len(raw) <= self._left:
            self._bytes[image_id] = raw
            self._left -= len(raw)
        return "sha256:" + hashlib.sha256(raw).hexdigest()

    def take(self, image_id: str) -> bytes | None:
        return self._bytes.pop(image_id, None)  # dict.pop is atomic: safe from decode threads

    def drop(self, image_ids: Sequence[str]) -> None:
        for image_id in image_ids:
            self._bytes.pop(image_id, None)


def _constant(value: ImageInput) -> Callable[[], ImageInput]:
    return lambda: value


def prefetch_batches(
    pool: ThreadPoolExecutor, fn: Callable[[int], T], n: int, batch_size: int
) -> Iterator[tuple[int, list[Future[T]]]]:
    """Yield (start, futures of ``fn(i)``) per batch of ``range(n)`` while the next batch is
    already being prepared in ``pool``; closing the generator cancels what is still queued."""
    pending: list[tuple[int, list[Future[T]]]] = []
    starts = iter(range(0, n, batch_size))
    try:
        for start in starts:
            pending.append(
                (start, [pool.submit(fn, i) for i in range(start, min(start + batch_size, n))])
            )
            if len(pending) > 1:
                yield pending.pop(0)
        while pending:
            yield pending.pop(0)
    finally:
        for _, futures in pending:
            for f in futures:
                f.cancel()


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
