"""Shared test fixtures.

Real scans live in ``../shared/data`` beside the project root (see ``../shared/data/README.md``).
Tests that need them take the ``shared_data`` fixture (or call :func:`shared_path`), which
skips with a clear message when the folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def shared_path(relative: str) -> Path:
    """Path of a file or folder under ``../shared/data``; skips the test when it is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (tests on real scans need ../shared/data)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ``../shared/data`` folder; skips the test with a message when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent (tests on real scans need ../shared/data)")
    return SHARED_DATA
