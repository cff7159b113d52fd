"""Atomic writing of submission folders and zips, with a SHA-256 manifest.

The zip holds the submission's files at its root plus ``manifest.json``::

    {"medseg_version": "0.1.0", "format": "acdc", "created_utc": "2025-01-01T12:00:00Z",
     "command": "medseg submit --format acdc ...", "cases": [...],
     "files": {"patient001_ED.nii.gz": {"sha256": "...", "bytes": 12345}, ...}}

Writing is atomic: everything goes to a temporary file (or folder) in the destination's
folder, which is renamed into place with ``os.replace`` only when complete. A failure leaves
the previous zip/folder (if any) untouched and no half-written one. The zip and the folder get
the permissions ``open()`` / ``mkdir()`` would have given them (0666 / 0777 minus the umask,
:func:`medseg.io.default_file_mode`), not ``mkstemp``'s private 0600 / 0700.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

from medseg.io import atomic_path
from medseg.submission.errors import SubmissionError
from medseg.submission.formats import MANIFEST_NAME

#: Files already compressed are stored in the zip as they are; others are deflated.
_STORED_SUFFIXES = (".gz", ".mha", ".zip", ".png", ".npz")


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (hashlib; read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_under(folder: str | Path) -> list[str]:
    """Relative POSIX paths of every file under ``folder`` (recursive, hidden ones included), sorted."""
    folder = Path(folder)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def build_manifest(
    folder: str | Path, format_name: str, command: str, cases: list[str] | None = None
) -> dict[str, Any]:
    """Manifest dict of a submission folder: medseg version, format, command, cases, SHA-256 per file."""
    from medseg import __version__

    folder = Path(folder)
    files = {
        rel: {"sha256": sha256_file(folder / rel), "bytes": (folder / rel).stat().st_size}
        for rel in files_under(folder)
        if rel != MANIFEST_NAME
    }
    return {
        "medseg_version": __version__,
        "format": format_name,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "cases": list(cases or []),
        "files": files,
    }


def write_submission_zip(
    folder: str | Path,
    zip_path: str | Path,
    format_name: str,
    command: str | None = None,
    cases: list[str] | None = None,
) -> Path:
    """Zip a submission folder (files at the zip's root) with ``manifest.json``, atomically.

    Already-compressed files (``.nii.gz``, ``.mha``) are stored, others deflated (zipfile).
    The zip is first written to a temporary file beside ``zip_path`` and renamed over it
    only when complete; on any failure the temporary file is removed and the exception
    propagates, leaving an existing ``zip_path`` untouched. Returns ``zip_path``.

    Args:
        folder: the submission folder; every file under it goes into the zip.
        zip_path: the zip to write (a leading ``~`` is expanded here and in ``folder``).
        format_name: the format name recorded in the manifest (``medseg check`` compares it with
            the format it checks against).
        command: how the submission was made, recorded as the manifest's ``command`` (``medseg
            submit`` passes its command line). ``None``: this call itself, e.g.
            ``medseg.submission.write_submission_zip('/data/sub', '/data/sub.zip', 'acdc')``.
        cases: case ids recorded in the manifest (``None``: an empty list).

    Raises:
        SubmissionError: ``folder`` is missing or empty.
    """
    folder, zip_path = Path(folder).expanduser(), Path(zip_path).expanduser()
    rels = [rel for rel in files_under(folder)] if folder.is_dir() else []
    if not rels:
        raise SubmissionError(f"{folder}: nothing to zip (missing or empty folder)")
    if command is None:
        command = f"medseg.submission.write_submission_zip({str(folder)!r}, {str(zip_path)!r}, {format_name!r})"
    manifest = build_manifest(folder, format_name, command, cases)
    with atomic_path(zip_path, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for rel in rels:
            if rel == MANIFEST_NAME:
                continue
            compression = zipfile.ZIP_STORED if rel.lower().endswith(_STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
            archive.write(folder / rel, arcname=rel, compress_type=compression)
        archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n", compress_type=zipfile.ZIP_DEFLATED)
    return zip_path


class ManifestProblem(NamedTuple):
    """One difference between an extracted zip and its manifest.

    ``relpath`` is the file it concerns (relative POSIX path inside the zip), ``None`` for the
    manifest as a whole; ``message`` is the report line (it names the file).
    """

    relpath: str | None
    message: str


def manifest_problems(folder: str | Path, manifest: Any, format_name: str) -> list[ManifestProblem]:
    """Compare an extracted submission with its manifest: files, SHA-256, format.

    Returns one :class:`ManifestProblem` per problem, with the file it concerns (so the
    checker can charge it to that file's case); ``[]`` when the zip matches its manifest.
    """
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return [ManifestProblem(None, f"{MANIFEST_NAME}: not a medseg manifest (no 'files' mapping)")]
    folder = Path(folder)
    problems = []
    if manifest.get("format") not in (None, format_name):
        problems.append(
            ManifestProblem(
                None, f"{MANIFEST_NAME}: made for format {manifest.get('format')!r}, checked as {format_name!r}"
            )
        )
    present = set(files_under(folder)) - {MANIFEST_NAME}
    listed = set(manifest["files"])
    for rel in sorted(listed - present):
        problems.append(ManifestProblem(rel, f"{rel}: listed in {MANIFEST_NAME} but not in the zip"))
    for rel in sorted(present - listed):
        problems.append(ManifestProblem(rel, f"{rel}: in the zip but not listed in {MANIFEST_NAME}"))
    for rel in sorted(present & listed):
        expected = (manifest["files"][rel] or {}).get("sha256")
        if expected != sha256_file(folder / rel):
            problems.append(
                ManifestProblem(rel, f"{rel}: SHA-256 differs from {MANIFEST_NAME} (file changed after packaging)")
            )
    return problems


def check_output_folder(out_dir: Path, overwrite: bool) -> None:
    """Raise :class:`SubmissionError` unless ``out_dir`` may be (re)written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SubmissionError(f"{out_dir}: output exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise SubmissionError(f"{out_dir}: output folder is not empty; choose another --out or pass --overwrite")
