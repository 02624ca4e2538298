"""How fast does the project embed images, against the engines' own ceilings?

On one batch of synthetic photo-like JPEGs (224..512 px a side by default), measures in one run:

  (a) ``Embedder.embed_bytes``: decode + exact preprocessing + ONNX Runtime, overlapped
      (also with ``draft=True``: approximate reduced-size JPEG decode, for reference);
  (b) ONNX Runtime alone on the already preprocessed tensors of the same batch;
  (c) eager PyTorch (channels_last, inference_mode) on the same tensors;
  plus decode + preprocessing alone on one thread.

Prints images/s and the ratios (a)/(b) (target >= 0.8) and (a)/(c).

    .venv/bin/python benchmarks/embed_throughput.py [--n 256] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def photo_like_jpegs(n: int, seed: int = 0, sides: tuple[int, int] = (224, 512)) -> list[bytes]:
    """Smooth backgrounds, a few blurred blobs and sensor noise: JPEG sizes like real photos
    (pure noise would make decoding unrealistically slow)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = ((xx / w + yy / h) / 2)[..., None]
        img = Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(2, 6))):
            x0, y0 = rng.uniform(0, w * 0.8), rng.uniform(0, h * 0.8)
            x1, y1 = x0 + rng.uniform(20, w * 0.5), y0 + rng.uniform(20, h * 0.5)
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        img = img.filter(ImageFilter.GaussianBlur(1.5))
        arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (h, w, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def timed(fn: Callable[[], object], n: int, repeats: int) -> float:
    """Best images/s over ``repeats`` runs (the least disturbed by other processes)."""
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = max(best, n / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=256, help="images in the batch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="ORT/torch threads; 0: all cores")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sides", type=int, nargs=2, default=(224, 512), help="min/max side px")
    parser.add_argument("--weights", default="package", choices=["package", "none"])
    parser.add_argument("--cache-dir", type=Path, default=None, help="where the ONNX export goes")
    args = parser.parse_args()

    import torch

    from pawpaw.model.backbone import create_backbone
    from pawpaw.model.embed import Embedder
    from pawpaw.model.preprocess import preprocess

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    images = photo_like_jpegs(args.n, sides=tuple(args.sides))
    print(
        f"{args.n} JPEGs, {sum(map(len, images)) / args.n / 1024:.0f} KiB mean, "
        f"{os.cpu_count()} cores, {threads} compute threads, batch {args.batch_size}"
    )

    model = create_backbone(weights=args.weights)
    cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="pawpaw-bench-"))
    embedder = Embedder.from_model(
        model, "tf_efficientnet_lite0", cache_dir, threads=threads, batch_size=args.batch_size
    )
    cfg = embedder.preprocess_config
    bs = args.batch_size

    # warm-up: sessions, oneDNN primitives, thread pools
    embedder.embed_bytes(images[:bs])
    x = preprocess(images, cfg)

    prep = timed(lambda: preprocess(images, cfg), args.n, 1)
    a = timed(lambda: embedder.embed_bytes(images), args.n, args.repeats)
    embedder.draft = True
    a_draft = timed(lambda: embedder.embed_bytes(images), args.n, args.repeats)
    embedder.draft = False

    def ort_only() -> None:
        for s in range(0, args.n, bs):
            embedder.embed_arrays(x[s : s + bs])

    b = timed(ort_only, args.n, args.repeats)

    features = model.eval()
    features.reset_classifier(0)
    features = features.to(memory_format=torch.channels_last)
    xt = torch.from_numpy(x)

    def eager() -> None:
        with torch.inference_mode():
            for s in range(0, args.n, 32):
                features(xt[s : s + 32].contiguous(memory_format=torch.channels_last))

    eager()  # warm-up
    c = timed(eager, args.n, args.repeats)

    print(f"decode+preprocess alone (1 thread)     {prep:7.1f} img/s")
    print(f"(a) Embedder.embed_bytes (exact)       {a:7.1f} img/s")
    print(f"    Embedder.embed_bytes (draft JPEG)  {a_draft:7.1f} img/s")
    print(f"(b) ONNX Runtime on tensors            {b:7.1f} img/s")
    print(f"(c) eager PyTorch, channels_last, b32  {c:7.1f} img/s")
    print(f"(a)/(b) = {a / b:.2f}  (target >= 0.8)   (a)/(c) = {a / c:.2f}")


if __name__ == "__main__":
    main()
