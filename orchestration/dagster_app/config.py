"""The launchpad's params overrides as a typed `dg.Config`, generated from the params schema.

`ParamsOverrides` has the shape of params.yaml (orchestration.params.schema.Params) with every field
optional: the launchpad offers each key with its type and description, and Dagster rejects an
unknown key (`teacher.epoch`) or a wrong type (`epochs: ten`) before the run is launched,
naming the key. Values are then validated by the params schema itself (ranges, choices,
backbone names) when the run starts, before any stage runs. A field left empty (null) keeps
the value of params.yaml or the chosen profile.
"""

from __future__ import annotations

import json
import types
from functools import cache
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, create_model

from orchestration.params.schema import Params

_SCALARS = (bool, int, float, str)


class _Overrides(dg.Config):
    """Unknown keys are errors also when overrides are given in code, as in the launchpad."""

    model_config = ConfigDict(extra="forbid")


def _config_type(annotation: Any) -> Any:
    """The Dagster-typed counterpart of one params field's annotation."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    origin = get_origin(annotation)
    args = [a for a in get_args(annotation) if a is not type(None)]
    if origin in (Union, types.UnionType):
        return _config_type(args[0]) if len(args) == 1 else Any
    if origin is Literal:
        kinds = {type(value) for value in args}
        return kinds.pop() if len(kinds) == 1 else Any
    if origin is list:
        inner = _config_type(args[0]) if args else Any
        return list[inner] if inner in _SCALARS else Any
    if origin is dict:
        return dict[str, _config_type(args[1])]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return overrides_model(annotation)
    return annotation if annotation in _SCALARS else Any


def _optional(annotation: Any) -> Any:
    return Optional[annotation]  # noqa: UP045 - the form Dagster's config conversion reads


@cache
def overrides_model(model: type[BaseModel]) -> type[_Overrides]:
    """A dg.Config with `model`'s fields, each optional (None: not overridden)."""
    fields = {
        name: (
            _optional(_config_type(field.annotation)),
            Field(None, description=field.description),
        )
        for name, field in model.model_fields.items()
    }
    return create_model(f"{model.__name__}Overrides", __base__=_Overrides, **fields)


ParamsOverrides = overrides_model(Params)


def override_items(overrides: dg.Config) -> list[str]:
    """The set fields as `dotted.key=value` (JSON values), the form every runner applies."""
    return [f"{key}={json.dumps(value)}" for key, value in _flatten(overrides.model_dump(), "")]


def _flatten(node: dict, prefix: str) -> list[tuple[str, Any]]:
    items = []
    for key, value in node.items():
        if value is None:
            continue
        if "." in key:  # a mapping's own key (a student's name) cannot hold the separator
            where = prefix.rstrip(".") or "the top level"
            raise ValueError(
                f"overrides: key {key!r} under {where} contains '.', the separator of dotted keys"
            )
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items
