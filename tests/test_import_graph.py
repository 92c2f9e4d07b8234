"""The architecture holds: no import circles, depth_core free of the pipeline's tools, and no
private name taken across modules."""

from __future__ import annotations

import pytest

from tests.import_graph import cycles, edges, imports, private_imports, project_modules

PIPELINE_TOOLS = ("orchestration", "dagster", "dagster_pipes", "dvc", "mlflow")


@pytest.mark.parametrize("package", ["depth_core", "orchestration"])
def test_no_import_cycle(package):
    assert cycles((package,)) == [], f"modules of {package} that import one another in a circle"


def test_depth_core_imports_no_pipeline_tool():
    offending = [
        f"{module}:{line} imports {source}"
        for module in project_modules()
        if module.startswith("depth_core")
        for source, _, line in imports(module)
        if source.split(".")[0] in PIPELINE_TOOLS
    ]
    assert offending == []


def test_no_private_name_is_imported_across_modules():
    assert private_imports() == []


def test_the_graph_sees_imports_inside_functions():
    # orchestration.cli imports each command's module by name; commands import lazily inside
    # their functions, e.g. the stage command's run_stage: the graph must count those.
    assert "orchestration.stages.registry" in edges("orchestration.commands.stage")


# orchestration's folders, lowest first: each may import only the folders below it (and depth_core).
LAYERS = (("lineage", "tracking"), ("params",), ("stages",), ("dagster_app",), ("commands", "cli"))


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "orchestration" or len(parts) < 2:
        return None
    return next(i for i, names in enumerate(LAYERS) if parts[1] in names)


def test_orchestration_folders_import_only_the_layers_below():
    upward = [
        f"{module} imports {target}"
        for module in project_modules()
        if _layer(module) is not None
        for target in edges(module)
        if _layer(target) is not None and _layer(target) > _layer(module)
    ]
    assert upward == []
