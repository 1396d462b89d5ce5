"""Run files (train_state.json)."""
import math
import os

from keras_flm.run_files import STATE_JSON, read_state, write_state


def test_state_round_trips_an_infinite_best(tmp_path):
    assert read_state(str(tmp_path)) == {}
    write_state(str(tmp_path), {"best_val_nme": float("inf"), "epochs_done": 0})
    st = read_state(str(tmp_path))
    assert math.isinf(st["best_val_nme"]) and st["epochs_done"] == 0
    assert sorted(os.listdir(tmp_path)) == [STATE_JSON]  # no temp file left behind
