"""Training data: crop cache (cache.py) and tf.data augmentation pipeline (pipeline.py).

The WFLW reader itself is runtime.wflw (the board's evaluation reads the same lists).
Importing this package does not import TensorFlow.
"""
