"""YAML configs for augmentation and preprocessing: defaults, and errors that name the key."""

from __future__ import annotations

import pytest
from conftest import PROJECT_ROOT

from medseg.config import to_dict
from medseg.config.plan import load_plan
from medseg.data.config import (
    AugmentationConfig,
    IntensityAugmentation,
    PreprocessingConfig,
    Rotation,
    load_augmentation_config,
    load_preprocessing_config,
)
from medseg.errors import ConfigError

CONFIGS = PROJECT_ROOT / "configs"


def test_shipped_yaml_files_spell_out_the_defaults():
    assert load_augmentation_config(CONFIGS / "augmentation_default.yaml") == AugmentationConfig()
    assert load_preprocessing_config(CONFIGS / "preprocessing_default.yaml") == PreprocessingConfig()
    assert load_augmentation_config(None) == AugmentationConfig()
    elastic = load_augmentation_config(CONFIGS / "augmentation_elastic.yaml")
    assert elastic.spatial.elastic.p == 0.2 and elastic.spatial.rotation == Rotation()
    none = load_augmentation_config(CONFIGS / "augmentation_none.yaml")
    assert all(v["p"] == 0.0 for v in to_dict(none.intensity).values())
    assert load_preprocessing_config(CONFIGS / "preprocessing_ct_lung_window.yaml").ct_clip == (-1000.0, 400.0)
    assert load_augmentation_config(CONFIGS / "augmentation_lateralised.yaml").spatial.flip.axes == (1, 2)


def test_partial_config_is_merged_with_defaults_and_wrapped_sections_unwrap():
    config = load_augmentation_config({"augmentation": {"spatial": {"rotation": {"p": 0.5}}}})
    assert config.spatial.rotation == Rotation(p=0.5, degrees=(-30.0, 30.0))
    assert config.intensity == IntensityAugmentation()
    assert (
        load_preprocessing_config({"orientation": "lps", "network": {"patch_size_2d": [64, 48]}}).orientation == "LPS"
    )
    # the plain form round-trips (what `medseg plan` edits before planning)
    plain = to_dict(PreprocessingConfig())
    assert plain["network"]["patch_size_3d"] is None and load_preprocessing_config(plain) == PreprocessingConfig()


@pytest.mark.parametrize(
    "config, key, reason",
    [
        ({"spatial": {"rotaton": {"p": 0.1}}}, "spatial.rotaton", "did you mean 'rotation'"),
        ({"intensity": {"gamma": {"p": 1.5}}}, "intensity.gamma.p", "probability in [0, 1]"),
        ({"intensity": {"gamma": {"p": "often"}}}, "intensity.gamma.p", "probability"),
        ({"spatial": {"scale": {"range": [1.4, 0.7]}}}, "spatial.scale.range", "min <= max"),
        ({"spatial": {"scale": {"range": [0.7]}}}, "spatial.scale.range", "[min, max]"),
        ({"spatial": {"flip": {"axes": [0, 3]}}}, "spatial.flip.axes", "spatial axes"),
        ({"spatial": {"rotation": 30}}, "spatial.rotation", "must be a mapping"),
        ({"intensity": {"gamma": {"retain_stats": "yes"}}}, "intensity.gamma.retain_stats", "true or false"),
    ],
)
def test_augmentation_errors_name_the_key(config, key, reason):
    with pytest.raises(ConfigError) as info:
        load_augmentation_config(config)
    assert key in str(info.value) and reason in str(info.value)


@pytest.mark.parametrize(
    "config, key",
    [
        ({"target_spacing_mm": [1.0, 1.0]}, "target_spacing_mm"),
        ({"target_spacing_mm": [1.0, 0.0, 1.0]}, "target_spacing_mm"),
        ({"target_spacing_mm": "median"}, "target_spacing_mm"),
        ({"orientation": "RAR"}, "orientation"),
        ({"ct_clip": [400, -1000]}, "ct_clip"),
        ({"network": {"gpu_memory": 8}}, "network.gpu_memory"),
        ({"network": {"patch_size_3d": [64, 64]}}, "network.patch_size_3d"),
        ({"cache_dtype": "float64"}, "cache_dtype"),
        ({"network": {"gpu_memory_gib": 0.01}}, "network.gpu_memory_gib"),
    ],
)
def test_preprocessing_errors_name_the_key(config, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_preprocessing_config(config)


def test_yaml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "aug.yaml"
    bad.write_text("spatial:\n  flip: {p: 2}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"aug\.yaml: spatial\.flip\.p"):
        load_augmentation_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("spatial: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_augmentation_config(broken)
    with pytest.raises(ConfigError, match="not found"):
        load_preprocessing_config(tmp_path / "missing.yaml")


def test_plan_validation_names_the_missing_key(tmp_path):
    with pytest.raises(ConfigError, match="plan file not found"):
        load_plan(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match=r"missing required key\(s\) preprocessing.target_spacing_mm"):
        load_plan(
            {
                "preprocessing": {
                    "orientation": "RAS",
                    "normalization": [],
                    "crop": "auto",
                    "image_interpolation": "linear",
                    "label_interpolation": "nearest",
                }
            }
        )
    plan = {
        "preprocessing": {
            "orientation": "RAS",
            "target_spacing_mm": [1, 1, 1],
            "crop": "auto",
            "image_interpolation": "linear",
            "label_interpolation": "nearest",
            "normalization": [{"scheme": "ct", "clip": [-1000, 400]}],
        }
    }
    with pytest.raises(ConfigError, match=r"normalization\[0\]\.mean"):
        load_plan(plan)


def test_a_config_built_in_python_is_validated_too():
    from medseg.data.config import PreprocessingConfig
    from medseg.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="crop must be one of"):
        PreprocessingConfig(crop="bogus")
