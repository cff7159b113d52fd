"""Which cardiac phase a case is: end-diastole (ED) or end-systole (ES), from its name (one rule for every command).

* A case id ending in ``_ED`` / ``_ES`` (any letter case; ``-`` also separates) is that phase of the subject
  named by the rest: ``patient001_ED`` -> (``patient001``, ``ED``).
* A case id ending in ``_frameNN`` (the ACDC challenge's own file names) is looked up in ACDC's ``Info.cfg``
  (``ED: 1``, ``ES: 12``, one ``key: value`` per line) in the given folders (the folder of the case's files).

Used by clinical indices (:mod:`medseg.evaluation.indices`, pairing ED with ES) and ACDC submissions
(:mod:`medseg.submission.cases`, naming the output files).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

_PHASE = re.compile(r"^(?P<subject>.+?)[_-](?P<phase>ED|ES)$", re.IGNORECASE)
_FRAME = re.compile(r"^(?P<subject>.+?)_frame(?P<frame>\d+)$", re.IGNORECASE)


def read_info_cfg(path: str | Path) -> dict[str, str]:
    """``key: value`` lines of an ACDC ``Info.cfg`` (keys upper-cased: ``ED``, ``ES``, ``GROUP``, ...); an
    unreadable or missing file gives ``{}``."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return {}
    entries = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            entries[key.strip().upper()] = value.strip()
    return entries


def acdc_frame_phase(info_cfg: str | Path, frame: int) -> str | None:
    """``"ED"`` / ``"ES"`` when the ``Info.cfg`` names ``frame`` as that phase, else ``None`` (also when the file is
    missing or unreadable)."""
    info = read_info_cfg(info_cfg)
    for phase in ("ED", "ES"):
        if info.get(phase, "").isdigit() and int(info[phase]) == frame:
            return phase
    return None


def cardiac_phase(case_id: str, folders: Iterable[str | Path] = ()) -> tuple[str, str | None, str]:
    """``(subject, phase, flag)`` of a case id: phase ``"ED"`` / ``"ES"`` with an empty flag, or ``None`` with
    ``phase_unknown`` (the name says no phase), ``no_info_cfg`` (a ``_frameNN`` case with no ``Info.cfg`` in
    ``folders``) or ``not_ed_or_es`` (its ``Info.cfg`` names the frame neither ED nor ES). The first folder holding
    an ``Info.cfg`` decides."""
    match = _PHASE.match(case_id)
    if match:
        return match["subject"], match["phase"].upper(), ""
    match = _FRAME.match(case_id)
    if not match:
        return case_id, None, "phase_unknown"
    for folder in folders:
        info_cfg = Path(folder) / "Info.cfg"
        if info_cfg.is_file():
            phase = acdc_frame_phase(info_cfg, int(match["frame"]))
            return match["subject"], phase, "" if phase else "not_ed_or_es"
    return match["subject"], None, "no_info_cfg"
