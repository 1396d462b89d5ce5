"""flm's Keras side: model builder, data, training, evaluation.

TFMOT needs Keras 2 (tf_keras); the switch must be set before TensorFlow is first
imported, so it is set here, the package every TensorFlow user goes through.
Importing this package does not import TensorFlow.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
