"""Public RGB-D training sets read from their own published layouts, by name.

`folder` (any folder, pairs found by file name; see depth_core.data.importers) is the default
format; each layout here fixes its own file names, depth units and invalid values.
"""

from __future__ import annotations

from depth_core.data.layouts import blendedmvs, hypersim, tartanair, vkitti2
from depth_core.data.layouts.base import RGBDLayout
from depth_core.data.source_files import FOLDER_FORMAT

LAYOUTS: dict[str, RGBDLayout] = {
    layout.name: layout
    for layout in (hypersim.LAYOUT, vkitti2.LAYOUT, tartanair.LAYOUT, blendedmvs.LAYOUT)
}


def format_names() -> tuple[str, ...]:
    """Every value `format` may take: the generic folder, then the layouts."""
    return (FOLDER_FORMAT, *LAYOUTS)


def get_layout(name: str) -> RGBDLayout:
    """The layout called `name` (not `folder`, which the importers read themselves)."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(
            f"unknown RGB-D layout {name!r}; expected one of {', '.join(LAYOUTS)}"
        ) from None


__all__ = ["LAYOUTS", "RGBDLayout", "format_names", "get_layout"]
