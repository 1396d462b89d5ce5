#!/usr/bin/env python
"""How far a model is from its teacher, and each from the human labels, on the test faces by pose.

Why: faces98's train list is labelled by a teacher (three WFLW-trained PFLD models, mirrored,
keras_flm/data/teacher.py), so validation NME measures how well a model imitates it on training-like
faces. This script asks the same on the test faces: a model that is close to its teacher on
validation but far from it on test faces has a coverage gap (faces unlike the training ones), not
a label gap. All crops use the true box (the WFLW protocol); the teacher also after refining its box
twice from its own prediction, as the train list was labelled.

    .venv/bin/python scripts/eval_vs_teacher.py --model models/pfld98_w1/qat_int8.onnx [--json out.json]
"""
import argparse
import json
import os
import sys
from typing import Any, Dict, List

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from keras_flm.shared_tree import FACES98, data_help  # noqa: E402


def predict(backend: Any, records: List[Any]) -> np.ndarray:
    from runtime.evaluate import face_box, load_image
    from runtime.stability import infer_boxes

    return infer_boxes(backend, [load_image(r) for r in records], [face_box(r, "landmarks") for r in records])


def teacher_predict(teachers: List[Any], records: List[Any], refine: int) -> np.ndarray:
    from keras_flm.data.teacher import label_face
    from runtime.evaluate import face_box, load_image

    return np.stack([label_face(teachers, load_image(r), face_box(r, "landmarks"), refine=refine)
                     for r in records])


def rows(pairs: Dict[str, Any], gt: np.ndarray, pose: np.ndarray) -> List[Dict[str, Any]]:
    """NME of each (prediction, reference) pair, normalised by the human labels' inter-ocular distance."""
    from runtime.stability import normalised_distance

    out = []
    for name, (pred, ref) in pairs.items():
        n = normalised_distance(pred, ref, gt)
        out.append({"pair": name, "all": float(n.mean()), "pose": float(n[pose].mean()),
                    "other": float(n[~pose].mean())})
    return out


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an flm model file (.onnx, .tflite, .h5) or bundle")
    ap.add_argument("--data", default=FACES98, help=data_help())
    ap.add_argument("--teachers", default=None, help="directory of the teacher ONNX files")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)

    from keras_flm.data.teacher import load_teachers
    from keras_flm.report_md import markdown_table
    from runtime.stability import load_model
    from runtime.wflw import read_annotations

    records = read_annotations(a.data, "test")
    gt = np.stack([np.asarray(r.landmarks, np.float64) for r in records])
    pose = np.array([r.attributes[0] > 0 for r in records])
    teachers = load_teachers(a.teachers)
    model = predict(load_model(a.model), records)
    teacher = teacher_predict(teachers, records, refine=0)
    refined = teacher_predict(teachers, records, refine=2)
    result = rows({"teacher (true box) vs human": (teacher, gt),
                   "teacher (box refined twice, as the train labels) vs human": (refined, gt),
                   "model vs human": (model, gt),
                   "model vs teacher (true box)": (model, teacher)}, gt, pose)
    header = ["pair", "test (%d) NME %%" % len(records), "pose (%d)" % pose.sum(),
              "other (%d)" % (~pose).sum()]
    body = [[r["pair"], "%.2f" % (100 * r["all"]), "%.2f" % (100 * r["pose"]), "%.2f" % (100 * r["other"])]
            for r in result]
    print("%s on %d test faces of %s" % (a.model, len(records), a.data))
    print(markdown_table(header, body))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "data": a.data, "rows": result}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
