"""What the folder importer and the published layouts share about a source folder: which of
its files are seen, how one that cannot become a sample is reported, and the errors that stop
an import.

It sits below both (depth_core.data.importers reads the layouts by name, and the layouts
report through these), so neither has to import the other to reach them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# The generic format: any folder, images paired with depth maps by file name.
FOLDER_FORMAT = "folder"


class DatasetImportError(ValueError):
    """An import that cannot produce a dataset at all (bad paths, nothing usable)."""


class SkippedFile(Exception):
    """A source file that cannot become a sample: `code` to count by, `reason` for a person."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def entry(self, file: str) -> dict[str, str]:
        """The skip list's record of `file` (as in summary.json)."""
        return skip_entry(file, self.code, self.reason)


def skip_entry(file: str, code: str, reason: str) -> dict[str, str]:
    """One record of a skip list (summary.json, an import's stats): file, code, reason."""
    return {"file": file, "code": code, "reason": reason}


def visible_files(root: Path) -> Iterator[Path]:
    """Files under `root`, recursively, sorted, skipping hidden files and folders."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name
