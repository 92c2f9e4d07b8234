"""What the folder importer and the published layouts share about a source folder: which of
its files are seen, how one that cannot become a sample is reported, and the errors that stop
an import.

It sits below both (depth_core.data.importers reads the layouts by name, and the layouts
report through these), so neither has to import the other to reach them.
"""

from __future__ import annotations

import os
from collections import Counter
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


def nothing_usable(
    what: str, src: Path, dst: Path, skipped: list[dict[str, str]], examples: int = 3
) -> DatasetImportError:
    """The one-line error of an import where no sample is usable: the source, how many files
    were skipped by code, the first reasons, and that `dst` was not touched."""
    counts = Counter(entry.get("code", "skipped") for entry in skipped)
    by_code = ", ".join(f"{code} {n}" for code, n in sorted(counts.items()))
    listed = "; ".join(f"{e['file']}: {e['reason']}" for e in skipped[:examples])
    more = f"; ... and {len(skipped) - examples} more" if len(skipped) > examples else ""
    found = (
        f"{len(skipped)} skipped: {by_code}); {listed}{more}" if skipped else "no matching files)"
    )
    return DatasetImportError(
        one_line(f"no usable {what} in {src} ({found}; nothing written to {dst}")
    )


def skip_entry(file: str, code: str, reason: str) -> dict[str, str]:
    """One record of a skip list (summary.json, an import's stats): file, code, reason.

    The reason is kept on one line (library messages can span several), so every skipped file
    prints as one line and an import's error stays one line.
    """
    return {"file": file, "code": code, "reason": one_line(reason)}


def one_line(text: str) -> str:
    """`text` with its line breaks (and the blanks around them) made single spaces."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def visible_files(
    root: Path, skipped: list[dict[str, str]] | None = None, base: Path | None = None
) -> Iterator[Path]:
    """Files under `root`, recursively, sorted, skipping hidden files and folders.

    Folder symlinks are followed (data often spans disks), except one leading to a folder
    already searched (a loop such as `scene/up -> ..`, or a second link to the same folder):
    it is not followed and, like a folder that cannot be listed, becomes an entry of `skipped`
    named relative to `base` (default `root`), so a search always ends and nothing is read twice.
    """
    base = root if base is None else base
    report = skipped.append if skipped is not None else lambda entry: None
    name = lambda path: _relative_name(Path(path), base)

    def unlistable(error: OSError) -> None:
        report(skip_entry(name(error.filename), "unreadable", f"cannot list folder: {error}"))

    searched = {os.path.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable, followlinks=True):
        visible = sorted(d for d in dirnames if not d.startswith("."))
        # real folders first, so a link never hides the folder it points to at the same level
        ordered = sorted(visible, key=lambda d: os.path.islink(os.path.join(dirpath, d)))
        dirnames[:] = []
        for directory in ordered:
            path = os.path.join(dirpath, directory)
            target = os.path.realpath(path)
            if target in searched:
                report(_searched_twice(path, target, name, base))
                continue
            searched.add(target)
            dirnames.append(directory)
        dirnames.sort()
        for file in sorted(filenames):
            if not file.startswith("."):
                yield Path(dirpath) / file


def _searched_twice(path: str, target: str, name, base: Path) -> dict[str, str]:
    """The skip entry of a folder that a symlink leads to a second time."""
    if os.path.islink(path):
        where = _relative_name(Path(target), base, real=True)
        where = f"{base} (the source folder)" if where == "." else where
        reason = f"folder symlink to {where}, which is already searched; not followed"
        return skip_entry(name(path), "symlink_loop", reason)
    reason = "folder already searched through a symlink; not searched again"
    return skip_entry(name(path), "duplicate_folder", reason)


def _relative_name(path: Path, base: Path, real: bool = False) -> str:
    """`path` below `base` as a posix string (`.` for `base`), else as it is."""
    if real:
        base = Path(os.path.realpath(base))
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)
