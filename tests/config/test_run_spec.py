"""The run spec and the checkpoint's run record: typed, one set of defaults, old checkpoints still read."""

from __future__ import annotations

import copy
import inspect

import pytest

from medseg.config import from_dict, to_dict
from medseg.config.plan import DEFAULT_BASE_CHANNELS, DEFAULT_MAX_CHANNELS, Configuration
from medseg.config.run_spec import RunSpec, TrainedRun
from medseg.errors import ConfigError

#: What a checkpoint written before the typed run spec stored under "config" (copied from a real
#: checkpoint_best.pt of the ACDC 2D CPU run, plan fingerprint and notes shortened).
EARLIER_CHECKPOINT = {
    "config": {
        "data": {
            "manifest": "/data/acdc_subset.csv",
            "cache": "/runs/cache/acdc_subset",
            "plan": None,
            "preprocessing": None,
            "configuration": "2d",
            "augmentation": "default",
            "patch_size": [160, 160],
            "batch_size": 16,
            "foreground_ratio": 0.3333333333333333,
            "class_balanced": False,
            "workers": 1,
            "preprocess_workers": 1,
            "folds": 5,
            "split_seed": 0,
            "group_pattern": None,
        },
        "model": {
            "base_channels": 16,
            "max_channels": 128,
            "norm": "instance",
            "deep_supervision": False,
            "deep_supervision_heads": 2,
            "residual": False,
            "dropout": 0.0,
        },
        "loss": {
            "name": "dice_ce",
            "include_background": False,
            "class_weights": [],
            "tversky_alpha": 0.3,
            "tversky_beta": 0.7,
            "focal_gamma": 2.0,
        },
        "optim": {
            "name": "sgd",
            "lr": 0.01,
            "momentum": 0.99,
            "nesterov": True,
            "weight_decay": 3e-05,
            "schedule": "poly",
            "poly_exponent": 0.9,
            "warmup_epochs": 0,
        },
        "train": {
            "epochs": 60,
            "iterations_per_epoch": 20,
            "amp": "auto",
            "compile": False,
            "grad_clip": 12.0,
            "val_every": 10,
            "ema_alpha": 0.9,
            "seed": 0,
        },
        "validation": {"overlap": 0.5, "max_cases": 0, "mirror_axes": []},
        "postprocess": {"largest_component": [1, 2, 3], "fill_holes": [], "min_component_ml": 0.0},
    },
    "plan": {
        "medseg_plan_version": 1,
        "dataset": {
            "name": "acdc_subset",
            "manifest": "/data/acdc_subset.csv",
            "n_cases": 20,
            "modality": "MRI",
            "labels": {"background": 0, "rv_cavity": 1, "lv_myocardium": 2, "lv_cavity": 3},
            "channel_names": {"0": "MRI"},
        },
        "preprocessing": {
            "orientation": "none",
            "target_spacing_mm": [1.5, 1.5, 10.0],
            "anisotropic": True,
            "anisotropy_threshold": 3.0,
            "separate_z_axis": 2,
            "image_interpolation": "linear",
            "label_interpolation": "nearest",
            "keep_all_classes": True,
            "crop": "auto",
            "crop_margin_voxels": 2,
            "ct": False,
            "normalization": [{"channel": 0, "channel_name": "MRI", "scheme": "zscore", "use_nonzero_mask": False}],
            "cache_dtype": "float32",
            "class_locations_per_class": 2000,
        },
        "configurations": {},
        "notes": ["orientation: ..."],
        "fingerprint": {"n_cases": 20},
    },
    "settings": {
        "patch_size": [160, 160],
        "strides": [[1, 1], [2, 2], [2, 2]],
        "kernel_sizes": [[3, 3], [3, 3], [3, 3]],
        "estimated_memory_gib": 1.32,
        "batch_size": 16,
        "slice_axis": 2,
        "in_plane_axes": [0, 1],
        "spacing_mm": [1.5, 1.5],
        "median_shape_voxels": [216, 256],
        "base_channels": 16,
        "max_channels": 128,
    },
    "in_channels": 1,
    "mirror_axes": [0, 1],
    "labels": {"1": "rv_cavity", "2": "lv_myocardium", "3": "lv_cavity"},
    "fold": 0,
}

#: Settings added to the run spec after that checkpoint was written: it reads back with their defaults, which
#: are the behaviour it was trained with.
ADDED_SINCE = {("loss", "batch_dice"): True}


def test_a_checkpoint_written_before_the_typed_run_spec_reads_back_typed():
    run = TrainedRun.from_checkpoint(copy.deepcopy(EARLIER_CHECKPOINT), source="old/checkpoint_best.pt")
    assert run.spec.data.configuration == "2d" and run.spec.validation.overlap == 0.5
    assert run.spec.postprocess.largest_component == (1, 2, 3)
    assert run.plan.preprocessing.orientation == "none" and run.plan.preprocessing.normalization[0].scheme == "zscore"
    assert run.network.slice_axis == 2 and run.network.base_channels == 16
    assert run.label_names == {1: "rv_cavity", 2: "lv_myocardium", 3: "lv_cavity"} and run.num_classes == 4
    expected = copy.deepcopy(EARLIER_CHECKPOINT)  # the plain form is the same, plus the later settings' defaults
    for (section, key), default in ADDED_SINCE.items():
        expected["config"][section][key] = default
    assert run.to_checkpoint() == expected


def test_a_foreign_or_broken_checkpoint_record_names_the_file():
    with pytest.raises(ConfigError, match="x.pt: not a checkpoint written by `medseg train`"):
        TrainedRun.from_checkpoint({"weights": 1}, source="x.pt")
    broken = copy.deepcopy(EARLIER_CHECKPOINT)
    broken["settings"]["batch_size"] = 0
    with pytest.raises(ConfigError, match=r"x.pt: network.batch_size must be an integer >= 1, got 0"):
        TrainedRun.from_checkpoint(broken, source="x.pt")


def test_defaults_live_in_one_place():
    from medseg.data.config import NetworkSettings
    from medseg.data.planning import estimate_unet_memory_gib
    from medseg.models.unet import build_unet

    configuration = Configuration(
        patch_size=[32, 32], strides=[[1, 1], [2, 2]], kernel_sizes=[[3, 3]] * 2, batch_size=2, spacing_mm=[1, 1]
    )
    assert (
        (configuration.base_channels, configuration.max_channels)
        == (DEFAULT_BASE_CHANNELS, DEFAULT_MAX_CHANNELS)
        == (32, 320)
    )
    assert (NetworkSettings().base_channels, NetworkSettings().max_channels) == (
        DEFAULT_BASE_CHANNELS,
        DEFAULT_MAX_CHANNELS,
    )
    for function in (build_unet, estimate_unet_memory_gib):
        parameters = inspect.signature(function).parameters
        assert (parameters["base_channels"].default, parameters["max_channels"].default) == (
            DEFAULT_BASE_CHANNELS,
            DEFAULT_MAX_CHANNELS,
        )


def test_the_run_spec_round_trips_through_its_plain_form():
    spec = TrainedRun.from_checkpoint(copy.deepcopy(EARLIER_CHECKPOINT), source="c.pt").spec
    assert from_dict(RunSpec, to_dict(spec)) == spec
