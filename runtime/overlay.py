"""Drawing results onto frames, cheaply: landmarks are set as 2x2 pixel dots by numpy
indexing (one vectorised write per face instead of 98 cv2.circle calls); text is a few
cv2.putText lines. Colour says how the face was found: green = tracked from landmarks,
yellow = fresh detection, red = landmarks judged implausible (track lost)."""
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np

GREEN = (0, 220, 0)
YELLOW = (0, 220, 220)
RED = (0, 0, 255)
ORANGE = (0, 140, 255)
WHITE = (255, 255, 255)
STATE_COLOURS = {"alert": GREEN, "drowsy": ORANGE, "asleep": RED, "distracted": YELLOW}
FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_points(frame: np.ndarray, points: np.ndarray, colour: Sequence[int]) -> None:
    """2x2 dots at (N, 2) frame-pixel points; points outside the frame are skipped."""
    h, w = frame.shape[:2]
    xy = np.rint(points).astype(np.int32)
    keep = (xy[:, 0] >= 0) & (xy[:, 0] < w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] < h - 1)
    x, y = xy[keep, 0], xy[keep, 1]
    c = np.asarray(colour, np.uint8)
    frame[y, x] = c
    frame[y + 1, x] = c
    frame[y, x + 1] = c
    frame[y + 1, x + 1] = c


LINE_H = 15  # pixels between text lines at SCALE
SCALE = 0.45


def text_block(frame: np.ndarray, lines: Sequence[str], x: int, y: int,
               colours: Optional[Sequence[Sequence[int]]] = None) -> None:
    """Lines of text with their top-left corner at (x, y), on a darkened box for contrast.

    Darkening the box (a shift of its pixels) costs ~0.01 ms; the usual black outline
    (a second, thick anti-aliased putText) costs ~0.3 ms per line."""
    if not lines:
        return
    h, w = frame.shape[:2]
    width = max(cv2.getTextSize(s, FONT, SCALE, 1)[0][0] for s in lines)
    x0, y0 = max(0, x - 2), max(0, y - 2)
    x1, y1 = min(w, x + width + 3), min(h, y + LINE_H * len(lines) + 3)
    if x1 > x0 and y1 > y0:
        roi = frame[y0:y1, x0:x1]
        np.right_shift(roi, 1, out=roi)
    for i, s in enumerate(lines):
        colour = colours[i] if colours is not None else WHITE
        cv2.putText(frame, s, (x, y + LINE_H * (i + 1) - 4), FONT, SCALE, tuple(int(v) for v in colour), 1,
                    cv2.LINE_AA)


def draw_face(frame: np.ndarray, face: Dict[str, Any], points: Optional[np.ndarray]) -> None:
    colour = RED if not face.get("plausible", True) else (GREEN if face.get("source") == "track" else YELLOW)
    x0, y0, x1, y1 = (int(round(v)) for v in face["box"])
    label = "#%d" % face["id"]
    if face.get("edge"):
        label += " at frame edge"
    if not face.get("plausible", True):
        label += " lost"
    dms = face.get("dms")
    if dms:
        state = dms["state"]
        text_block(frame, ["%s %s" % (label, state.upper())], x0, max(0, y0 - LINE_H - 3),
                   [STATE_COLOURS.get(state, WHITE)])
        pose = dms.get("head_pose")
        lines = ["EAR %.2f%s  blinks %d (%.0f/min)" % (dms["ear"], " closed" if dms["eyes_closed"] else "",
                                                       dms["blinks"], dms["blink_rate_per_min"]),
                 "PERCLOS %.0f%%  MAR %.2f%s" % (dms["perclos"] * 100, dms["mar"],
                                                 " yawn" if dms["yawning"] else "")]
        if pose:
            lines.append("pitch %.0f yaw %.0f roll %.0f" % (pose["pitch"], pose["yaw"], pose["roll"]))
        text_block(frame, lines, x0, y1 + 3)
    else:
        text_block(frame, [label], x0, max(0, y0 - LINE_H - 3), [colour])
    # box and points last: text blocks darken what is under them
    cv2.rectangle(frame, (x0, y0), (x1, y1), colour, 1)
    if points is not None:
        draw_points(frame, points, colour)


def draw_frame(frame: np.ndarray, faces: List[Dict[str, Any]], points: List[Optional[np.ndarray]],
               status_lines: Sequence[str]) -> np.ndarray:
    """Draw the status block (FPS, stage latencies) and every face in place; returns the frame."""
    text_block(frame, list(status_lines), 8, 6)
    if not faces:
        text_block(frame, ["no face"], 8, frame.shape[0] - LINE_H - 8, [RED])
    for face, pts in zip(faces, points):
        draw_face(frame, face, pts)
    return frame
