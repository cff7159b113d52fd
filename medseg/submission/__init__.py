"""Challenge submissions: write, check and package predictions in a challenge's format.

Formats (:mod:`medseg.submission.formats`): ``msd`` / nnU-Net, ``acdc``, ``rle-csv``
(Kaggle-style run-length CSV, :mod:`medseg.submission.rle`) and ``grand-challenge``
(predictions plus ``metrics.json``, :mod:`medseg.submission.metrics_json`).

* :func:`prepare_submission` writes a submission folder (and zip) from predictions,
* :func:`check_submission` checks a folder or zip against the images and reports per case,
* :func:`rle_encode` / :func:`rle_decode` are the run-length codec,
* :func:`write_submission_zip` packages a folder atomically with a SHA-256 manifest.

This layer imports :mod:`medseg.io`, :mod:`medseg.common` and, for ``metrics.csv``,
:mod:`medseg.evaluation.metrics_table`.
"""

from medseg.io import atomic_directory
from medseg.submission.cases import ImageCase, align_to_grid, discover_images, match_predictions
from medseg.submission.check import DEFAULT_ATOL_MM, CheckProblem, CheckReport, check_submission
from medseg.submission.errors import SubmissionError
from medseg.submission.formats import FORMATS, SubmissionFormat, get_format, parse_allowed_labels
from medseg.submission.labels import parse_label_map, remap_labels
from medseg.submission.metrics_json import metrics_json_from_rows, write_metrics_json
from medseg.submission.package import build_manifest, sha256_file, write_submission_zip
from medseg.submission.prepare import PreparedCase, PreparedSubmission, prepare_submission
from medseg.submission.rle import parse_slice_image_id, rle_decode, rle_encode, slice_image_id, volume_rle_rows

__all__ = [
    "DEFAULT_ATOL_MM",
    "FORMATS",
    "CheckProblem",
    "CheckReport",
    "ImageCase",
    "PreparedCase",
    "PreparedSubmission",
    "SubmissionError",
    "SubmissionFormat",
    "align_to_grid",
    "atomic_directory",
    "build_manifest",
    "check_submission",
    "discover_images",
    "get_format",
    "match_predictions",
    "metrics_json_from_rows",
    "parse_allowed_labels",
    "parse_label_map",
    "parse_slice_image_id",
    "prepare_submission",
    "remap_labels",
    "rle_decode",
    "rle_encode",
    "sha256_file",
    "slice_image_id",
    "volume_rle_rows",
    "write_metrics_json",
    "write_submission_zip",
]
