"""``--model-arg KEY=VALUE``: constructor arguments from the command line, typed from the signature.

The architecture's constructor (:func:`fnc.models.model_arguments`) says what each key is: its
annotation (or, without one, its default's type) turns the text into a value, so
``separate=false``, ``fuse=add``, ``attention=sab`` and ``non_local=0,2,3,0`` reach
``create_model`` as ``False``, ``"add"``, ``"sab"`` and ``(0, 2, 3, 0)``.

>>> parse_model_args(["separate=false", "sab_reduction=4"], "fnc_resnet50")
{'separate': False, 'sab_reduction': 4}
"""

from __future__ import annotations

import argparse
import collections.abc
import difflib
import inspect
import types
import typing
from collections.abc import Sequence
from typing import Any

from fnc.cli._common import UsageError
from fnc.models import is_model, model_arguments, resolve_source, split_model_name_tag

__all__ = ["add_model_args", "convert_value", "model_args_of", "parse_model_args"]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
# Arguments the commands set themselves: train sizes the classifier from the data.
_SET_BY_COMMAND = {"num_classes": "the classifier's size comes from the training data (or the checkpoint)"}
_SEQUENCES = (tuple, list, collections.abc.Sequence)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--model-arg KEY=VALUE``, repeatable, read by :func:`model_args_of`."""
    parser.add_argument(
        "--model-arg",
        dest="model_arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a constructor argument of the architecture, repeatable: separate=false, fuse=add, "
        "attention=sab, non_local=0,2,3,0 (see fnc-reid info MODEL --json for what it takes)",
    )


def _describe(annotation: Any) -> str:
    """How to write a value of ``annotation``, for error messages."""
    origin, targs = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [_describe(t) for t in targs if t is not type(None)]
        return " or ".join(kinds + (["none"] if type(None) in targs else []))
    if origin is typing.Literal:
        return "one of " + ", ".join(str(v) for v in targs)
    if origin in _SEQUENCES:
        item = targs[0] if targs else str
        return f"comma-separated {_describe(item)} values (e.g. 0,2,3,0)"
    names = {bool: "bool (true/false, yes/no, 1/0)", int: "int", float: "float", str: "str"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def convert_value(text: str, annotation: Any, default: Any = inspect.Parameter.empty) -> Any:
    """``text`` as a value of ``annotation`` (without one: of the default's type; else a string).

    Args:
        text: what was typed after ``KEY=``.
        annotation: the parameter's resolved annotation, or ``inspect.Parameter.empty``.
        default: the parameter's default.

    Raises:
        ValueError: ``text`` is not a value of that type.

    >>> from collections.abc import Sequence
    >>> convert_value("0,2,3,0", Sequence[int]), convert_value("none", str | None), convert_value("no", bool)
    ((0, 2, 3, 0), None, False)
    """
    if annotation is inspect.Parameter.empty:
        annotation = str if default is inspect.Parameter.empty or default is None else type(default)
    origin, targs = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if type(None) in targs and text.strip().lower() == "none":
            return None
        for option in targs:
            if option is type(None):
                continue
            try:
                return convert_value(text, option)
            except ValueError:
                continue
        raise ValueError(text)
    if origin is typing.Literal:
        for option in targs:
            if str(option) == text:
                return option
        raise ValueError(text)
    if origin in _SEQUENCES or annotation in _SEQUENCES:
        items = [t for t in (part.strip() for part in text.split(",")) if t]
        if origin is tuple and targs and targs[-1] is not Ellipsis:
            if len(items) != len(targs):
                raise ValueError(text)
            return tuple(convert_value(t, a) for t, a in zip(items, targs))
        item = targs[0] if targs else str
        values = [convert_value(t, item) for t in items]
        return values if origin is list or annotation is list else tuple(values)
    if annotation is bool:
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(text)
    if annotation in (int, float):
        return annotation(text.strip())
    if annotation is str:
        return text
    raise ValueError(f"{annotation} cannot be given on the command line")


def parse_model_args(pairs: Sequence[str], architecture: str) -> dict[str, Any]:
    """Typed constructor arguments of ``architecture`` from ``KEY=VALUE`` strings.

    Args:
        pairs: the ``--model-arg`` values, in order (a later key wins).
        architecture: ``arch`` or ``arch.tag``, whose constructor types the values.

    Raises:
        UsageError: no ``=``, an unknown key (close names suggested), a key the command sets
            itself, or a value that is not of the argument's type (key, value and type named).

    >>> parse_model_args(["attention=sab"], "baseline_resnet50")
    {'attention': 'sab'}
    """
    params = model_arguments(architecture)
    arch = split_model_name_tag(architecture)[0]
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"--model-arg {pair!r}: expected KEY=VALUE, e.g. --model-arg separate=false")
        if key in _SET_BY_COMMAND:
            raise UsageError(f"--model-arg {key}: not settable here; {_SET_BY_COMMAND[key]}")
        if key not in params:
            accepted = [k for k in params if k not in _SET_BY_COMMAND]
            close = difflib.get_close_matches(key, accepted, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UsageError(
                f"--model-arg {key}: {arch} has no argument {key!r}{hint} (it takes: {', '.join(accepted)})"
            )
        param = params[key]
        try:
            out[key] = convert_value(text, param.annotation, param.default)
        except ValueError:
            raise UsageError(
                f"--model-arg {key}={text}: {text!r} is not a valid value for {key}, expected {_describe(param.annotation)}"
            ) from None
    return out


def model_args_of(args: argparse.Namespace, model_name: str | None, checkpoint: str | None = None) -> dict[str, Any]:
    """The ``--model-arg`` values of a command, typed for the model it creates.

    Args:
        args: the parsed command line (``args.model_arg``).
        model_name: the registered name, ``hf-hub:`` id or ``None`` with a checkpoint folder.
        checkpoint: the ``--checkpoint`` path, whose config names the architecture.

    Returns:
        Keyword arguments for :func:`fnc.create_model` (empty without ``--model-arg``).

    >>> model_args_of(argparse.Namespace(model_arg=["fuse=add"]), "fnc_resnet50")
    {'fuse': 'add'}
    """
    pairs = getattr(args, "model_arg", None) or []
    if not pairs:
        return {}
    if model_name is not None and is_model(model_name):
        architecture = model_name
    else:
        # A checkpoint folder or Hub repo names its architecture in its config.json.
        architecture = resolve_source(model_name, False, checkpoint).cfg.architecture
    return parse_model_args(pairs, architecture)
