"""Keras H5 backend (reference only; needs TensorFlow, imported lazily).

Serves through a traced tf.function, never `model.predict` (7x slower at batch 1)."""
from typing import Optional

import numpy as np

from runtime.backends.base import Backend, BackendError
from runtime.preprocess import DEFAULT_SPEC, CropSpec, normalize_input


class KerasBackend(Backend):
    name = "keras"

    def __init__(self, path: str, spec: CropSpec = DEFAULT_SPEC, threads: Optional[int] = None) -> None:
        super().__init__(path, spec)
        import os
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        try:
            import tensorflow as tf
            try:
                import tf_keras as keras
            except ImportError:
                from tensorflow import keras
        except ImportError as e:
            raise BackendError("the keras backend needs TensorFlow (pip install flm[train]): %s" % e) from e
        if threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            except RuntimeError:
                pass  # already initialised in this process
        try:
            self.model = keras.models.load_model(path, compile=False)
        except (OSError, ValueError) as e:
            raise BackendError("%s is not a loadable Keras model: %s" % (path, e)) from e
        self._fn = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        self._tf = tf

    def _run(self, crops_u8: np.ndarray) -> np.ndarray:
        y = self._fn(self._tf.constant(normalize_input(crops_u8, self.spec)))
        if isinstance(y, (list, tuple)):
            y = y[0]
        return y.numpy()
