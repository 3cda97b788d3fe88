"""Where the published meter data is: `../shared/data` beside the repository, never in it
(DEVELOPERS.md), or wherever P1_SHARED_DATA points. Nothing here reads it: tests reach it through
the fixtures of conftest.py, which skip (fail under CI=true) where it is missing."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("P1_SHARED_DATA") or REPO.parent / "shared" / "data")
MISSING = (
    f"published meter data not found at {DATA_DIR}: put ../shared/data beside the repository "
    "or set P1_SHARED_DATA (see DEVELOPERS.md)"
)
