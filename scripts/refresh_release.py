#!/usr/bin/env python
"""Bring a release up to what today's `flm release` writes (quant.release.refresh_release): its ONNX
files re-written through today's ONNX save passes (quant.onnx_save), outputs bit-identical, with the
size records that name them; records it lacks measured on its own files (the host default's
`--mirror` scores); the card re-rendered.

    .venv/bin/python scripts/refresh_release.py                 # models/pfld98_w1

Why a script: the run a release came from is in runs/, not in git, so `flm release` cannot re-make it
on a fresh machine; this changes no weights (stop 27: the all-zero int32 bias zero points ORT writes,
40 kB of the per-channel QAT ONNX; stop 29: the `--mirror` line of the card).
"""
import argparse
import os
import sys
from typing import List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from keras_flm.shared_tree import display_path  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    from runtime.release import source_release

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    release = source_release()
    ap.add_argument("--release", default=release,
                    help="release directory (default: %s)" % display_path(release))
    ap.add_argument("--data", default=None,
                    help="WFLW-layout root for records that must be measured (default: the release's own)")
    a = ap.parse_args(argv)
    if not os.path.isfile(os.path.join(a.release, "meta.json")):
        ap.error("%s is not a release (no meta.json)" % a.release)
    from quant.release import ReleaseError, refresh_release

    try:
        changed = refresh_release(a.release, a.data)
    except (ReleaseError, OSError, ValueError) as e:
        print("refresh_release: %s" % e, file=sys.stderr)
        return 1
    saved = sum(b - c for b, c in changed.values())
    print("%s: %d ONNX file(s) re-written, %d bytes saved" % (a.release, len(changed), saved))
    return 0


if __name__ == "__main__":
    sys.exit(main())
