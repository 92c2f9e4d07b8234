"""Every params key refuses a wrong value, naming its full dotted key, before any stage runs.

The keys are found by walking the schema's model fields (orchestration.params.schema.Params)
over the smoke profile, so a new key is covered without editing this file. For each leaf the
cases come from its annotation and constraints: a value of another type, a number outside its
bounds, an unknown choice, NaN or infinity. A new number without a lower bound fails
`test_every_number_is_bounded` until it gets one (or is listed in UNBOUNDED on purpose).
"""

from __future__ import annotations

import copy
import fnmatch
import math
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from orchestration.cli import main
from orchestration.params.schema import Params, ParamsError, parse_params
from tests.helpers import smoke_raw

# Numbers that take any value: a training seed (torch seeds any integer).
UNBOUNDED = ["teacher.seed", "students.*.seed"]
# The values pydantic reads as booleans; any other string is a wrong type for a bool.
BOOL_WORDS = {"0", "1", "f", "t", "n", "y", "no", "yes", "on", "off", "false", "true"}


@dataclass(frozen=True)
class Leaf:
    key: str  # dotted: students.lite0.epochs
    annotation: Any  # without Optional
    metadata: tuple  # annotated_types constraints (Ge, Gt, Le, Lt, MinLen)


def _strip(annotation: Any) -> tuple[Any, list]:
    """The annotation without Annotated[] and None, and the constraints Annotated[] held."""
    metadata: list = []
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        for item in extra:  # Annotated[float, Field(ge=0)] holds its constraints in a FieldInfo
            metadata += item.metadata if isinstance(item, FieldInfo) else [item]
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            inner, more = _strip(args[0])
            return inner, metadata + more
    return annotation, metadata


def _model(annotation: Any) -> type[BaseModel] | None:
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def leaves(model: type[BaseModel], raw: dict, prefix: str = "") -> list[Leaf]:
    """Every leaf key of `model` present in `raw`, sections and `students` entries walked."""
    out = []
    for name, field in model.model_fields.items():
        annotation, metadata = _strip(field.annotation)
        value = raw.get(name)
        key = f"{prefix}{name}"
        if _model(annotation):
            assert isinstance(value, dict), f"{key}: an empty section; fill it in base_raw()"
            out += leaves(annotation, value, f"{key}.")
        elif get_origin(annotation) is dict and _model(get_args(annotation)[1]):
            for entry, sub in (value or {}).items():
                out += leaves(get_args(annotation)[1], sub, f"{key}.{entry}.")
        else:
            out.append(Leaf(key, annotation, tuple(metadata + list(field.metadata))))
    return out


def _bounds(metadata: tuple) -> tuple[Any, Any, Any, Any]:
    """(ge, gt, le, lt) of a leaf's constraints, None where it has none."""
    names = ("ge", "gt", "le", "lt")
    found = {name: getattr(m, name) for m in metadata for name in names if hasattr(m, name)}
    return tuple(found.get(name) for name in names)


def _out_of_range(kind: type, metadata: tuple) -> st.SearchStrategy:
    """Numbers beyond the leaf's bounds (nothing when it has none)."""
    ge, gt, le, lt = _bounds(metadata)
    options = []
    if kind is int:
        if ge is not None or gt is not None:
            options.append(st.integers(max_value=ge - 1 if ge is not None else gt))
        if le is not None or lt is not None:
            options.append(st.integers(min_value=le + 1 if le is not None else lt))
    else:
        if ge is not None or gt is not None:
            top = ge if ge is not None else gt
            options.append(st.floats(max_value=top, exclude_max=ge is not None, allow_nan=False))
        if le is not None or lt is not None:
            low = le if le is not None else lt
            options.append(st.floats(min_value=low, exclude_min=le is not None, allow_nan=False))
    return st.one_of(options) if options else st.nothing()


WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
CONTAINERS = st.one_of(
    st.lists(st.integers(), max_size=3), st.dictionaries(WORDS, st.integers(), max_size=2)
)


def bad_values(leaf: Leaf) -> st.SearchStrategy:
    """Values the leaf must refuse."""
    kind = leaf.annotation
    origin = get_origin(kind)
    dict_of_words = st.dictionaries(WORDS, st.integers(), min_size=1, max_size=2)
    if kind is bool:
        return st.one_of(
            WORDS.filter(lambda w: w.lower() not in BOOL_WORDS),
            st.integers().filter(lambda n: n not in (0, 1)),
            CONTAINERS,
        )
    if kind is int:
        non_integral = st.floats(allow_nan=False, allow_infinity=False).filter(
            lambda x: x != int(x)
        )
        return st.one_of(WORDS, non_integral, CONTAINERS, _out_of_range(int, leaf.metadata))
    if kind is float:
        return st.one_of(
            WORDS,  # "nan" and "inf" among them: pydantic reads those as floats
            CONTAINERS,
            NON_FINITE,
            _out_of_range(float, leaf.metadata),
        )
    if kind is str:
        return st.one_of(st.integers(), st.lists(WORDS, max_size=2), dict_of_words)
    if origin is Literal:
        choices = get_args(kind)
        return st.one_of(WORDS.filter(lambda w: w not in choices), CONTAINERS)
    if origin is tuple:
        items = [_strip(a) for a in get_args(kind)]
        if items and all(a in (int, float) for a, _ in items):
            size = len(items)
            numbers = st.lists(st.integers(1, 9), min_size=size + 1, max_size=size + 2)
            cases = [WORDS, dict_of_words, numbers]
            if any(a is float for a, _ in items):
                cases.append(NON_FINITE.map(lambda x, n=size: [x] * n))
            for index, (element, metadata) in enumerate(items):
                if metadata:
                    cases.append(
                        _out_of_range(element, tuple(metadata)).map(
                            lambda x, i=index, n=size: [x if j == i else 1 for j in range(n)]
                        )
                    )
            return st.one_of(cases)
    if origin is list:
        element, _ = _strip(get_args(kind)[0])
        wrong = st.lists(dict_of_words, min_size=1, max_size=2)
        cases = [WORDS, dict_of_words, wrong]
        if element is float:
            cases.append(NON_FINITE.map(lambda x: [x]))
        if any(isinstance(m, at.MinLen) for m in leaf.metadata):
            cases.append(st.just([]))
        return st.one_of(cases)
    if origin is dict:
        return st.one_of(WORDS, st.lists(st.integers(), min_size=1, max_size=2))
    if origin in (Union, types.UnionType):  # str | list[str] (urls)
        return st.one_of(st.integers(), dict_of_words)
    raise AssertionError(f"{leaf.key}: no bad values for {kind!r}; teach bad_values this type")


def base_raw() -> dict:
    """The smoke profile with every optional section filled, so its keys are walked too."""
    raw = smoke_raw()
    for section in ("labeled", "unlabeled", "target_eval"):
        raw["data"][section]["source"] = "folder"
        raw["data"][section]["folder"] = {"path": "/data/own-folder"}
    return raw


BASE = base_raw()
LEAVES = leaves(Params, BASE)


def with_value(raw: dict, key: str, value: Any) -> dict:
    out = copy.deepcopy(raw)
    *parents, last = key.split(".")
    node = out
    for part in parents:
        node = node[part]
    node[last] = value
    return out


def refusal(key: str, value: Any) -> str:
    """The error for `key: value`; fails the test if it is accepted or names another key."""
    try:
        parse_params(with_value(BASE, key, value), "params.yaml")
    except ParamsError as error:
        message = str(error)
    else:
        raise AssertionError(f"{key} = {value!r} was accepted")
    assert key in message, f"{key} = {value!r}: the error does not name the key:\n{message}"
    return message


def test_the_walk_finds_every_section():
    keys = {leaf.key for leaf in LEAVES}
    parse_params(BASE)  # the base itself is valid
    assert len(keys) > 300
    for key in (
        "device",
        "students.lite0.epochs",
        "students.lite0_small.optim.lr",
        "data.labeled.folder.depth_scale",
        "data.unlabeled.render.effects.jpeg_probability",
        "export.parity_sizes",
        "zeroshot.roots",
    ):
        assert key in keys


@pytest.mark.parametrize(
    "key, value",
    [
        ("students.lite0.epochs", 0),
        ("students.lite0.epochs", "ten"),
        ("teacher.optim.lr", 0.0),
        ("teacher.optim.lr", math.nan),
        ("teacher.optim.lr", math.inf),
        ("teacher.optim.betas", [1.5, 0.999]),
        ("teacher.optim.betas", [math.nan, 0.9]),
        ("data.labeled.shard_size", -1),
        ("data.labeled.seed", -1),
        ("data.labeled.render.effects.blur_probability", 1.5),
        ("data.labeled.render.max_depth", math.inf),
        ("teacher.perturb.blur_sigma", [0.1, math.inf]),
        ("pseudo_labels.amp", "fp8"),
        ("pseudo_labels.flip_tta", {"on": True}),
        ("export.parity_sizes", [[0, -1]]),
        ("export.parity_seed", -1),
        ("data.labeled.urls", ["a.tar", 3]),
    ],
)
def test_known_bad_values_name_their_key(key, value):
    refusal(key, value)


def test_a_section_check_names_the_key_it_is_about():
    message = refusal("teacher.perturb.blur_sigma", [0.5, 0.1])
    assert "teacher.perturb.blur_sigma: " in message


def test_every_number_is_bounded():
    """A number without a lower bound takes negative sizes and counts: give it one."""
    unbounded = [
        leaf.key
        for leaf in LEAVES
        if leaf.annotation in (int, float)
        and not any(isinstance(m, at.Ge | at.Gt) for m in leaf.metadata)
        and not any(fnmatch.fnmatch(leaf.key, pattern) for pattern in UNBOUNDED)
    ]
    assert not unbounded, f"numbers without a lower bound: {unbounded}"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_key_refuses_wrong_values(data):
    leaf = data.draw(st.sampled_from(LEAVES), label="key")
    value = data.draw(bad_values(leaf), label=leaf.key)
    refusal(leaf.key, value)


def boundary_cases(leaf: Leaf) -> list[Any]:
    """The few values every leaf is checked with: another type, the nearest numbers outside its
    bounds, NaN and infinity for a float."""
    cases: list[Any] = [["a", "list"] if get_origin(leaf.annotation) is dict else {"a": "dict"}]
    if leaf.annotation in (int, float):
        ge, gt, le, lt = _bounds(leaf.metadata)
        step = 1 if leaf.annotation is int else 1e-6
        below = ge - step if ge is not None else gt
        above = le + step if le is not None else lt
        cases += [v for v in (below, above) if v is not None]
    if leaf.annotation is float:
        cases += [math.nan, math.inf, -math.inf]
    if get_origin(leaf.annotation) is Literal:
        cases.append("no-such-choice")
    return cases


def test_every_key_refuses_its_boundary_cases():
    for leaf in LEAVES:
        bad_values(leaf)  # raises for a type the strategies above do not know
        for value in boundary_cases(leaf):
            refusal(leaf.key, value)


def test_cli_refuses_bad_params_before_any_output_is_touched(tmp_path, capsys):
    """The student's output (and its resumable checkpoint) survives a bad params.yaml."""
    raw = with_value(smoke_raw(), "students.lite0.optim.lr", -1.0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "models/students/lite0"
    out.mkdir(parents=True)
    (out / "last.ckpt").write_text("step 40")
    (out / ".fingerprint.json").write_text('{"params": "older"}')
    before = {p: (p.read_text(), p.stat().st_mtime_ns) for p in out.iterdir()}
    argv = ["stage", "student", "--student", "lite0", "--root", str(tmp_path)]
    assert main([*argv, "--params", str(tmp_path / "params.yaml")]) == 2
    assert "students.lite0.optim.lr" in capsys.readouterr().err
    assert {p: (p.read_text(), p.stat().st_mtime_ns) for p in out.iterdir()} == before
    assert sorted(Path(tmp_path).rglob("*")) == sorted(
        [tmp_path / "params.yaml", tmp_path / "models", tmp_path / "models/students", out, *before]
    )


def test_cli_override_with_a_bad_value_is_refused_the_same_way(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(smoke_raw(), sort_keys=False))
    (tmp_path / "data/labeled/train").mkdir(parents=True)
    (tmp_path / "data/labeled/train/shard-000000.tar").write_text("samples")
    argv = ["stage", "labeled_data", "--root", str(tmp_path)]
    argv += ["--params", str(tmp_path / "params.yaml"), "-S", "data.labeled.n_train=.nan"]
    assert main(argv) == 2
    assert "data.labeled.n_train" in capsys.readouterr().err
    assert (tmp_path / "data/labeled/train/shard-000000.tar").read_text() == "samples"
