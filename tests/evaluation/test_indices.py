"""Clinical indices (medseg.evaluation.indices), ``medseg evaluate --indices`` and ``medseg quantify``.

Real-data checks recompute the indices by hand with nibabel and NumPy (no medseg reader): ACDC volumes, EF and
myocardial mass, and an NSCLC lung volume, mean HU, %LAA-950 and PD15.
"""

from __future__ import annotations

import csv
import math

import nibabel as nib
import numpy as np
import pytest
from conftest import shared_path

from medseg.cli.main import main
from medseg.common.cardiac_phases import cardiac_phase
from medseg.errors import ConfigError, InvalidArgumentError
from medseg.evaluation.indices import (
    DEFAULT_ROLES,
    INDEX_UNITS,
    cardiac_indices,
    lung_density,
    parse_roles,
    quantify,
    subject_indices,
)
from medseg.evaluation.statistics import paired_statistics

CARDIAC = parse_roles("cardiac")
AFFINE = np.diag([1.5, 1.5, 10.0, 1.0])  # 0.0225 ml per voxel


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _by_index(rows, subject):
    return {r["index"]: r for r in rows if r["subject"] == subject}


def _save(array, path, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


def _heart(lv: int, rv: int, myo: int, shape=(40, 40, 8)) -> np.ndarray:
    """A label map with exactly ``lv`` / ``rv`` / ``myo`` voxels of labels 3 / 1 / 2."""
    flat = np.zeros(int(np.prod(shape)), dtype=np.uint8)
    flat[:rv] = 1
    flat[rv : rv + myo] = 2
    flat[rv + myo : rv + myo + lv] = 3
    return flat.reshape(shape)


# -- roles and pairing ------------------------------------------------------------------------


def test_parse_roles_defaults_overrides_and_errors():
    assert CARDIAC.roles == {"rv": 1, "myo": 2, "lv": 3}
    assert parse_roles("cardiac", "lv=1,rv=3").roles == {"rv": 3, "myo": 2, "lv": 1}
    assert parse_roles("lung", "lung_right=1,lung_left=2,tumour=3").roles == {
        "lung_left": 2,
        "lung_right": 1,
        "tumour": 3,
    }
    with pytest.raises(InvalidArgumentError, match="unknown role.*known: rv, myo, lv"):
        parse_roles("cardiac", "la=4")
    with pytest.raises(InvalidArgumentError, match="lung_left and lung_right = 1"):
        parse_roles("lung", "lung_right=1")
    with pytest.raises(InvalidArgumentError, match="whole value"):
        parse_roles("cardiac", "lv=x")
    with pytest.raises(InvalidArgumentError, match="unknown kind"):
        parse_roles("liver")


def test_default_lung_roles_are_medsegs_lung_convention():
    from medseg.classical.lung_ct import LEFT_LUNG, RIGHT_LUNG
    from medseg.phantoms.ct_thorax import CT_THORAX_LABELS

    assert DEFAULT_ROLES["lung"] == {"lung_left": LEFT_LUNG, "lung_right": RIGHT_LUNG}
    assert DEFAULT_ROLES["lung"] == {
        "lung_left": CT_THORAX_LABELS["left_lung"],
        "lung_right": CT_THORAX_LABELS["right_lung"],
    }


def test_cardiac_phase_from_names_and_info_cfg(tmp_path):
    assert cardiac_phase("patient001_ED") == ("patient001", "ED", "")
    assert cardiac_phase("case-7_es") == ("case-7", "ES", "")
    assert cardiac_phase("scan12") == ("scan12", None, "phase_unknown")
    assert cardiac_phase("patient101_frame14", [tmp_path]) == ("patient101", None, "no_info_cfg")
    (tmp_path / "Info.cfg").write_text(
        "ED: 1\nES: 14\nGroup: NOR\nHeight: 180.0\nNbFrame: 30\nWeight: 80.0\n", encoding="utf-8"
    )
    assert cardiac_phase("patient101_frame01", [tmp_path]) == ("patient101", "ED", "")
    assert cardiac_phase("patient101_frame14", [tmp_path / "elsewhere", tmp_path]) == ("patient101", "ES", "")
    assert cardiac_phase("patient101_frame07", [tmp_path]) == ("patient101", None, "not_ed_or_es")


# -- definitions and flags --------------------------------------------------------------------


def test_cardiac_indices_definitions_and_flags():
    rows = {
        r["index"]: r
        for r in cardiac_indices("s", {"lv": 150.0, "rv": 160.0, "myo": 100.0}, {"lv": 60.0, "rv": 80.0, "myo": 110.0})
    }
    assert set(rows) == {n for n in INDEX_UNITS if n[:3] in ("lv_", "rv_", "myo")}
    assert rows["lv_sv"]["value"] == 90.0 and rows["lv_ef"]["value"] == 60.0 and rows["rv_ef"]["value"] == 50.0
    assert rows["myo_mass"]["value"] == pytest.approx(105.0) and rows["myo_mass"]["unit"] == "g"
    assert not any(r["flag"] for r in rows.values())

    only_ed = {r["index"]: r for r in cardiac_indices("s", {"lv": 0.0, "rv": 160.0, "myo": 100.0}, None)}
    assert only_ed["lv_edv"]["value"] == 0 and only_ed["lv_edv"]["flag"] == "lv_absent_ed"
    assert math.isnan(only_ed["lv_ef"]["value"]) and only_ed["lv_ef"]["flag"] == "lv_absent_ed;missing_es"
    assert only_ed["rv_edv"]["value"] == 160 and not only_ed["rv_edv"]["flag"]
    assert math.isnan(only_ed["rv_esv"]["value"]) and only_ed["rv_esv"]["flag"] == "missing_es"
    assert only_ed["myo_mass"]["value"] == pytest.approx(105.0)
    only_es = {r["index"]: r for r in cardiac_indices("s", None, {"lv": 60.0, "rv": 80.0, "myo": 110.0})}
    assert only_es["myo_mass"]["flag"] == "missing_ed" and math.isnan(only_es["myo_mass"]["value"])
    for rows_ in (only_ed, only_es):  # never a silent NaN
        assert all(r["flag"] for r in rows_.values() if math.isnan(r["value"]))


def test_subject_indices_pair_frames_and_flag_the_rest():
    measures = {
        "p1_ED": {"lv": 100.0, "rv": 90.0, "myo": 80.0}, "p1_ES": {"lv": 40.0, "rv": 45.0, "myo": 85.0},
        "p2_ED": {"lv": 120.0, "rv": 100.0, "myo": 90.0}, "p3_ES": None, "oddname": {"lv": 1.0, "rv": 1.0, "myo": 1.0},
    }  # fmt: skip
    measures["p1"] = measures["oddname"]  # a name without a phase beside the frames of a subject of that name
    rows = subject_indices(CARDIAC, measures, {})
    assert [r["subject"] for r in rows[::9]] == ["oddname", "p1", "p1", "p2", "p3"]
    paired_p1, unknown_p1 = {r["index"]: r for r in rows[9:18]}, rows[18:27]
    assert paired_p1["lv_ef"]["value"] == 60.0 and not paired_p1["lv_ef"]["flag"]
    assert all(r["flag"] == "phase_unknown" for r in unknown_p1)
    assert _by_index(rows, "p2")["lv_esv"]["flag"] == "missing_es"
    # p3's only frame failed to read: both frames count as missing
    assert (
        _by_index(rows, "p3")["lv_edv"]["flag"] == "missing_ed"
        and _by_index(rows, "p3")["lv_esv"]["flag"] == "missing_es"
    )
    assert all(r["flag"] == "phase_unknown" and math.isnan(r["value"]) for r in rows if r["subject"] == "oddname")
    with pytest.raises(ConfigError, match="two ED frames"):
        subject_indices(CARDIAC, {"p1_ED": measures["p1_ED"], "p1_ed": measures["p1_ED"]}, {})


def test_lung_density_by_hand_and_empty():
    image = np.array([-1000.0, -960, -950, -900, -800, -700, 40, -500])
    mask = np.array([1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    values = image[mask]
    found = lung_density(values)
    assert found["mean_hu"] == pytest.approx(values.mean())
    assert found["laa950"] == pytest.approx(100 * 2 / 6)  # -950 itself is not below -950
    assert found["pd15"] == pytest.approx(-1000 + 0.75 * 40)  # rank 0.15 * 5 = 0.75 between -1000 and -960
    assert all(math.isnan(v) for v in lung_density(np.zeros(0)).values())


def test_paired_statistics_against_numpy_and_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    a = rng.normal(100, 20, 15)
    b = a * 1.1 + rng.normal(0, 3, 15)
    s = paired_statistics(np.append(a, np.nan), np.append(b, 5.0))  # the NaN pair is dropped
    d = b - a
    assert s["n"] == 15 and s["mean_diff"] == pytest.approx(d.mean()) and s["std_diff"] == pytest.approx(d.std(ddof=1))
    assert s["loa_upper"] == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
    assert s["pearson_r"] == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert s["ttest_p"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    single = paired_statistics(np.array([1.0]), np.array([2.0]))
    assert single["mean_diff"] == 1 and math.isnan(single["std_diff"]) and math.isnan(single["pearson_r"])


# -- quantify and evaluate on synthetic files -------------------------------------------------


def test_quantify_acdc_layout_with_info_cfg_and_cli(tmp_path, capsys):
    patient = tmp_path / "seg" / "patient101"
    _save(_heart(lv=4000, rv=3000, myo=2000), patient / "patient101_frame01_gt.nii.gz")
    _save(_heart(lv=1000, rv=1500, myo=2200), patient / "patient101_frame14_gt.nii.gz")
    _save(np.zeros((40, 40, 8)), patient / "patient101_frame01.nii.gz")  # the image beside: not a label map
    (patient / "Info.cfg").write_text("ED: 1\nES: 14\n", encoding="utf-8")
    code = main(
        ["quantify", "--seg", str(tmp_path / "seg"), "--indices", "cardiac", "--out", str(tmp_path / "q"), "--quiet"]
    )
    assert code == 0
    rows = _by_index(_read_csv(tmp_path / "q" / "indices.csv"), "patient101")
    assert float(rows["lv_edv"]["value"]) == pytest.approx(4000 * 0.0225)
    assert float(rows["lv_ef"]["value"]) == pytest.approx(75.0)
    assert float(rows["rv_ef"]["value"]) == pytest.approx(50.0)
    assert float(rows["myo_mass"]["value"]) == pytest.approx(2000 * 0.0225 * 1.05)
    assert "lv_ef" in capsys.readouterr().out
    # again into the same folder: refused without --overwrite
    assert main(["quantify", "--seg", str(tmp_path / "seg"), "--indices", "cardiac", "--out", str(tmp_path / "q")]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_lung_indices_need_images(tmp_path, capsys):
    _save(np.ones((4, 4, 4), dtype=np.uint8), tmp_path / "seg" / "c1.nii.gz")
    with pytest.raises(ConfigError, match=r"need each case's CT image.*c1.*--images"):
        quantify(parse_roles("lung"), {"c1": tmp_path / "seg" / "c1.nii.gz"})
    code = main(
        [
            "evaluate",
            "--pred",
            str(tmp_path / "seg"),
            "--ref",
            str(tmp_path / "seg"),
            "--out",
            str(tmp_path / "e"),
            "--indices",
            "lung",
            "--quiet",
            "--no-progress",
        ]
    )
    assert code == 1 and "--images" in capsys.readouterr().err


def test_evaluate_lung_indices_with_images_folder(tmp_path):
    labels = np.zeros((10, 10, 5), dtype=np.uint8)
    labels[:4] = 1  # left lung: 200 voxels
    labels[6:] = 2  # right lung: 200 voxels
    image = np.full(labels.shape, -800.0)
    image[:2] = -980.0  # half of the left lung below -950
    prediction = labels.copy()
    prediction[6] = 0  # 50 fewer right-lung voxels
    affine = np.diag([2.0, 2.0, 2.5, 1.0])  # 0.01 ml per voxel
    _save(labels, tmp_path / "ref" / "c1.nii.gz", affine)
    _save(prediction, tmp_path / "pred" / "c1.nii.gz", affine)
    _save(image.astype(np.int16), tmp_path / "img" / "c1_0000.nii.gz", affine)
    code = main(
        [
            "evaluate",
            "--pred",
            str(tmp_path / "pred"),
            "--ref",
            str(tmp_path / "ref"),
            "--images",
            str(tmp_path / "img"),
            "--out",
            str(tmp_path / "e"),
            "--indices",
            "lung",
            "--quiet",
            "--no-progress",
            "--no-report",
        ]
    )
    assert code == 0
    rows = _by_index(_read_csv(tmp_path / "e" / "indices.csv"), "c1")
    assert float(rows["lung_right_volume"]["reference"]) == pytest.approx(2.0)
    assert float(rows["lung_right_volume"]["difference"]) == pytest.approx(-0.5)
    assert float(rows["lung_right_left_ratio"]["prediction"]) == pytest.approx(0.75)
    assert float(rows["lung_left_laa950"]["reference"]) == pytest.approx(50.0)
    assert float(rows["lung_total_laa950"]["prediction"]) == pytest.approx(100 * 100 / 350)
    assert float(rows["lung_total_mean_hu"]["reference"]) == pytest.approx((100 * -980 + 300 * -800) / 400)
    agreement = {r["index"]: r for r in _read_csv(tmp_path / "e" / "indices_agreement.csv")}
    assert agreement["lung_right_volume"]["n"] == "1" and float(
        agreement["lung_right_volume"]["bias"]
    ) == pytest.approx(-0.5)


# -- real data ---------------------------------------------------------------------------------


def _hand_volumes_ml(path) -> dict[int, float]:
    image = nib.load(str(path))
    labels = np.asarray(image.dataobj).astype(np.int64)
    voxel_ml = abs(np.linalg.det(image.affine[:3, :3])) / 1000
    return {value: float(np.count_nonzero(labels == value)) * voxel_ml for value in (1, 2, 3)}


def test_acdc_evaluate_indices_against_hand_computation(tmp_path):
    """Reference = the ACDC maps; prediction = the maps with the LV cavity cut by its last slice in the ES frames
    and one ES frame missing. Every reference index is recomputed by hand with nibabel."""
    acdc = shared_path("acdc_subset")
    references = sorted(acdc.glob("patient00*/*_gt.nii.gz"))  # patients 001, 002, 008
    assert len(references) == 6
    pred_dir = tmp_path / "pred"
    for path in references:
        if path.name == "patient008_ES_gt.nii.gz":
            continue
        image = nib.load(str(path))
        labels = np.asarray(image.dataobj).astype(np.uint8)
        if "_ES" in path.name:
            last = np.flatnonzero((labels == 3).any(axis=(0, 1)))[-1]
            labels[:, :, last][labels[:, :, last] == 3] = 0
        _save(labels, pred_dir / path.name.replace("_gt", ""), image.affine)
    code = main(["evaluate", "--pred", str(pred_dir), "--ref", str(acdc), "--ref-pattern", "patient00*", "--out",
                 str(tmp_path / "e"), "--indices", "cardiac", "--quiet", "--no-progress"])  # fmt: skip
    assert code == 1  # patient008_ES has no prediction: a failed case, the rest still evaluated
    rows = _read_csv(tmp_path / "e" / "indices.csv")
    assert list(rows[0]) == ["subject", "index", "unit", "reference", "prediction", "difference", "flag"]
    for patient in ("patient001", "patient002", "patient008"):
        ed = _hand_volumes_ml(acdc / patient / f"{patient}_ED_gt.nii.gz")
        es = _hand_volumes_ml(acdc / patient / f"{patient}_ES_gt.nii.gz")
        found = {k: float(r["reference"]) for k, r in _by_index(rows, patient).items()}
        assert found["lv_edv"] == pytest.approx(ed[3], rel=1e-12)
        assert found["rv_esv"] == pytest.approx(es[1], rel=1e-12)
        assert found["lv_sv"] == pytest.approx(ed[3] - es[3], rel=1e-12)
        assert found["lv_ef"] == pytest.approx(100 * (ed[3] - es[3]) / ed[3], rel=1e-12)
        assert found["rv_ef"] == pytest.approx(100 * (ed[1] - es[1]) / ed[1], rel=1e-12)
        assert found["myo_mass"] == pytest.approx(1.05 * ed[2], rel=1e-12)
    p008 = _by_index(rows, "patient008")
    assert p008["lv_esv"]["flag"] == "prediction:missing_es" and p008["lv_esv"]["prediction"] == "nan"
    assert p008["lv_edv"]["flag"] == "" and float(p008["lv_edv"]["difference"]) == 0
    differences = [float(r["difference"]) for r in rows if r["index"] == "lv_esv" and r["subject"] != "patient008"]
    assert all(d < 0 for d in differences)
    agreement = {r["index"]: r for r in _read_csv(tmp_path / "e" / "indices_agreement.csv")}
    assert agreement["lv_esv"]["n"] == "2" and agreement["lv_edv"]["n"] == "3"
    assert float(agreement["lv_esv"]["bias"]) == pytest.approx(np.mean(differences))
    assert float(agreement["lv_ef"]["bias"]) > 0 and agreement["lv_esv"]["n_flagged"] == "1"
    report = (tmp_path / "e" / "report.md").read_text(encoding="utf-8")
    assert "## Clinical indices (cardiac)" in report and (tmp_path / "e" / "figures" / "indices.png").is_file()


def test_nsclc_lung_volume_and_emphysema_index_by_hand(tmp_path):
    case = shared_path("nsclc_lung_ct/LUNG1-001")
    rows = quantify(parse_roles("lung", "lung_right=1,lung_left=2,tumour=3"), {"LUNG1-001": case / "labels.nii.gz"},
                    {"LUNG1-001": case / "ct.nii.gz"}, tmp_path / "q")  # fmt: skip
    found = _by_index(rows, "LUNG1-001")
    labels_image = nib.load(str(case / "labels.nii.gz"))
    labels = np.asarray(labels_image.dataobj)
    ct = np.asarray(nib.load(str(case / "ct.nii.gz")).dataobj, dtype=np.float64)
    voxel_ml = abs(np.linalg.det(labels_image.affine[:3, :3])) / 1000
    right, left = labels == 1, labels == 2
    assert found["lung_right_volume"]["value"] == pytest.approx(right.sum() * voxel_ml, rel=1e-12)
    assert found["lung_right_left_ratio"]["value"] == pytest.approx(right.sum() / left.sum(), rel=1e-12)
    assert found["tumour_volume"]["value"] == pytest.approx((labels == 3).sum() * voxel_ml, rel=1e-12)
    both = ct[right | left]
    assert found["lung_total_laa950"]["value"] == pytest.approx(100 * np.mean(both < -950), rel=1e-12)
    assert found["lung_left_laa950"]["value"] == pytest.approx(100 * np.mean(ct[left] < -950), rel=1e-12)
    assert found["lung_total_mean_hu"]["value"] == pytest.approx(both.mean(), rel=1e-9)
    assert found["lung_right_pd15"]["value"] == pytest.approx(np.percentile(ct[right], 15))
    assert 1000 < found["lung_total_volume"]["value"] < 8000 and -900 < found["lung_total_mean_hu"]["value"] < -600
    assert (tmp_path / "q" / "indices.csv").is_file()
