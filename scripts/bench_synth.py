#!/usr/bin/env python
"""Speed of the synthetic face generator (one process, one core): prints a table.

    .venv/bin/python scripts/bench_synth.py [--n 300]

CPU faces/s is process CPU time (what one core delivers, independent of other load on the
machine); wall faces/s is what you see on this machine right now.
"""
import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from keras_flm.synth import render_face, write_dataset  # noqa: E402
from keras_flm.synth.video import write_face_video  # noqa: E402


def timed(fn, n):
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return n / (time.process_time() - c0), n / (time.perf_counter() - w0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="faces per measurement")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    n = args.n
    rows = []
    for size in (160, 192, 256):
        def render(size=size):
            for i in range(n):
                render_face(np.random.default_rng([1, i]), size)

        def render_jpeg(size=size):
            for i in range(n):
                img, _, _ = render_face(np.random.default_rng([1, i]), size)
                cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])

        rows.append(("render_face", "%d px" % size) + timed(render, n))
        rows.append(("render + JPEG encode", "%d px" % size) + timed(render_jpeg, n))
    with tempfile.TemporaryDirectory() as d:
        rows.append(("write_dataset (files)", "192 px")
                    + timed(lambda: write_dataset(os.path.join(d, "ds"), n, progress=False), n))
        frames = max(30, n // 5)
        rows.append(("write_face_video (frames)", "640x480")
                     + timed(lambda: write_face_video(os.path.join(d, "v.mp4"), frames), frames))
    print("%-28s %-9s %14s %14s" % ("step", "size", "CPU faces/s", "wall faces/s"))
    for name, size, cpu, wall in rows:
        print("%-28s %-9s %14.1f %14.1f" % (name, size, cpu, wall))


if __name__ == "__main__":
    main()
