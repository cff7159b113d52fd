"""Dataset manifests: which cases exist, where their images and labels are, what labels mean.

Three formats are read by :func:`load_manifest`; paths inside are relative to the manifest's
folder.

* **MSD / nnU-Net** ``dataset.json``: label names (``{"background": 0, "liver": 1}`` as in
  nnU-Net v2, or ``{"0": "background", "1": "liver"}`` as in MSD), ``channel_names`` (or
  MSD ``modality``), ``file_ending`` and either a ``training`` list of
  ``{"image": ..., "label": ...}`` or, if absent, the files ``imagesTr/<case>_0000<ending>``
  (further channels ``_0001``, ...) with ``labelsTr/<case><ending>``. A ``training`` entry's case id
  is its (first) image's case key (:func:`medseg.common.naming.case_key`: ``la_003_0000.nii.gz`` and
  ``la_003.nii.gz`` are both case ``la_003``), the rule every command pairs files by.
* **CSV** with a header ``case_id,image,label`` (``image``: one file, or one per channel
  separated by ``;``) and optional ``split`` (train/val/test),
  ``fold`` (integer), ``group`` (e.g. a patient id: cases of one group always land in the
  same fold) and ``unannotated`` (label names, separated by ``;``, that this case's label map does
  not mark although the structure may be in the image: partial annotations, e.g. a radiotherapy
  plan that contoured no heart; training does not penalise predicting them there and evaluation
  does not score them). Leading ``# key: value`` lines give ``name``, ``modality`` and ``labels``
  (``# labels: background=0, rv_cavity=1, ...``).
* **Phantom** YAML (``phantom: {kind, n, seed}`` plus ``root``): medseg's synthetic data;
  the dataset is generated into ``root`` on first use (same seed, same bytes) and then read
  as its ``dataset.json``.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from numbers import Integral
from pathlib import Path

import numpy as np

from medseg.common.labels import label_names_from_mapping
from medseg.common.naming import case_key
from medseg.common.progress import progress_bar
from medseg.errors import ConfigError, MedsegError
from medseg.io import atomic_write_text

log = logging.getLogger(__name__)

_CSV_COLUMNS = ("case_id", "image", "label", "split", "fold", "group", "unannotated")


@dataclass(frozen=True)
class CaseEntry:
    """One case of a dataset: its id, image file(s) (one per channel) and optional label map.

    ``unannotated``: label values (never 0) that the label map leaves unmarked although the
    structure may be in the image (partial annotations); empty when every label is annotated.
    """

    case_id: str
    images: tuple[Path, ...]
    label: Path | None = None
    split: str | None = None
    fold: int | None = None
    group: str | None = None
    unannotated: tuple[int, ...] = ()

    @property
    def image(self) -> Path:
        """The first (often only) channel's image file."""
        return self.images[0]


@dataclass
class Manifest:
    """A dataset: cases plus label names and channel names.

    ``labels`` maps label name to value and includes ``background: 0``.
    """

    path: Path
    name: str
    labels: dict[str, int]
    channel_names: dict[int, str]
    cases: list[CaseEntry] = field(default_factory=list)
    #: False for a CSV without a ``# labels:`` line: label values are then taken from the data
    labels_declared: bool = True

    @property
    def modality(self) -> str:
        """Modality of the first channel (e.g. ``"CT"``, ``"MRI"``), upper case; ``""`` if unknown."""
        return self.channel_names.get(0, "").upper()

    @property
    def label_values(self) -> list[int]:
        return sorted(set(self.labels.values()))

    @property
    def label_names(self) -> dict[int, str]:
        """Label value -> name."""
        return {value: name for name, value in self.labels.items()}

    @property
    def unannotated(self) -> dict[str, tuple[int, ...]]:
        """Case id -> label values its label map leaves unannotated, for the cases that have any."""
        return {entry.case_id: entry.unannotated for entry in self.cases if entry.unannotated}

    def marked_unannotated(self, case_id: str, present: Iterable[int]) -> list[int]:
        """The label values among ``present`` (found in ``case_id``'s label map) that its row calls
        unannotated: a contradiction ``medseg validate`` and ``medseg train`` refuse. Sorted; empty if none.
        ``KeyError`` naming the manifest if it has no such case."""
        return sorted(set(int(v) for v in present) & set(self.case(case_id).unannotated))

    def case(self, case_id: str) -> CaseEntry:
        for entry in self.cases:
            if entry.case_id == case_id:
                return entry
        raise KeyError(f"{self.path}: no case {case_id!r}")

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[CaseEntry]:
        return iter(self.cases)


def load_manifest(path: str | Path) -> Manifest:
    """Read a manifest (``dataset.json``, ``.csv`` or phantom ``.yaml``); see the module docstring.

    A folder is taken to mean its ``dataset.json``. Raises :class:`ConfigError` naming the
    file and the problem for a malformed manifest; files it lists are not opened here (use
    :func:`validate_manifest` for that).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "dataset.json"
    if not path.is_file():
        raise ConfigError(f"{path}: manifest not found")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _load_dataset_json(path)
    if suffix == ".csv":
        return _load_csv(path)
    if suffix in (".yaml", ".yml"):
        return _load_phantom_yaml(path)
    raise ConfigError(f"{path}: unknown manifest type; use dataset.json, a .csv or a phantom .yaml")


def _parse_labels(raw: object, source: Path) -> dict[str, int]:
    """Name -> value from a ``labels`` mapping (either layout, :func:`medseg.common.labels.label_names_from_mapping`),
    with ``background: 0`` added when no label has value 0."""
    labels = {name: value for value, name in label_names_from_mapping(raw, source).items()}
    return labels if 0 in labels.values() else {"background": 0, **labels}


def _load_dataset_json(path: Path) -> Manifest:
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    root = path.parent
    labels = _parse_labels(spec.get("labels"), path)
    channels_raw = spec.get("channel_names", spec.get("modality", {"0": ""}))
    channel_names = {int(k): str(v) for k, v in channels_raw.items()}
    ending = spec.get("file_ending", ".nii.gz")
    cases: list[CaseEntry] = []
    if spec.get("training"):
        for item in spec["training"]:
            if not isinstance(item, dict) or "image" not in item:
                raise ConfigError(f"{path}: each 'training' entry needs an 'image' (got {item!r})")
            images = item["image"] if isinstance(item["image"], list) else [item["image"]]
            image_paths = tuple((root / p).resolve() for p in images)
            label = (root / item["label"]).resolve() if item.get("label") else None
            case_id = case_key(_strip_ending(Path(images[0]).name, ending))
            cases.append(CaseEntry(case_id, image_paths, label))
    else:
        images_dir = root / "imagesTr"
        if not images_dir.is_dir():
            raise ConfigError(f"{path}: no 'training' list and no imagesTr/ folder beside it")
        n_channels = max(len(channel_names), 1)
        labels_dir = root / "labelsTr"
        for first in sorted(images_dir.glob(f"*_0000{ending}")):
            case_id = _strip_ending(first.name, ending)[: -len("_0000")]
            images = tuple(images_dir / f"{case_id}_{c:04d}{ending}" for c in range(n_channels))
            label = labels_dir / f"{case_id}{ending}" if labels_dir.is_dir() else None
            cases.append(CaseEntry(case_id, images, label))
    expected = spec.get("numTraining")
    if expected is not None and int(expected) != len(cases):
        raise ConfigError(f"{path}: numTraining is {expected} but {len(cases)} training cases were found")
    _check_unique(cases, path)
    return Manifest(path, str(spec.get("name", root.name)), labels, channel_names, cases)


def _load_csv(path: Path) -> Manifest:
    meta: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    body, body_line_numbers = [], []
    for number, line in enumerate(lines, 1):
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep:
                meta[key.strip().lower()] = value.strip()
        elif line.strip():
            body.append(line)
            body_line_numbers.append(number)
    reader = csv.DictReader(body)
    columns = reader.fieldnames or []
    missing = [c for c in ("case_id", "image") if c not in columns]
    if missing:
        raise ConfigError(
            f"{path}: CSV needs columns case_id,image[,{','.join(_CSV_COLUMNS[2:])}]; missing {', '.join(missing)}"
        )
    unknown = [c for c in columns if c not in _CSV_COLUMNS]
    if unknown:
        raise ConfigError(f"{path}: unknown CSV column(s) {', '.join(unknown)}; allowed: {', '.join(_CSV_COLUMNS)}")
    root = path.parent
    cases: list[CaseEntry] = []
    unannotated_names: dict[str, tuple[str, list[str]]] = {}  # case id -> (where, names)
    for row in reader:
        line_number = body_line_numbers[reader.line_num - 1]
        case_id = (row["case_id"] or "").strip()
        if not case_id or not row["image"]:
            raise ConfigError(f"{path}: line {line_number} lacks case_id or image")
        where = f"{path}: line {line_number} (case {case_id!r})"
        if None in row:  # csv.DictReader keeps cells beyond the header under the key None
            raise ConfigError(
                f"{where}: {len(columns) + len(row[None])} cells but the header has {len(columns)} columns "
                f"({','.join(columns)})"
            )
        images = tuple((root / image.strip()).resolve() for image in row["image"].split(";") if image.strip())
        if not images:
            raise ConfigError(f"{where}: image cell {row['image']!r} names no file")
        if cases and len(images) != len(cases[0].images):
            raise ConfigError(
                f"{where}: {len(images)} image channel(s), but case {cases[0].case_id!r} has "
                f"{len(cases[0].images)}; every case needs the same channels"
            )
        fold = row.get("fold") or None
        if fold is not None and not re.fullmatch(r"[0-9]+", fold.strip()):
            raise ConfigError(f"{where}: fold must be a non-negative integer, got {fold!r}")
        split = (row.get("split") or "").strip() or None
        if split not in (None, "train", "val", "test"):
            raise ConfigError(f"{where}: split must be train, val or test, got {split!r}")
        label = (row.get("label") or "").strip()
        group = (row.get("group") or "").strip()
        names = [n.strip() for n in (row.get("unannotated") or "").split(";") if n.strip()]
        if names:
            unannotated_names[case_id] = (where, names)
        cases.append(
            CaseEntry(
                case_id,
                images,
                (root / label).resolve() if label else None,
                split,
                int(fold) if fold is not None else None,
                group or None,
            )
        )
    labels = {"background": 0}
    if "labels" in meta:
        pairs = {}
        for item in meta["labels"].split(","):
            name, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"{path}: '# labels:' entries must be name=value, got {item.strip()!r}")
            pairs[name.strip()] = value.strip()
        labels = _parse_labels(pairs, path)
    cases = [
        replace(case, unannotated=_unannotated_values(*unannotated_names[case.case_id], labels))
        if case.case_id in unannotated_names
        else case
        for case in cases
    ]
    _check_unique(cases, path)
    channel = {0: meta["modality"]} if "modality" in meta else {0: ""}
    return Manifest(path, meta.get("name", path.stem), labels, channel, cases, labels_declared="labels" in meta)


def _unannotated_values(where: str, names: list[str], labels: Mapping[str, int]) -> tuple[int, ...]:
    """The label values of the ``unannotated`` cell's ``names``; ConfigError naming ``where`` for an
    unknown name or background."""
    unknown = [name for name in names if name not in labels]
    if unknown:
        known = ", ".join(name for name in labels if labels[name] != 0) or "none (add a '# labels:' line)"
        raise ConfigError(f"{where}: unannotated names unknown label(s) {', '.join(unknown)}; labels: {known}")
    if any(labels[name] == 0 for name in names):
        raise ConfigError(f"{where}: background cannot be unannotated")
    return tuple(sorted({labels[name] for name in names}))


def write_csv_manifest(
    path: str | Path,
    cases: Sequence[CaseEntry],
    labels: Mapping[str, int],
    *,
    name: str | None = None,
    modality: str | None = None,
) -> Path:
    """Write ``cases`` as a CSV manifest that :func:`load_manifest` reads back to the same cases.

    Columns ``case_id,image,label,split,fold,group,unannotated`` (empty cells for what a case lacks), headed by
    ``# name:``, ``# modality:`` and ``# labels:`` lines; a multi-channel case's images are
    joined by ``;``. Files below the CSV's folder are written relative to it, others as absolute
    paths; they read back resolved (absolute, symlinks followed). An empty ``cases`` writes a
    manifest with no rows. The file is replaced atomically. Returns ``path``.

    Raises :class:`ConfigError` naming the case or label, and writes nothing, for anything that
    would read back differently or not at all: an empty text, a line break, leading or trailing
    whitespace (the reader strips), a case id starting with ``#`` (a comment line), an image path
    containing ``;`` (the channel separator), a case without images or with another channel count
    than the first case, a repeated case id, a split other than train/val/test/None, a fold that is
    not a non-negative integer, a label name containing ``,`` or ``=`` or looking like an integer,
    a label value outside 0..65535 or used twice, or labels without value 0.
    """
    import io

    path = Path(path).expanduser()
    root = path.parent.resolve()

    def relative(file: Path | None) -> str:
        if file is None:
            return ""
        file = Path(file).resolve()
        return file.relative_to(root).as_posix() if file.is_relative_to(root) else str(file)

    text = io.StringIO()
    for key, value in (("name", name), ("modality", modality)):
        if value:
            if problem := _text_problem(value):
                raise ConfigError(f"{path}: {key} {value!r} {problem}; it would not read back the same")
            text.write(f"# {key}: {value}\n")
    text.write(_labels_line(labels, path))
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    names = {value: name for name, value in labels.items()}
    for case in cases:
        writer.writerow(_csv_row(case, relative, path, names))
    _check_unique(list(cases), path)
    odd = next((case for case in cases if len(case.images) != len(cases[0].images)), None)
    if odd is not None:
        raise ConfigError(
            f"{path}: case {odd.case_id!r} has {len(odd.images)} image channel(s), but case "
            f"{cases[0].case_id!r} has {len(cases[0].images)}; every case needs the same channels"
        )
    atomic_write_text(path, text.getvalue())
    return path


def _text_problem(value: object) -> str | None:
    """Why ``value`` would not read back unchanged from a CSV manifest cell or ``# key:`` line; None if it would."""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not text"
    if not value:
        return "is empty"
    if value.splitlines() != [value]:
        return "contains a line break"
    if value != value.strip():
        return "has leading or trailing whitespace, which the reader strips"
    return None


def _labels_line(labels: Mapping[str, int], path: Path) -> str:
    """The ``# labels:`` line for ``labels``; ConfigError naming the label if it would not read back the same."""
    for label in labels:
        problem = _text_problem(label)
        if problem is None and ("," in label or "=" in label):
            problem = "contains ',' or '=', which separate the '# labels:' entries"
        if problem is None and _looks_like_integer(label):
            problem = "looks like an integer, which the reader takes for an MSD-style value"
        if problem:
            raise ConfigError(f"{path}: label {label!r} {problem}; it would not read back the same")
    if not labels:
        raise ConfigError(f"{path}: no labels given; a manifest needs at least background=0")
    written = {label: str(value) for label, value in labels.items()}  # what the reader will parse
    if _parse_labels(written, path) != dict(labels):
        raise ConfigError(f"{path}: labels {dict(labels)} lack value 0 (background), which the reader would add")
    return (
        "# labels: "
        + ", ".join(f"{label}={value}" for label, value in sorted(written.items(), key=lambda kv: int(kv[1])))
        + "\n"
    )


def _csv_row(
    case: CaseEntry, relative: Callable[[Path | None], str], path: Path, names: Mapping[int, str]
) -> list[object]:
    """One CSV manifest row for ``case``; ConfigError naming the case if it would not read back the same."""

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"{path}: case {case.case_id!r}: {why}; it would not read back the same")

    if problem := _text_problem(case.case_id):
        raise refuse(f"case id {problem}")
    if case.case_id.startswith("#"):
        raise refuse("case id starts with '#', which marks a comment line")
    if not case.images:
        raise refuse("no image file")
    images = [relative(image) for image in case.images]
    label = relative(case.label)
    for file in images + ([label] if case.label is not None else []):
        if problem := _text_problem(file):
            raise refuse(f"path {file!r} {problem}")
    if any(";" in image for image in images):
        raise refuse(f"image path {next(i for i in images if ';' in i)!r} contains ';', which separates channels")
    if case.split not in (None, "train", "val", "test"):
        raise refuse(f"split must be train, val, test or None, got {case.split!r}")
    if case.fold is not None and (isinstance(case.fold, bool) or not isinstance(case.fold, Integral) or case.fold < 0):
        raise refuse(f"fold must be a non-negative integer or None, got {case.fold!r}")
    if case.group is not None and (problem := _text_problem(case.group)):
        raise refuse(f"group {case.group!r} {problem}")
    if unknown := [value for value in case.unannotated if value == 0 or value not in names]:
        raise refuse(f"unannotated label value(s) {unknown} are not among the labels (background excluded)")
    return [
        case.case_id,
        ";".join(images),
        label,
        case.split or "",
        "" if case.fold is None else int(case.fold),
        case.group or "",
        ";".join(names[value] for value in case.unannotated),
    ]


def _looks_like_integer(text: str) -> bool:
    """True for ``"3"`` or ``"-1"`` (ASCII digits): an MSD-style label key."""
    return re.fullmatch(r"-?[0-9]+", text) is not None


def _load_phantom_yaml(path: Path) -> Manifest:
    import yaml

    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    phantom = spec.get("phantom")
    if not isinstance(phantom, dict) or not {"kind", "n", "seed"} <= set(phantom):
        raise ConfigError(f"{path}: a phantom manifest needs 'phantom: {{kind, n, seed}}' and 'root'")
    unknown = set(spec) - {"phantom", "root", "name"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    root = (path.parent / str(spec.get("root", f"phantoms/{path.stem}"))).resolve()
    dataset_json = root / "dataset.json"
    if not dataset_json.exists():
        from medseg.phantoms import write_phantom_dataset

        write_phantom_dataset(str(phantom["kind"]), int(phantom["n"]), int(phantom["seed"]), root)
    manifest = _load_dataset_json(dataset_json)
    manifest.path = path
    manifest.name = str(spec.get("name", manifest.name))
    return manifest


def _strip_ending(name: str, ending: str) -> str:
    return name[: -len(ending)] if name.endswith(ending) else Path(name).stem


def _check_unique(cases: list[CaseEntry], path: Path) -> None:
    seen: set[str] = set()
    for entry in cases:
        if entry.case_id in seen:
            raise ConfigError(f"{path}: case id {entry.case_id!r} appears more than once")
        seen.add(entry.case_id)


@dataclass(frozen=True)
class Problem:
    """One problem found by :func:`validate_manifest`."""

    case_id: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.case_id}: {self.path}: {self.message}"


def undeclared_labels_problem(manifest: Manifest, values: Iterable[int]) -> tuple[str, bool] | None:
    """The one rule for label values found in the data but not declared by the manifest, used by
    ``medseg validate`` and ``medseg plan`` alike. Returns ``None`` when every non-zero value is declared,
    else ``(message, is_error)``: an error when the manifest declares its labels (a dataset.json
    ``labels`` or a CSV ``# labels:`` line) and these values are not among them; a note when a CSV
    declares none (the values are then named ``label_<value>``), with the line to add."""
    undeclared = sorted(set(int(v) for v in values) - set(manifest.label_values))
    if not undeclared:
        return None
    if manifest.labels_declared:
        where = "'labels' of the dataset.json" if manifest.path.suffix == ".json" else "'# labels:' line"
        return (
            f"label values {undeclared} are not declared (declared: {manifest.label_values}); "
            f"add them to the {where} or fix the label maps"
        ), True
    line = ", ".join(["background=0"] + [f"label_{v}={v}" for v in undeclared])
    return (
        f"no '# labels:' line: label values {undeclared} are taken from the data and named label_<value>; "
        f"to name them, add '# labels: {line}' on top of {manifest.path.name}"
    ), False


def validate_manifest(
    manifest: Manifest, atol_mm: float = 1e-3, progress: bool = False, notes: list[str] | None = None
) -> list[Problem]:
    """Check every case: files exist and load, image and label share a voxel grid
    (shape equal, origin and axes within ``atol_mm`` mm), label values are declared ones and none
    that the case lists as unannotated is marked.

    Returns one :class:`Problem` per finding (empty list when all is well; an empty
    manifest gives one problem saying so). Loading reads whole volumes, one case at a time.
    Notes that are not problems (label values taken from the data of a CSV without a
    ``# labels:`` line) are logged as warnings and, when ``notes`` is a list, appended to it.
    """
    from medseg.io import grid_mismatch, load_volume
    from medseg.io.describe import describe_nonfinite, nonfinite_voxels

    problems: list[Problem] = []
    if not manifest.cases:
        return [Problem("-", str(manifest.path), "manifest lists no cases")]
    found_values: set[int] = set()
    for entry in progress_bar(manifest.cases, desc="validate", enabled=progress):
        paths = list(entry.images) + ([entry.label] if entry.label else [])
        missing = [p for p in paths if not p.exists()]
        for p in missing:
            problems.append(Problem(entry.case_id, str(p), "file not found"))
        if missing:
            continue
        volumes = {}
        for p in paths:
            try:
                volumes[p] = load_volume(p, label=(p == entry.label), ct=False)
            except MedsegError as exc:
                problems.append(Problem(entry.case_id, str(p), str(exc).removeprefix(f"{p}: ")))
        if len(volumes) != len(paths):
            continue
        for p in entry.images:
            if nonfinite := describe_nonfinite(nonfinite_voxels(volumes[p].array)):
                problems.append(
                    Problem(entry.case_id, str(p), f"{nonfinite}: training and statistics need finite values")
                )
        reference = volumes[entry.images[0]]
        for p in paths[1:]:
            mismatch = grid_mismatch(
                reference.affine, reference.shape, volumes[p].affine, volumes[p].shape, atol_mm, ("image", "this file")
            )
            if mismatch:
                problems.append(Problem(entry.case_id, str(p), f"not on the image's voxel grid: {mismatch}"))
        if entry.label is not None:
            present = set(np.unique(volumes[entry.label].array).tolist())
            found_values |= present
            problem = undeclared_labels_problem(manifest, present)
            if problem and problem[1]:
                problems.append(Problem(entry.case_id, str(entry.label), problem[0]))
            if marked := manifest.marked_unannotated(entry.case_id, present):
                problems.append(
                    Problem(
                        entry.case_id,
                        str(entry.label),
                        f"label value(s) {marked} are listed as unannotated but marked in the label map",
                    )
                )
    note = undeclared_labels_problem(manifest, found_values)
    if note and not note[1]:
        log.warning("%s: %s", manifest.path, note[0])
        if notes is not None:
            notes.append(note[0])
    return problems
