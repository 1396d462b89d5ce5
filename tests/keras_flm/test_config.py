"""Named augmentation presets: one source, written to config.json, rejected when unknown."""
import dataclasses
import json

import pytest
from click.testing import CliRunner

from keras_flm.cli import cli
from keras_flm.config import AUGMENT_PRESETS, AugmentConfig, RunConfig, augment_preset


def test_full_preset_is_the_default_recipe():
    assert augment_preset("full") == AugmentConfig()


def test_light_and_none_are_weaker_than_full():
    full, light, none = (augment_preset(n) for n in ("full", "light", "none"))
    for name in ("rotation_deg", "scale_jitter", "shift_jitter", "brightness", "occlusion_prob"):
        assert getattr(none, name) == 0 <= getattr(light, name) < getattr(full, name), name
    assert not none.flip and light.flip


def test_wild_is_stronger_than_full_and_adds_low_resolution_and_side_light():
    full, wild = augment_preset("full"), augment_preset("wild")
    for name in ("scale_jitter", "shift_jitter", "brightness", "contrast", "blur_prob", "occlusion_prob"):
        assert getattr(wild, name) > getattr(full, name), name
    assert full.lowres_prob == full.shade_prob == 0 < wild.lowres_prob and wild.shade_prob > 0
    assert wild.cache_margin > full.cache_margin  # room for the wider warps


def test_turn_is_full_with_wild_geometry_and_the_yaw_warp():
    from dataclasses import asdict

    full, wild, turn = augment_preset("full"), augment_preset("wild"), augment_preset("turn")
    geometry = ("scale_jitter", "shift_jitter", "cache_margin")
    assert all(getattr(turn, k) == getattr(wild, k) for k in geometry)
    assert full.turn_prob == 0 < turn.turn_prob and 0 < turn.turn_max < 0.5  # h stays monotonic below 0.5
    same = {k: v for k, v in asdict(turn).items() if k not in geometry + ("turn_prob", "turn_max")}
    assert same == {k: v for k, v in asdict(full).items() if k in same}  # photometric: full's


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="heavy.*full, light, wild, turn, none"):
        augment_preset("heavy")


def test_preset_round_trips_through_config_json(tmp_path):
    cfg = RunConfig(augment=augment_preset("light"))
    cfg.save(str(tmp_path / "config.json"))
    assert RunConfig.load(str(tmp_path / "config.json")).augment == augment_preset("light")
    assert json.load(open(tmp_path / "config.json"))["augment"]["rotation_deg"] == 10.0


def test_cli_lists_presets_and_refuses_changing_them_on_resume(tmp_path):
    help_text = CliRunner().invoke(cli, ["train", "--help"]).output
    assert all(name in help_text for name in AUGMENT_PRESETS)
    run = tmp_path / "run"
    run.mkdir()
    RunConfig().save(str(run / "config.json"))
    res = CliRunner().invoke(cli, ["train", "--run", str(run), "--resume", "--augment", "light"])
    assert res.exit_code != 0 and "augment" in res.output


@pytest.mark.parametrize("flag,value,key", [("--loss", "wing", "loss"),
                                            ("--bn-momentum", "0.99", "bn_momentum")])
def test_resume_refuses_changing_loss_or_bn_momentum(tmp_path, flag, value, key):
    run = tmp_path / "run"
    run.mkdir()
    RunConfig().save(str(run / "config.json"))
    res = CliRunner().invoke(cli, ["train", "--run", str(run), "--resume", flag, value])
    assert res.exit_code != 0 and key in res.output


def test_augment_set_types_each_field_like_the_config():
    from keras_flm.commands.train_cmd import parse_augment_set

    got = parse_augment_set(["turn_prob=0.3", "flip=false", "lowres_min=0.5"], augment_preset("turn"))
    assert got == {"turn_prob": 0.3, "flip": False, "lowres_min": 0.5}
    assert isinstance(got["turn_prob"], float) and got["flip"] is False
    from keras_flm.config import AUGMENT_UNIT_FIELDS

    names = {f.name for f in dataclasses.fields(AugmentConfig)}
    assert set(AUGMENT_UNIT_FIELDS) <= names
    assert {n for n in names if n.endswith("_prob")} <= set(AUGMENT_UNIT_FIELDS)


@pytest.mark.parametrize("item,message", [("turn=0.3", "FIELD one of blur_prob"),
                                          ("turn_prob", "expected FIELD=VALUE"),
                                          ("turn_prob=abc", "turn_prob must be a float"),
                                          ("turn_prob=1.5", r"turn_prob must be in \[0, 1\]"),
                                          ("rotation_deg=-5", "rotation_deg must be >= 0"),
                                          ("occlusion_texture=1.5", r"occlusion_texture must be in \[0, 1\]"),
                                          ("cache_margin=0.8", "cache_margin must be >= 1"),
                                          ("zoom_min=0", r"zoom_min must be in \(0, 1\]"),
                                          ("blur_sigma=nan", "blur_sigma must be >= 0"),
                                          ("flip=maybe", "flip must be a bool")])
def test_augment_set_names_the_bad_item_and_writes_nothing(tmp_path, item, message):
    import re

    run = tmp_path / "run"
    args = ["train", "--run", str(run), "--data", str(tmp_path), "--augment-set", item]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and re.search(message, res.output) and item.split("=")[0] in res.output
    assert not run.exists()


def test_resume_refuses_augment_set(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    RunConfig().save(str(run / "config.json"))
    res = CliRunner().invoke(cli, ["train", "--run", str(run), "--resume", "--augment-set", "turn_prob=0.2"])
    assert res.exit_code != 0 and "augment_set" in res.output


def test_describe_augment_states_each_active_effect():
    from keras_flm.config import describe_augment

    full = describe_augment(augment_preset("full"))
    assert "rotation ±30°" in full and "occluders on 30 %" in full and "yaw warp" not in full
    assert "textured" not in full and "low resolution" not in full
    aug = dataclasses.replace(augment_preset("turn"), turn_prob=0.3, occlusion_texture=0.6)
    turned = describe_augment(aug)
    assert "yaw warp on 30 % (a ≤ 0.4)" in turned and "60 % of them textured" in turned
    assert "JPEG" not in turned and "JPEG on 25 % (quality 20-90)" in describe_augment(
        dataclasses.replace(aug, jpeg_prob=0.25))
    assert "scale ±15 %" in turned
    none = describe_augment(augment_preset("none"))
    assert "mirror" not in none and "blur" not in none and "occluders" not in none
