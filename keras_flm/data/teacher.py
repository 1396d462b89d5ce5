"""Label a face the way faces98's train list was labelled (labels v2, ../shared/data/README.md):
the three WFLW-trained PFLD models of ../shared/models/pfld_ghostone, each also run on the
mirrored crop, predictions averaged, the crop box refined from the prediction twice.

Why it lives here: new training faces (keras_flm/data/pose_synth.py's turned faces) must carry
labels in the same convention as the rest of the train list, and that convention is the
teacher's (WFLW's), not a mesh projection's.
"""
import os
from typing import Any, List, Optional, Sequence

import numpy as np

from keras_flm.shared_tree import TEACHER_DIR
from runtime.backends.mirror import unmirror
from runtime.landmarks import NUM_POINTS
from runtime.preprocess import DEFAULT_SPEC, CropSpec, box_from_landmarks, crop_face, to_frame

#: The PyTorch flow's small model that flm is measured against (the README's tables, release_full.sh): one
#: of the three teachers.
ANCHOR_FILE = "PFLD_GhostOne_112_1_opt_sim.onnx"
TEACHER_FILES = (ANCHOR_FILE, "PFLD_GhostNet_Slim_112_1_opt_sim.onnx", "PFLD_GhostNet_112_1_opt_sim.onnx")
#: The models' input/output conventions (../shared/models/README.md), fed flm's gray crop.
TEACHER_SPEC = "channels=3,size=112,norm=-1-1,layout=nchw,out=flat,frame=crop01"
REFINE_STEPS = 2


def load_teachers(model_dir: Optional[str] = None, files: Sequence[str] = TEACHER_FILES,
                  threads: Optional[int] = None) -> List[Any]:
    """The ensemble's backends; FileNotFoundError naming the first missing file."""
    from runtime.backends.foreign import load_foreign

    model_dir = model_dir or TEACHER_DIR
    paths = [os.path.join(model_dir, f) for f in files]
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError("teacher model not found: %s" % p)
    return [load_foreign(p, TEACHER_SPEC, threads=threads) for p in paths]


def predict_crop(models: Sequence[Any], crop: np.ndarray) -> np.ndarray:
    """(len(models) * 2, 98, 2) crop-normalised predictions: each model on the crop and on its
    mirror, mapped back by runtime.backends.mirror.unmirror (until stop 31 this used x -> 1 - x,
    which moved the mirrored half of the readings one crop pixel right: the turned faces of
    scripts/make_pose_data.py made before then carry that error)."""
    mirrored = np.ascontiguousarray(crop[:, ::-1])
    out = []
    for m in models:
        out.append(np.asarray(m.infer(crop[None]), np.float64).reshape(NUM_POINTS, 2))
        flipped = np.asarray(m.infer(mirrored[None]), np.float64).reshape(NUM_POINTS, 2)
        out.append(unmirror(flipped, crop.shape[1]))
    return np.stack(out)


def label_face(models: Sequence[Any], frame: np.ndarray, box: Sequence[float],
               refine: int = REFINE_STEPS, spec: CropSpec = DEFAULT_SPEC) -> np.ndarray:
    """Ensemble landmarks (98, 2) in frame pixels, from `box` then `refine` boxes of its own."""
    pts = None
    for _ in range(refine + 1):
        crop, affine = crop_face(frame, box, spec)
        pts = to_frame(predict_crop(models, crop).mean(axis=0), affine, spec.size)
        box = box_from_landmarks(pts)
    return np.asarray(pts, np.float64)
