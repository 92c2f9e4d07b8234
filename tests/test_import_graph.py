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
