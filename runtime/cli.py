"""`flm-dpu`: the board/host runtime command line (filled in by the runtime issue)."""
import sys
from typing import List, Optional

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """flm-dpu: run the landmark detector on a camera, video or images (VART DPU, ONNX, TFLite, Keras)."""


def main(argv: Optional[List[str]] = None) -> None:
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="flm-dpu")
