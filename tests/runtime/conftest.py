"""Fixtures for the runtime tests: a tiny random-weight PFLD in every format, and a synthetic face video.

`tiny_model_onnx` is the model the pipeline/CLI tests run. It is a real MobileNetV2-PFLD
(width 0.25) with random weights, made well-conditioned (BatchNorm statistics taken from a
forward pass, so activations neither vanish nor explode) and with its regression head's
bias set to the mean face shape in crop coordinates: it answers "roughly a face filling
the crop" with input-dependent wiggles, like a model that has learnt only the mean shape.
The coordinator may override this fixture with a tiny *trained* run.
"""
import warnings
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from runtime.preprocess import DEFAULT_SPEC, box_from_landmarks, crop_face, to_crop_normalised

WIDTH = 0.25
HEAD_WIGGLE = 0.01  # std of the input-dependent part of the outputs (crop-normalised units)
VIDEO_SIZE = (640, 480)


def mean_template() -> np.ndarray:
    """Crop-normalised (98, 2) landmarks of the renderer's default frontal face."""
    from keras_flm.synth.render import FaceParams, render_face

    img, lm, _ = render_face(FaceParams(center=(160.0, 150.0), scale=90.0), (320, 320))
    _, m = crop_face(img, box_from_landmarks(lm), DEFAULT_SPEC)
    return to_crop_normalised(lm, m, DEFAULT_SPEC.size)


def build_tiny_model(seed: int = 0):
    """Width-0.25 PFLD inference model: random weights, data-set BN statistics, mean-shape head."""

    from keras_flm.config import ModelConfig
    from keras_flm.keras_compat import get_keras
    from keras_flm.model import build_inference_model

    keras = get_keras()
    keras.utils.set_random_seed(seed)  # Python, NumPy and TF seeds: the same weights on every run
    model = build_inference_model(ModelConfig(width=WIDTH))
    rng = np.random.default_rng(seed)
    x = ((rng.integers(0, 256, (16, 112, 112, 1)).astype(np.float32) - 128) / 128)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for bn in bns:
        bn.momentum = 0.0  # one training-mode pass copies this batch's statistics into the moving ones
    model(x, training=True)
    fc = model.get_layer("fc")
    kernel, bias = fc.get_weights()
    feats = keras.Model(model.inputs, fc.input)(x, training=False).numpy().reshape(len(x), -1)
    raw = feats @ kernel.reshape(kernel.shape[-2], -1)
    kernel = kernel * (HEAD_WIGGLE / (raw.std(axis=0, keepdims=True) + 1e-6)).reshape(1, 1, 1, -1)
    bias = mean_template().reshape(-1) - (raw.mean(axis=0) * HEAD_WIGGLE / (raw.std(axis=0) + 1e-6))
    fc.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Dict[str, str]:
    """{"h5", "onnx", "tflite"} paths of one tiny random model exported three ways."""
    import tensorflow as tf
    import tf2onnx

    d = tmp_path_factory.mktemp("tiny_model")
    model = build_tiny_model()
    paths = {"h5": str(d / "tiny.h5"), "onnx": str(d / "tiny.onnx"), "tflite": str(d / "tiny.tflite")}
    with warnings.catch_warnings():  # H5 is deliberate: the Vitis AI docker's TF 2.12 loads it
        warnings.simplefilter("ignore", UserWarning)
        model.save(paths["h5"])
    spec = (tf.TensorSpec((None, 112, 112, 1), tf.float32, name="image"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=13, output_path=paths["onnx"])
    Path(paths["tflite"]).write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return paths


@pytest.fixture(scope="session")
def tiny_model_onnx(tiny_models: Dict[str, str]) -> str:
    """The model the pipeline and CLI tests run (override with a trained tiny run when available)."""
    return tiny_models["onnx"]


@pytest.fixture(scope="session")
def face_video(tmp_path_factory):
    """(video path, ground truth) of a 640x480 synthetic one-face video: 45 frames at 30 fps,
    blinking (7 frames) at frames 10 and 30 (keras_flm.synth.write_face_video)."""
    from keras_flm.synth import write_face_video

    path = str(tmp_path_factory.mktemp("video") / "face.mp4")
    truth = write_face_video(path, 45, size=VIDEO_SIZE, fps=30.0, seed=0, blink_every=20, blink_frames=7)
    return path, truth
