"""Procedural synthetic faces with exact WFLW 98-point labels: flm's built-in default data.

numpy + OpenCV only (no TensorFlow). Public API:

- `render_face(rng | seed | FaceParams, image_size=192, background=None)` -> (uint8 gray image,
  float32 (98, 2) landmarks in pixels, int32 (6,) WFLW attribute flags). `sample_params(rng,
  image_size, frontal=False, **force)` draws the FaceParams; see render.py for every field and
  the attribute-flag thresholds.
- `write_dataset(out_dir, n, seed=0, test_fraction=0.2, image_size=192, progress=True,
  overwrite=False)` -> summary dict; writes a WFLW-layout root (see dataset.py).
- `write_face_video(path, n_frames, size=(640, 480), fps=30, seed=0, blink_every=90, ...)` ->
  per-frame ground truth, also written to `ground_truth_path(path)` (see video.py);
  `render_frame(eye_open=..., mouth_open=..., seed=...)` -> one frame of that face.
"""
from keras_flm.synth.dataset import write_dataset
from keras_flm.synth.render import FaceParams, render_face, sample_params
from keras_flm.synth.video import ground_truth_path, render_frame, write_face_video

__all__ = ["FaceParams", "render_face", "sample_params", "write_dataset", "write_face_video",
           "render_frame", "ground_truth_path"]
