"""Training throughput: the real tf.data pipeline vs the model alone on cached tensors.

The input pipeline must keep the training step fed: images/s with augmentation should be
>= 95 % of images/s on one pre-made batch repeated (no input work at all). Also reports the
pipeline's own rate (augmented batches produced per second with no model attached).

    .venv/bin/python scripts/bench_train.py --data ../shared/data/faces98 [--width 1.0 --steps 10]

The VM drifts between passes (other jobs share its 2 cores), so short model-alone and
pipeline-fed passes alternate for several rounds, driven by Keras' own train step on
persistent iterators, and the verdict is the median of the per-round ratios.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras_flm  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="WFLW-layout root")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per pass")
    ap.add_argument("--rounds", type=int, default=6, help="alternating model-alone / pipeline passes")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-images", type=int, default=512, help="faces to cache for the benchmark")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()

    import numpy as np
    import tensorflow as tf

    from keras_flm.config import RunConfig
    from keras_flm.data.cache import build_cache
    from keras_flm.data.pipeline import make_dataset
    from keras_flm.loss import make_pfld_loss
    from keras_flm.train import build_models, make_optimizer
    from runtime.wflw import read_annotations, subset

    cfg = RunConfig()
    cfg.model.width = args.width
    cfg.train.batch_size = b = args.batch_size
    recs = subset(read_annotations(args.data, "train"), args.max_images)
    cache = build_cache(recs, args.data, "train", cfg.crop, cfg.augment.cache_margin,
                        cache_dir=args.cache_dir)
    ds = make_dataset(cache, b, cfg.augment, cfg.crop, training=True, seed=0, repeat=True)

    _, packed = build_models(cfg)
    packed.compile(optimizer=make_optimizer(cfg), loss=make_pfld_loss())
    step = packed.make_train_function()  # Keras' own train step: one call = one batch
    real_it = iter(ds)
    fixed_batch = next(iter(ds))
    fixed_it = iter(tf.data.Dataset.from_tensors(fixed_batch).repeat())

    def rate(it, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            float(step(it)["loss"])  # .numpy() waits for the step
        return n * b / (time.perf_counter() - t0)

    def pipeline_rate(n: int) -> float:
        it = iter(ds)
        next(it)
        t0 = time.perf_counter()
        for _ in range(n):
            next(it)[0].numpy()
        return n * b / (time.perf_counter() - t0)

    rate(fixed_it, args.warmup)
    rate(real_it, args.warmup)
    model_rates, real_rates = [], []
    for r in range(args.rounds):  # alternate A/B so drift of the shared VM hits both alike
        if r % 2 == 0:
            model_rates.append(rate(fixed_it, args.steps))
            real_rates.append(rate(real_it, args.steps))
        else:
            real_rates.append(rate(real_it, args.steps))
            model_rates.append(rate(fixed_it, args.steps))
    pipe = pipeline_rate(args.steps * 4)
    ratios = [a / m for a, m in zip(real_rates, model_rates)]
    ratio = float(np.median(ratios))
    print("\ntraining throughput, width %g, batch %d, %d rounds x %d steps, %d cores"
          % (args.width, b, args.rounds, args.steps, os.cpu_count() or 0))
    print("%-46s %10s %s" % ("path", "images/s", "(median; per round)"))
    print("%-46s %10.1f %s" % ("model alone (one cached batch, no input work)", float(np.median(model_rates)),
                              " ".join("%.1f" % v for v in model_rates)))
    print("%-46s %10.1f %s" % ("model + real tf.data pipeline (augmented)", float(np.median(real_rates)),
                              " ".join("%.1f" % v for v in real_rates)))
    print("%-46s %10.1f" % ("pipeline alone (no model)", pipe))
    print("%-46s %9.1f%%  %s" % ("pipeline-fed / model-alone (median of rounds)", 100 * ratio,
                                 "OK (>= 95%)" if ratio >= 0.95 else "INPUT-BOUND (< 95%)"))
    return 0 if ratio >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
