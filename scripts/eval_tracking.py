#!/usr/bin/env python
"""Re-crop stability of a landmark model on annotated faces (runtime.stability.recrop_study).

The live pipeline crops each frame from the previous frame's landmarks, so a model must be a
stable fixed point of "crop from my own landmarks". Per face: NME with the true box (one-shot,
the WFLW/PFLD protocol), then after re-cropping from its own landmarks 1..N times; and the same
chains from boxes jittered by fractions of the face size. Prints a markdown table.

    .venv/bin/python scripts/eval_tracking.py --model runs/NAME/ptq_int8.onnx
    .venv/bin/python scripts/eval_tracking.py \\
        --model ../shared/models/pfld_ghostone/PFLD_GhostOne_112_1_opt_sim.onnx \\
        --foreign-spec "channels=3,size=112,norm=-1-1,layout=nchw,out=flat,frame=crop01" \\
        --recrop 10 --jitter 0.1,0.2 --draws 4 --plot /tmp/recrop.png --json /tmp/recrop.json
    # the drift of half-hidden faces, measured on validation (choose fixes here, not on test):
    .venv/bin/python scripts/eval_tracking.py --model runs/NAME/qat_int8.onnx --split val --run runs/NAME \
        --occlude 0.25 --jitter ""
    # look at the faces that drift most: their true-box chains at steps 0, 2, 5, 10
    .venv/bin/python scripts/eval_tracking.py --model runs/NAME/qat_int8.onnx --show drifters --show-png c.png

Same numbers as `flm-dpu eval --recrop 10 --jitter 0.1,0.2` (which prints them as a plain table).
"""
import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from keras_flm.shared_tree import FACES98, data_help, display_path  # noqa: E402


def plot_curves(summary: Dict[str, Any], path: str, title: str) -> None:
    """NME against re-crop step, one line per start box (matplotlib, imported here only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for row in summary["rows"]:
        ax.plot(range(len(row["nme"])), [100 * v for v in row["nme"]], marker="o", ms=3, label=row["start"])
    ax.axhline(100 * summary["one_shot_nme"] * (1 + summary["target_increase"]), color="grey", ls=":",
               label="one-shot + %.0f %%" % (100 * summary["target_increase"]))
    ax.set_xlabel("re-crop step (0 = crop from the start box)")
    ax.set_ylabel("NME % (inter-ocular)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: re-crop steps drawn per face by --show (those beyond --recrop are left out)
SHOW_STEPS = (0, 2, 5, 10)
TILE = 300  # pixels per tile side


def chain_sheet(backend: Any, records: List[Any], faces: List[int], iterations: int,
                frame_of: Optional[Any] = None) -> Any:
    """A PNG-ready sheet: per face a row of tiles, the true-box chain at SHOW_STEPS, with the ground
    truth (green), the prediction (red) and the box it was cropped from (cyan). Why: a mean over 68
    faces hides how a chain fails (a chin walking onto an occluder, a box shrinking onto the eyes)."""
    import cv2
    import numpy as np

    from runtime import stability as S
    from runtime.evaluate import face_box, load_image
    from runtime.overlay import draw_points
    from runtime.preprocess import box_from_landmarks

    rows = []
    for i in faces:
        r = records[i]
        frame = load_image(r) if frame_of is None else frame_of(i, r)
        gt = np.asarray(r.landmarks, np.float64).reshape(-1, 2)
        true = face_box(r, "landmarks")
        chain = S.recrop_chains(backend, frame, [true], iterations)[:, 0]
        nme = S.normalised_distance(chain[:, None], gt, gt)[:, 0]
        x0, y0, x1, y1 = true
        w, h = x1 - x0, y1 - y0
        c0, r0 = int(max(0, x0 - 0.5 * w)), int(max(0, y0 - 0.5 * h))
        c1, r1 = int(min(frame.shape[1], x1 + 0.5 * w)), int(min(frame.shape[0], y1 + 0.5 * h))
        k = float(TILE) / max(r1 - r0, c1 - c0)
        tiles = []
        for step in [s for s in SHOW_STEPS if s <= iterations]:
            box = true if step == 0 else box_from_landmarks(chain[step - 1])
            tile = np.zeros((TILE, TILE, 3), np.uint8)
            view = cv2.resize(frame[r0:r1, c0:c1], None, fx=k, fy=k)[:TILE, :TILE]
            tile[:view.shape[0], :view.shape[1]] = view if view.ndim == 3 else view[..., None]
            draw_points(tile, (gt - (c0, r0)) * k, (0, 255, 0))
            draw_points(tile, (chain[step] - (c0, r0)) * k, (0, 0, 255))
            b = np.rint((np.asarray(box) - (c0, r0, c0, r0)) * k).astype(int)
            cv2.rectangle(tile, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (255, 255, 0), 1)
            cv2.putText(tile, "#%d step %d NME %.1f %%" % (i, step, 100 * nme[step]), (4, 16),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
            tiles.append(tile)
        rows.append(np.hstack(tiles))
    return np.vstack(rows)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="flm model (bundle/.onnx/.tflite/.h5) or a foreign ONNX")
    ap.add_argument("--foreign-spec", default=None, help="spec of a foreign ONNX model (flm-dpu eval --help)")
    ap.add_argument("--backend", default=None, help="engine for an flm model (default: from the suffix)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mirror", action="store_true",
                    help="average each face with its mirrored crop (flm-dpu run --mirror)")
    ap.add_argument("--data", default=FACES98, help=data_help())
    ap.add_argument("--split", choices=["test", "train", "val"], default="test",
                    help="val: the validation faces of --run (rebuilt from its config.json)")
    ap.add_argument("--run", default=None, help="training run whose validation split --split val uses")
    ap.add_argument("--occlude", type=float, default=None, metavar="FRACTION",
                    help="hide the lower FRACTION of every face (texture from the next face's image): "
                         "a validation probe of the drift half-hidden test faces show")
    ap.add_argument("--limit", type=int, default=None, help="only the first N faces")
    ap.add_argument("--recrop", type=int, default=10, help="re-crop steps N (default: %(default)s)")
    ap.add_argument("--jitter", default="0.1,0.2", help="start-box jitters, fractions of the face size")
    ap.add_argument("--jitter-mode", choices=["uniform", "exact"], default="uniform",
                    help="uniform: shift and scale each up to the amount; exact: by the full amount")
    ap.add_argument("--draws", type=int, default=4, help="jittered start boxes per face and amount")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", dest="json_out", default=None, help="write the summary as JSON")
    ap.add_argument("--plot", default=None, help="write NME vs re-crop step as a PNG (needs matplotlib)")
    ap.add_argument("--show", default=None, metavar="I,J,...",
                    help="draw these faces' true-box chains (steps 0, 2, 5, 10) into --show-png; 'drifters' "
                         "= the faces the verdict names")
    ap.add_argument("--show-png", default="recrop_chains.png",
                    help="where --show writes (default: %(default)s)")
    a = ap.parse_args(argv)
    if a.recrop < 0 or a.draws < 1 or a.threads < 1 or (a.limit is not None and a.limit < 1):
        ap.error("--recrop must be >= 0; --draws, --threads and --limit >= 1")
    if a.occlude is not None and not 0.0 < a.occlude < 1.0:
        ap.error("--occlude must be in (0, 1), got %g" % a.occlude)
    if (a.split == "val") != (a.run is not None):
        ap.error("--split val needs --run (the run whose validation faces to use); --run goes only with it")

    from keras_flm.evaluate import EvalError, split_faces
    from keras_flm.report_md import markdown_table
    from runtime import stability as S

    try:
        jitters = S.parse_jitters(a.jitter)
        show = None if a.show in (None, "drifters") else [int(v) for v in a.show.split(",") if v.strip()]
    except ValueError as e:
        ap.error("--jitter/--show: %s" % e)
    try:
        records = split_faces(a.data, a.split, a.run)[:a.limit]
    except EvalError as e:
        ap.error(str(e))
    bad = [i for i in show or () if not 0 <= i < len(records)]
    if bad:
        ap.error("--show: no face %s among the %d scored" % (", ".join(map(str, bad)), len(records)))
    frame_of = S.occluded_frames(records, a.occlude, a.seed) if a.occlude else None
    be = S.load_model(a.model, a.foreign_spec, a.backend, a.threads, mirror=a.mirror)
    t0 = time.perf_counter()
    try:
        study = S.recrop_study(be, records, a.recrop, jitters, a.draws, a.seed, a.jitter_mode,
                               frame_of=frame_of)
        info = be.info()
        if a.show:
            if show is None:
                nme = study["nme"]
                show = [f[0] for f in S.drifters(nme[:, 0, 0], nme[:, a.recrop, 0])["faces"]]
            import cv2

            cv2.imwrite(a.show_png, chain_sheet(be, records, show, a.recrop, frame_of))
            print("wrote %s (faces %s)" % (a.show_png, ", ".join(map(str, show))))
    finally:
        be.close()
    summary = S.summarize_study(study)
    summary.update(model=info, data=display_path(a.data), split=a.split, occlude=a.occlude,
                   seconds=time.perf_counter() - t0)
    header, rows = S.study_rows(summary)
    title = ("%s on %d %s faces%s of %s (%s), %d re-crops, jitter %s (%s) x %d draws, seed %d"
             % (os.path.basename(a.model), summary["faces"], a.split,
                " (lower %g occluded)" % a.occlude if a.occlude else "", summary["data"],
                info.get("foreign_spec") or info.get("backend"), a.recrop, a.jitter, a.jitter_mode, a.draws,
                a.seed))
    summary["markdown"] = "%s\n\n%s\n\n%s" % (title, markdown_table(header, rows), S.study_verdict(summary))
    print(summary["markdown"])
    if a.plot:
        plot_curves(summary, a.plot, "%s: NME vs re-crop step (%d faces)" % (os.path.basename(a.model),
                                                                          summary["faces"]))
        print("wrote %s" % a.plot)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(summary, f, indent=2, default=str)
        print("wrote %s" % a.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
