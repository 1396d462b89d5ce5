"""Mirror averaging (runtime.backends.mirror): the mirrored crop's reading is mapped back exactly
(pixel j <-> size - 1 - j, left/right points swapped), a mirror-symmetric bias cancels, and the
wrapper works through real engines and the CLI."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from runtime.backends import load_backend
from runtime.backends.mirror import MirrorAveraged, with_mirror
from runtime.cli import cli
from runtime.landmarks import MIRROR, NUM_POINTS
from runtime.preprocess import DEFAULT_SPEC
from tests.runtime.dot_finder import DotFinder

SIZE = DEFAULT_SPEC.size


@pytest.fixture
def crops():
    rng = np.random.default_rng(0)
    x = rng.integers(40, 200, (3, SIZE, SIZE), dtype=np.uint8)
    for i, (u, v, a, b) in enumerate([(20, 30, 90, 31), (40, 50, 70, 90), (0, 0, 111, 111)]):
        x[i, v, u] = 255
        x[i, b, a] = 250
    return x


def test_an_equivariant_model_reads_the_same_with_and_without_mirror(crops):
    plain = DotFinder().infer(crops)
    inner = DotFinder()
    both = MirrorAveraged(inner).infer(crops)
    assert both.shape == (3, NUM_POINTS, 2) and both.dtype == np.float32
    assert np.abs(both - plain).max() < 1e-6  # 1 - x instead of (size - 1) / size - x would be 1/112 off
    assert len(inner.calls) == 1 and len(inner.calls[0]) == 6  # one call: the crops, then their mirrors
    assert np.array_equal(inner.calls[0][3:], crops[:, :, ::-1])


def test_a_constant_sideways_bias_cancels(crops):
    plain = DotFinder().infer(crops)
    assert np.abs(DotFinder(bias=0.03).infer(crops) - plain).max() > 0.02
    assert np.abs(MirrorAveraged(DotFinder(bias=0.03)).infer(crops) - plain).max() < 1e-6


def test_more_faces_than_the_buffer_and_crops_left_untouched(crops):
    many = np.concatenate([crops] * 7)  # 21 faces > the 16 preallocated
    before = many.copy()
    m = MirrorAveraged(DotFinder(), max_faces=2)
    out = m.infer(many)
    assert np.abs(out - DotFinder().infer(many)).max() < 1e-6 and np.array_equal(many, before)
    assert with_mirror(m.inner, False) is m.inner and m.info()["mirror_average"] is True


def test_real_engines_with_mirror(tiny_models, crops):
    for kind in ("onnx", "tflite"):
        plain = load_backend(tiny_models[kind], threads=1)
        mirrored = load_backend(tiny_models[kind], threads=1, mirror=True)
        a, b = plain.infer(crops), mirrored.infer(crops)
        flipped = plain.infer(np.ascontiguousarray(crops[:, :, ::-1]))[:, list(MIRROR)]
        flipped[..., 0] = (SIZE - 1.0) / SIZE - flipped[..., 0]
        assert np.allclose(b, (a + flipped) / 2, atol=1e-5), kind
        assert mirrored.spec == plain.spec and mirrored.batch_size == plain.batch_size
        assert mirrored.name == plain.name + "+mirror"
        if kind == "tflite":  # the engine's own attributes show through (bench labels the interpreter)
            assert mirrored.provider == plain.provider
        plain.close()
        mirrored.close()


def test_cli_bench_says_mirror(tiny_model_onnx, tmp_path):
    js = tmp_path / "b.json"
    r = CliRunner().invoke(cli, ["bench", "--model", tiny_model_onnx, "--mirror", "--iters", "3",
                                 "--batch", "2", "--json", str(js)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads(js.read_text())["model"]["mirror_average"] is True
