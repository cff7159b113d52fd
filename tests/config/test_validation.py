"""Config validation: unknown keys, wrong types and refused values name the file and the key."""

from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from medseg.config import Section, bounded, from_dict, load_yaml, optional, setting, span, to_dict
from medseg.config.run_spec import LossConfig, UNetConfig
from medseg.errors import ConfigError, InvalidArgumentError


@dataclass
class Sample:
    model: UNetConfig = field(default_factory=UNetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    mode: Literal["2d", "3d"] = "3d"
    patch_size: list[int] = field(default_factory=lambda: [64, 64, 32])
    lr: float = 0.01
    note: str | None = None
    dropout: float = bounded(0.0, 0, 1, "a fraction")
    window: tuple[float, float] = span((0.0, 1.0), 0, 10)


def test_valid_config_builds_nested_sections():
    config = from_dict(Sample, {"model": {"base_channels": 8}, "lr": 1, "mode": "2d"})
    assert config.model.base_channels == 8 and config.lr == 1.0 and isinstance(config.lr, float)
    assert config.loss.name == "dice_ce" and config.note is None


@pytest.mark.parametrize(
    "data, message",
    [
        ({"modle": {}}, r"unknown key\(s\) modle"),
        ({"windw": [0, 1]}, r"unknown key\(s\) windw \(did you mean 'window'\?\)"),
        ({"model": {"base_chanels": 8}}, r"unknown key\(s\) model.base_chanels"),
        ({"lr": "fast"}, "lr must be a number, got 'fast'"),
        ({"patch_size": [64, "x", 32]}, r"patch_size\[1\] must be an integer"),
        ({"mode": "4d"}, "mode must be one of '2d', '3d'; got '4d'"),
        ({"model": {"deep_supervision": "yes"}}, "model.deep_supervision must be true or false"),
        ({"model": {"norm": "group"}}, "model.norm must be one of 'instance', 'batch'; got 'group'"),
        ({"loss": {"name": "hinge"}}, "loss.name must be one of"),
        ({"model": [1, 2]}, "model must be a mapping"),
        ({"dropout": 1.5}, r"dropout must be a fraction in \[0, 1\], got 1.5"),
        ({"dropout": "none"}, r"dropout must be a fraction in \[0, 1\], got 'none'"),
        ({"window": [5, 2]}, r"window must be \[min, max\] with 0 <= min <= max <= 10, got \[5, 2\]"),
        ({"window": [1, 2, 3]}, r"window must be \[min, max\]"),
    ],
)
def test_errors_name_file_and_key(data, message):
    with pytest.raises(ConfigError, match=f"train.yaml: .*{message}"):
        from_dict(Sample, data, source="train.yaml")


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(tmp_path / "list.yaml")


def test_ranges_convert_and_the_plain_form_round_trips():
    config = from_dict(Sample, {"window": [1, 2], "dropout": 1})
    assert config.window == (1.0, 2.0) and config.dropout == 1.0
    plain = to_dict(config)
    assert plain["window"] == [1.0, 2.0] and from_dict(Sample, yaml.safe_load(yaml.safe_dump(plain))) == config


def _even(value: int) -> bool:
    if value % 2:
        raise ValueError(f"{value} is odd")
    return True


@dataclass
class Checked(Section):
    size: int = setting(2, "an even integer", _even)
    note: str | None = optional()
    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lo > self.hi:
            raise ValueError(f"lo ({self.lo}) is above hi ({self.hi})")


def test_sections_built_in_python_follow_the_same_rules():
    with pytest.raises(InvalidArgumentError, match=r"Checked: size must be an even integer, got 3 \(3 is odd\)"):
        Checked(size=3)
    with pytest.raises(InvalidArgumentError, match=r"UNetConfig: norm must be one of 'instance', 'batch'"):
        UNetConfig(norm="group")
    # a rule across fields gets the key path too
    with pytest.raises(ConfigError, match=r"run.yaml: outer.lo \(2.0\) is above hi"):
        from_dict(Outer, {"outer": {"lo": 2, "hi": 1}}, source="run.yaml")


@dataclass
class Outer:
    outer: Checked = field(default_factory=Checked)


def test_optional_keys_are_written_only_when_set():
    assert to_dict(Checked()) == {"size": 2, "lo": 0.0, "hi": 1.0}
    noted = Checked(note="x")
    assert to_dict(noted)["note"] == "x" and from_dict(Checked, to_dict(noted)) == noted
