"""What an editor without a personal model gets: the base model on good photos and on camera errors.

Two measurements on real photos the base never trained on (bench/photos.py, roles "train" and
"heldout"), as 64x64 thumbnails of random crops:

* well-exposed photos (the photos as published): mean dE00 between each photo and the base's edit of it.
  Goal: at most 2.5 dE00, about the difference a trained eye notices side by side (1 dE00 is the
  classic just-noticeable difference; CIEDE2000 values of 2-3 are "perceptible at a glance" only to
  experts): the base must leave good photos essentially alone;
* camera-jittered copies of the same crops (bench.styles.camera_befores: exposure -1.5..+1 EV, white
  balance 4000-9000 K renders, contrast and saturation changes): mean dE00 to the original before and
  after the base's edit, and the share of photos the edit brings closer.  Goal: closer on average, and
  for at least 70 % of the photos.

    .venv/bin/python bench/bench_base.py [--base MODEL] [--n 300]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import photos  # noqa: E402
from bench.bench_quality import delta_e  # noqa: E402
from bench.styles import camera_befores  # noqa: E402
from rlcore.data import random_crops  # noqa: E402
from rlcore.modelfile import BASE_MODEL_PATH, load_model  # noqa: E402

GOAL_GOOD_PHOTOS = 2.5
GOAL_SHARE_CLOSER = 0.7


def measure(model, n: int, seed: int) -> dict:
    images = [img for role in ("train", "heldout") for _, img in photos.load(role)]
    rng = np.random.default_rng(seed)
    originals = random_crops(images, n, rng)
    jittered = camera_befores(originals, rng)
    on_good = delta_e(originals, originals, model.predict_thumbnails(originals))
    before = delta_e(jittered, originals)
    after = delta_e(jittered, originals, model.predict_thumbnails(jittered))
    return {
        "model": model.metadata.get("model_id"),
        "photos": n,
        "good_photos_delta_e": float(on_good.mean()),
        "good_photos_delta_e_p90": float(np.quantile(on_good, 0.9)),
        "jittered_delta_e_no_edit": float(before.mean()),
        "jittered_delta_e_base": float(after.mean()),
        "jittered_share_closer": float((after < before).mean()),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default=str(BASE_MODEL_PATH))
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    photos.fetch()
    result = measure(load_model(args.base), args.n, args.seed)
    result["goals_met"] = {
        "good_photos": result["good_photos_delta_e"] <= GOAL_GOOD_PHOTOS,
        "jittered": result["jittered_delta_e_base"] < result["jittered_delta_e_no_edit"]
        and result["jittered_share_closer"] >= GOAL_SHARE_CLOSER,
    }
    print(json.dumps(result, indent=1))
    print(
        "command: .venv/bin/python bench/bench_base.py "
        + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
