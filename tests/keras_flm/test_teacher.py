"""keras_flm.data.teacher: the ensemble's mirrored readings are mapped back exactly, so an exactly
mirror-equivariant model labels a face the same with and without them (stop 31: x -> 1 - x had put
the mirrored half one crop pixel to the right, an error in every turned face labelled before)."""
import numpy as np

from keras_flm.data.teacher import label_face, predict_crop
from runtime.preprocess import DEFAULT_SPEC, crop_face, to_frame
from tests.runtime.dot_finder import DotFinder


def test_mirrored_readings_agree_with_plain_ones_for_an_equivariant_model():
    rng = np.random.default_rng(1)
    crop = rng.integers(40, 200, (DEFAULT_SPEC.size, DEFAULT_SPEC.size), dtype=np.uint8)
    crop[30, 20] = 255
    crop[31, 90] = 250
    readings = predict_crop([DotFinder(), DotFinder()], crop)
    assert readings.shape == (4, 98, 2)
    plain = DotFinder().infer(crop[None])[0]
    assert np.abs(readings - plain[None]).max() < 1e-6  # 1 - x would be 1/112 off on rows 1 and 3


def test_label_face_of_an_equivariant_model_is_its_plain_reading():
    rng = np.random.default_rng(2)
    frame = rng.integers(40, 200, (240, 260), dtype=np.uint8)
    frame[100, 90] = 255
    frame[104, 160] = 250
    box = (70.0, 60.0, 190.0, 180.0)
    labels = label_face([DotFinder()], frame, box, refine=0)
    crop, affine = crop_face(frame, box, DEFAULT_SPEC)
    plain = to_frame(DotFinder().infer(crop[None])[0], affine, DEFAULT_SPEC.size)
    assert np.abs(labels - plain).max() < 1e-3  # frame pixels
