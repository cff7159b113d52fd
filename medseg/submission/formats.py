"""The challenge submission formats medseg writes and checks.

Every format is one flat layout of files named by case id (see :mod:`medseg.submission.cases`
for how case ids come from image file names):

``msd`` (alias ``nnunet``)
    ``<case>.nii.gz`` per case: gzip-compressed NIfTI-1, uint8 labels, voxel grid (shape and
    affine) equal to the image's. ``<case>`` is the image's case id without the nnU-Net
    channel suffix (``case_001_0000.nii.gz`` -> ``case_001.nii.gz``).
``acdc``
    ``patientNNN_ED.nii.gz`` and ``patientNNN_ES.nii.gz``: uint8 labels 0 background,
    1 right-ventricle cavity, 2 left-ventricle myocardium, 3 left-ventricle cavity; grid equal
    to the image's. Every case must contain some foreground.
``rle-csv``
    ``submission.csv`` with header ``ImageId,EncodedPixels`` (one binary class) or
    ``ImageId,ClassId,EncodedPixels`` (one row per 2D image and class); see
    :mod:`medseg.submission.rle` for the run-length encoding and how 2D images are named.
``grand-challenge`` (alias ``gc``)
    ``predictions/<case>.mha`` (MetaImage with zlib compression, uint8, grid equal to the
    image's; MHA is Grand Challenge's native image format) plus ``metrics.json`` in the
    ``{"case": ..., "aggregates": ...}`` layout built from an evaluation run's ``metrics.csv``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from medseg.common.labels import parse_label_spec
from medseg.errors import InvalidArgumentError

#: Name of the run-length CSV inside an ``rle-csv`` submission.
RLE_CSV_NAME = "submission.csv"
#: Name of the metrics file inside a ``grand-challenge`` submission.
METRICS_JSON_NAME = "metrics.json"
#: Name of the manifest medseg adds to a submission zip.
MANIFEST_NAME = "manifest.json"

ACDC_LABELS = {0: "background", 1: "right-ventricle cavity", 2: "left-ventricle myocardium", 3: "left-ventricle cavity"}


@dataclass(frozen=True)
class SubmissionFormat:
    """What a submission format looks like on disk.

    Attributes:
        name: canonical name (``msd``, ``acdc``, ``rle-csv``, ``grand-challenge``).
        description: one line for help texts.
        volume_suffix: file suffix of per-case label volumes (``None`` for ``rle-csv``).
        volume_folder: subfolder holding the volumes (``""`` for the submission root).
        allowed_labels: label values the format allows (``None``: any uint8 value, narrowed
            by ``--labels``, a label spec of :mod:`medseg.common.labels`).
        case_pattern: regular expression every case id must match (``None``: any).
        require_foreground: a case that is all background is a failure (else a warning).
        fixed_files: other files the submission must hold (relative paths).
    """

    name: str
    description: str
    volume_suffix: str | None
    volume_folder: str = ""
    allowed_labels: frozenset[int] | None = None
    case_pattern: str | None = None
    require_foreground: bool = False
    fixed_files: tuple[str, ...] = field(default_factory=tuple)

    def volume_relpath(self, case_id: str) -> str:
        """Path of a case's label volume inside the submission (POSIX separators)."""
        if self.volume_suffix is None:
            raise InvalidArgumentError(f"format {self.name} has no per-case volumes")
        name = case_id + self.volume_suffix
        return f"{self.volume_folder}/{name}" if self.volume_folder else name

    def case_from_relpath(self, relpath: str) -> str | None:
        """Case id of a per-case volume path inside the submission, or ``None`` if it is not one."""
        if self.volume_suffix is None:
            return None
        folder, _, name = relpath.rpartition("/")
        if folder != self.volume_folder or not name.endswith(self.volume_suffix):
            return None
        case_id = name[: -len(self.volume_suffix)]
        if not case_id or case_id.startswith("."):
            return None
        return case_id

    def case_name_problem(self, case_id: str) -> str | None:
        """Why ``case_id`` is not a valid name in this format, or ``None`` when it is."""
        if self.case_pattern and not re.fullmatch(self.case_pattern, case_id):
            return f"name {case_id!r} does not match the {self.name} pattern {self.case_pattern}"
        return None


FORMATS: dict[str, SubmissionFormat] = {
    "msd": SubmissionFormat(
        "msd",
        "MSD / nnU-Net: <case>.nii.gz per case, uint8, grid equal to the image",
        ".nii.gz",
    ),
    "acdc": SubmissionFormat(
        "acdc",
        "ACDC: patientNNN_ED.nii.gz / patientNNN_ES.nii.gz, labels 1 RV, 2 MYO, 3 LV",
        ".nii.gz",
        allowed_labels=frozenset(ACDC_LABELS),
        case_pattern=r"patient\d{3}_(ED|ES)",
        require_foreground=True,
    ),
    "rle-csv": SubmissionFormat(
        "rle-csv",
        f"Kaggle-style {RLE_CSV_NAME}: ImageId[,ClassId],EncodedPixels per 2D slice",
        None,
        fixed_files=(RLE_CSV_NAME,),
    ),
    "grand-challenge": SubmissionFormat(
        "grand-challenge",
        f"Grand Challenge: predictions/<case>.mha plus {METRICS_JSON_NAME} (case/aggregates)",
        ".mha",
        volume_folder="predictions",
        fixed_files=(METRICS_JSON_NAME,),
    ),
}

ALIASES = {
    "nnunet": "msd",
    "nnu-net": "msd",
    "gc": "grand-challenge",
    "grandchallenge": "grand-challenge",
    "rle": "rle-csv",
}


def get_format(name: str) -> SubmissionFormat:
    """The :class:`SubmissionFormat` called ``name`` (case-insensitive; aliases accepted)."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in FORMATS:
        known = ", ".join(list(FORMATS) + sorted(ALIASES))
        raise InvalidArgumentError(f"unknown submission format {name!r}; known: {known}")
    return FORMATS[key]


def format_label_names(fmt: SubmissionFormat) -> dict[int, str]:
    """The format's own label names (``acdc``: 0 background, 1 right-ventricle cavity, ...); ``{}`` for the others."""
    return dict(ACDC_LABELS) if fmt.name == "acdc" else {}


def parse_allowed_labels(spec: object, known: dict[int, str] | None = None) -> frozenset[int] | None:
    """Allowed label values of a submission from a label spec (:mod:`medseg.common.labels`: ``"1,2"``,
    ``"0-3"``, ``"liver=1"``, a ``dataset.json``, or from Python a set of values): the spec's values plus
    background 0, which is always allowed. ``None`` or ``""`` give ``None`` (no restriction beyond uint8).

    Raises:
        InvalidArgumentError: an unreadable spec, or values that do not fit in uint8 (0..255).
        ConfigError: a dataset.json that cannot be read.
    """
    names = parse_label_spec(spec, known)
    if names is None:
        return None
    bad = sorted(v for v in names if v > 255)
    if bad:
        raise InvalidArgumentError(f"--labels {spec!r}: label values {bad} do not fit in uint8 (0..255)")
    return frozenset(names) | {0}


def label_names(fmt: SubmissionFormat, spec: object) -> dict[int, str]:
    """Names of label values, for messages: ``{value: name}``, background 0 included when named.

    The format's own names (:func:`format_label_names`), overridden by the names a label spec gives
    (a ``dataset.json`` or ``name=value`` items); values the spec gives without a name keep the format's
    name or none. ``{}`` when nothing names them (ranges such as ``"0-3"`` carry no names).
    """
    own = format_label_names(fmt)
    named = {v: n for v, n in (parse_label_spec(spec, own) or {}).items() if n != str(v)}
    return dict(sorted({**own, **named}.items()))
