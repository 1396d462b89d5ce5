"""flm's quantization layer: PTQ and QAT INT8 (TFLite + ONNX), the DPU-like power-of-two
scheme, FP32 exports with parity checks, and the Table 2 report.

TFMOT needs Keras 2 (tf_keras): the switch must be set before TensorFlow is first
imported, so it is set here. Importing this package does not import TensorFlow.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
