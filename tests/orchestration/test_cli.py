import pytest

from orchestration.cli import build_parser, main


def test_every_subcommand_is_registered():
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices
    assert {"stage", "data", "predict", "evaluate", "evaluate-pairs", "bench"} <= set(choices)


def test_a_named_command_loads_only_its_own_module():
    parser = build_parser(["stage", "teacher", "--params", "params.yaml"])
    assert set(parser._subparsers._group_actions[0].choices) == {"stage"}
    assert set(build_parser(["--help"])._subparsers._group_actions[0].choices) >= {"predict"}


def test_bad_params_file_is_one_clear_line(tmp_path, capsys):
    code = main(["stage", "teacher", "--params", str(tmp_path / "missing.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing.yaml" in err and "Traceback" not in err


def test_bad_override_names_the_key(tmp_path, capsys):
    from tests.orchestration.conftest import REPO

    code = main(
        [
            "stage",
            "teacher",
            "--params",
            str(REPO / "params.yaml"),
            "-S",
            "teacher.epochs=many",
            "--root",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "teacher.epochs" in capsys.readouterr().err


def test_console_entry_flushes_runs_exit_handlers_and_keeps_the_code(monkeypatch, capsys):
    from orchestration import cli

    events = []
    monkeypatch.setattr(cli, "main", lambda: print("result") or 3)
    monkeypatch.setattr(cli.atexit, "_run_exitfuncs", lambda: events.append("atexit"))

    def fake_exit(code):
        events.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    with pytest.raises(SystemExit):
        cli.run()
    assert events == ["atexit", 3]
    assert capsys.readouterr().out == "result\n"
