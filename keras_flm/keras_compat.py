"""One import point for Keras 2.

Host (TF 2.21): `tf_keras`. Vitis AI docker (TF 2.12, Python 3.8): `tf.keras` is Keras 2
already and tf_keras is absent. Both give the same built-in layers and H5 format.
"""
import os


def get_keras():
    """Return the Keras 2 module for this environment (imports TensorFlow)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    try:
        import tf_keras as keras  # noqa: F401
    except ImportError:  # Vitis AI docker: TF 2.12 ships Keras 2 as tf.keras
        from tensorflow import keras
    return keras
