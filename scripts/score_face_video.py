#!/usr/bin/env python
"""Score `flm-dpu run --jsonl` output on a video with known landmarks (runtime.stability.score_video).

Per run (one JSONL each): share of scored frames where the true face was found (a plausible face
whose landmark box overlaps the true one by IoU >= 0.3), mean NME (inter-ocular, points 60/72) over
those frames, split into the first --settle frames of each face and the rest, FR@0.1, and jitter:
mean over points of |Δpred − Δgt| between consecutive frames of the same face, in % of the
inter-ocular distance. With --model, the same model is also run one-shot on every scored frame
of the decoded video, cropped at its true box: the fair reference for "NME / one-shot".

    .venv/bin/python scripts/make_face_video.py --out /tmp/faces.mp4
    .venv/bin/flm-dpu run --video /tmp/faces.mp4 --no-display --jsonl /tmp/faces.jsonl \\
        --model M [--foreign-spec S]
    .venv/bin/python scripts/score_face_video.py --video /tmp/faces.mp4 --jsonl /tmp/faces.jsonl \\
        --model M [--foreign-spec S]

Works on keras_flm.synth.write_face_video's videos too (their ground truth is VIDEO.json as well).
"""
import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", required=True, help="the video flm-dpu ran on")
    ap.add_argument("--truth", default=None, help="its ground truth (default: VIDEO.json)")
    ap.add_argument("--jsonl", action="append", required=True, help="flm-dpu run --jsonl output (repeatable)")
    ap.add_argument("--name", action="append", default=[],
                    help="row name of each --jsonl (default: file name)")
    ap.add_argument("--model", default=None, help="model for the one-shot reference on the same frames")
    ap.add_argument("--foreign-spec", default=None, help="spec of a foreign ONNX --model")
    ap.add_argument("--backend", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mirror", action="store_true",
                    help="average each face with its mirrored crop (flm-dpu run --mirror)")
    ap.add_argument("--settle", type=int, default=10, help="frames after a face switch reported apart")
    ap.add_argument("--json", dest="json_out", default=None, help="write the scores as JSON")
    a = ap.parse_args(argv)
    if len(a.name) > len(a.jsonl) or a.settle < 0 or a.threads < 1:
        ap.error("at most one --name per --jsonl; --settle >= 0; --threads >= 1")

    from keras_flm.report_md import markdown_table
    from runtime import stability as S

    truth = S.read_truth(a.truth or a.video + ".json")
    reference = None
    if a.model:
        be = S.load_model(a.model, a.foreign_spec, a.backend, a.threads, mirror=a.mirror)
        try:
            reference = S.reference_predictions(be, a.video, truth["landmarks"], truth["scored"])
        finally:
            be.close()
    names = a.name + [os.path.basename(p) for p in a.jsonl[len(a.name):]]
    scores: Dict[str, Dict[str, Any]] = {}
    for name, path in zip(names, a.jsonl):
        scores[name] = S.score_video(truth, S.read_jsonl(path), reference, a.settle)
    first = next(iter(scores.values()))
    title = ("%s: %d frames, %d faces, %d scored (%d transition frames left out)%s"
             % (a.video, first["frames"], first["faces"], first["scored_frames"], first["unscored_frames"],
                "; one-shot reference: %s" % os.path.basename(a.model) if a.model else ""))
    text = "%s\n\n%s\n\n%s" % (title, markdown_table(*S.video_rows(scores)),
                                "\n".join(S.video_verdict(name, s) for name, s in scores.items()))
    print(text)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"runs": scores, "markdown": text}, f, indent=2)
        print("wrote %s" % a.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
