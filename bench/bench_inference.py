"""Inference speed of a personal model on one photo, on CPU, excluding decoding.

* from a decoded photo: ``PersonalModel.predict(image)`` (box-filter thumbnail + features + actor), the
  call the API makes after decoding an upload;
* from a ready 64x64 thumbnail: ``predict_thumbnails`` (features + actor), as for stored pairs.

The goal (issue 4) is under 5 ms per photo. Prints median and p90 over --runs calls after a warm-up.

Run: .venv/bin/python bench/bench_inference.py [--model rlcore/assets/base.pt] [--side 512] [--runs 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from skimage import data
from skimage.transform import resize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.imageio import thumbnail  # noqa: E402
from rlcore.modelfile import BASE_MODEL_PATH, load_model  # noqa: E402


def timings_ms(call, runs: int) -> np.ndarray:
    for _ in range(10):
        call()
    out = np.empty(runs)
    for i in range(runs):
        started = time.perf_counter()
        call()
        out[i] = (time.perf_counter() - started) * 1000
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(BASE_MODEL_PATH))
    parser.add_argument("--side", type=int, default=512, help="longest side of the decoded photo")
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    photo = data.astronaut()
    photo = (resize(photo, (args.side, args.side), anti_aliasing=True) * 255).astype(np.uint8)
    thumb = thumbnail(photo, size=64)[None]
    rows = [
        (f"predict({args.side}x{args.side} photo)", timings_ms(lambda: model.predict(photo), args.runs)),
        ("predict_thumbnails(64x64)", timings_ms(lambda: model.predict_thumbnails(thumb), args.runs)),
    ]
    print(f"model: {model.metadata.get('model_id')}; {args.runs} calls each after 10 warm-up calls")
    for name, ms in rows:
        print(
            f"{name:<28} median {np.median(ms):.2f} ms, p90 {np.percentile(ms, 90):.2f} ms, max {ms.max():.2f} ms"
        )
    print("command: .venv/bin/python bench/bench_inference.py " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
