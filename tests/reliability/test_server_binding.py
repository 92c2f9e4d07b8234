"""`make dagster` and `make mlflow` serve on this machine only: every server command line in the
Makefile's recipes names host 127.0.0.1, and nothing binds 0.0.0.0 (the Dagster UI launches
runs and the MLflow UI deletes them: neither has authentication)."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.helpers import REPO

LOOPBACK = "127.0.0.1"
# (what a server command line starts with, the options that set its host)
SERVERS = {
    "dagster dev": ("-h", "--host"),
    "dagster-webserver": ("-h", "--host"),
    "mlflow ui": ("-h", "--host"),
    "mlflow server": ("-h", "--host"),
}


def recipes(makefile: str) -> dict[str, list[str]]:
    """Each target's recipe lines, backslash continuations joined, whitespace collapsed."""
    out: dict[str, list[str]] = {}
    target = None
    for line in makefile.replace("\\\n", " ").splitlines():
        if line.startswith("\t") and target:
            out[target].append(" ".join(line.split()))
        elif m := re.match(r"^([^\s:=#][^:=]*?)\s*:(?!=)", line):
            target = m.group(1)
            out.setdefault(target, [])
        elif line.strip() and not line.startswith("#"):
            target = None
    return out


def server_hosts(line: str) -> list[tuple[str, str | None]]:
    """(server, the host it binds or None) for each server a recipe line starts; programs are
    matched by their file name ($(BIN)/mlflow is mlflow)."""
    words = [w if w.startswith("-") else w.rsplit("/", 1)[-1] for w in shlex.split(line)]
    found = []
    for server, options in SERVERS.items():
        name = server.split()
        for i in range(len(words) - len(name) + 1):
            if words[i : i + len(name)] == name:
                found.append((server, _option(words[i + len(name) :], options)))
    return found


def _option(words: list[str], options: tuple[str, ...]) -> str | None:
    """The value of the first of `options` among `words` (`-h X`, `--host X`, `--host=X`)."""
    for i, word in enumerate(words):
        if word in options and i + 1 < len(words):
            return words[i + 1]
        for option in options:
            if word.startswith(option + "="):
                return word.split("=", 1)[1]
    return None


@pytest.fixture(scope="module")
def make_recipes() -> dict[str, list[str]]:
    return recipes((REPO / "Makefile").read_text())


@pytest.mark.parametrize("target, server", [("dagster", "dagster dev"), ("mlflow", "mlflow ui")])
def test_make_target_binds_loopback(make_recipes, target, server):
    started = [hit for line in make_recipes[target] for hit in server_hosts(line)]
    assert started, f"make {target}: no `{server}` command line in its recipe"
    for name, host in started:
        assert host == LOOPBACK, f"make {target}: `{name}` binds {host or 'its default'}"


def test_no_recipe_binds_every_interface(make_recipes):
    for target, lines in make_recipes.items():
        for line in lines:
            assert "0.0.0.0" not in line, f"make {target}: {line}"
            for name, host in server_hosts(line):
                assert host == LOOPBACK, f"make {target}: `{name}` binds {host or 'its default'}"


@pytest.mark.parametrize(
    "line, expected",
    [
        ("exec run.sh .venv/bin/dagster dev -h 127.0.0.1 -p 3000", [("dagster dev", LOOPBACK)]),
        ("$(BIN)/mlflow ui --backend-store-uri sqlite:///m.db --port 5000", [("mlflow ui", None)]),
        ("$(BIN)/mlflow server --host=0.0.0.0", [("mlflow server", "0.0.0.0")]),
        ("$(BIN)/dvc repro", []),
    ],
)
def test_server_hosts_reads_the_host(line, expected):
    """The check itself: a command line without a host, or with another one, is seen."""
    assert server_hosts(line) == expected


def test_recipes_join_continuations():
    makefile = "a: b\n\tX=1 \\\n\t\tdagster dev -h 127.0.0.1\n# note\nc:\n\techo\n"
    assert recipes(makefile) == {"a": ["X=1 dagster dev -h 127.0.0.1"], "c": ["echo"]}
