"""flm's deployable core (board and host): landmark scheme, crop contract, metrics,
inference backends, pipeline, DMS analytics and `flm-dpu`. numpy + OpenCV only at
import time; Python 3.8 syntax; never TensorFlow at module level."""
