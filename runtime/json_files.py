"""The one reader of the JSON files flm writes or is handed (run files, releases, bundles, video
ground truth, compile records, arch files).

Its contract, the same everywhere: `default` when the file is absent (FileNotFoundError without
one) and ValueError naming the file and line when it is not JSON, so every command reports a
damaged file the same way. Callers that need their own error type (the runtime's BackendError,
click's BadParameter) convert the ValueError, keeping its message. TensorFlow-free and
Python 3.8-compatible: the board's runtime uses it.
"""
import json
import os
from typing import Any

_REQUIRED = object()


def read_json(path: str, default: Any = _REQUIRED) -> Any:
    if default is not _REQUIRED and not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError("%s is not valid JSON (line %d): %s" % (path, e.lineno, e.msg)) from None
