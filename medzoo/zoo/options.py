"""A zoo model's options: read from its builder, shown by ``medzoo models NAME``, checked for ``--option``.

An option is a keyword parameter of the builder (or of the shared builder a thin variant forwards
to, see :func:`medzoo.zoo.registry.register`): its default and type come from the signature, its
description from the builder's numpy-style ``Parameters`` section. ``multi_label`` is set by
``medzoo train`` from the dataset and ``name`` by the variant, so neither is a user option.

Values given as text (``--option widths=16,32,64``) are parsed by the option's type: ``int``,
``float``, ``bool`` (true/false), ``none``, a comma-separated tuple, or a string. Tuples are
kept as lists, as ``config.json`` stores them, so a run's options compare equal after a round
trip through JSON.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

from medzoo.errors import InputError
from medzoo.zoo import registry

PRESET = "preset"
RESERVED = ("multi_label", "name")  # set by `train` from the dataset / by the variant itself
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


@dataclasses.dataclass(frozen=True)
class Option:
    """One builder option: ``kind`` is ``int``, ``float``, ``bool``, ``str`` or ``tuple``."""

    name: str
    default: object
    kind: str
    allows_none: bool
    element: str = "int"  # the type of a tuple's items
    doc: str = ""

    @property
    def type_name(self) -> str:
        shown = f"tuple of {self.element}" if self.kind == "tuple" else self.kind
        return f"{shown} | None" if self.allows_none else shown


def _kind_of(annotation: str, default) -> tuple[str, bool, str]:
    """``(kind, allows_none, element)`` from an annotation string and/or the default value."""
    text = str(annotation or "")
    allows_none = default is None or "None" in text or "Optional" in text
    if isinstance(default, bool) or re.search(r"\bbool\b", text):
        return "bool", allows_none, "int"
    if isinstance(default, (tuple, list)) or text.startswith(("tuple", "list", "Sequence")):
        items = list(default or [])
        element = "float" if any(isinstance(v, float) for v in items) or "float" in text else "int"
        return "tuple", allows_none, element
    for kind, python in (("int", int), ("float", float), ("str", str)):
        if isinstance(default, python) or re.search(rf"\b{kind}\b", text):
            return kind, allows_none, "int"
    return "str", allows_none, "int"  # e.g. a path given as ``weights=None``


def _parameter_docs(func) -> dict[str, str]:
    """Descriptions of the numpy-style ``Parameters`` section of ``func``'s docstring."""
    doc = inspect.getdoc(func) or ""
    match = re.search(r"^Parameters\n-+\n(.*?)(?:\n\S[^\n]*\n-+\n|\Z)", doc, re.S | re.M)
    if not match:
        return {}
    docs, current = {}, []
    for line in match.group(1).splitlines():
        head = re.match(r"^(\w[\w, ]*?)\s*:", line)
        if head and not line.startswith(" "):
            current = [n.strip() for n in head.group(1).split(",")]
            for name in current:
                docs[name] = ""
        elif line.strip() and not line.startswith(" "):
            break  # prose after the list (e.g. "Raises ..." without an underline)
        elif line.strip() and current:
            for name in current:
                docs[name] = f"{docs[name]} {line.strip()}".strip()
    return docs


def options_of(name: str) -> list[Option]:
    """The options of zoo model ``name``, in signature order.

    Raises ``KeyError`` for an unknown model (listing the known ones).
    """
    entry = registry.get(name)
    source = entry.options_from or entry.builder
    hidden = set(RESERVED) | set(entry.fixed) | {"input_shape", "num_classes"}
    docs = {**_parameter_docs(source), **_parameter_docs(entry.builder)}
    found = []
    for param in inspect.signature(source).parameters.values():
        if param.name in hidden or param.default is inspect.Parameter.empty:
            continue
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        default = list(param.default) if isinstance(param.default, tuple) else param.default
        kind, allows_none, element = _kind_of(param.annotation, param.default)
        found.append(Option(param.name, default, kind, allows_none, element,
                            docs.get(param.name, "")))
    return found


def format_value(value) -> str:
    """A value as ``--option`` takes it: ``16,32,64``, ``true``, ``none``, ``0.2``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    return str(value)


def _scalar(text: str, kind: str):
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    raise ValueError(text)


def _coerce(option: Option, value):
    """``value`` (text from the command line, or a Python value) as ``option`` takes it.

    Raises ``ValueError`` when it is not of the option's type.
    """
    if isinstance(value, str) and option.kind != "str":
        text = value.strip()
        if text.lower() in ("none", "null"):
            value = None
        elif option.kind == "bool":
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError(value)
            value = text.lower() in _TRUE
        elif option.kind == "tuple":
            value = [_scalar(part.strip(), option.element) for part in text.split(",")]
        else:
            value = _scalar(text, option.kind)
    elif isinstance(value, str) and value.strip().lower() in ("none", "null") and option.allows_none:
        value = None
    if value is None:
        if not option.allows_none:
            raise ValueError(value)
        return None
    if option.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(value)
        return value
    if option.kind == "tuple":
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        wanted = (int,) if option.element == "int" else (int, float)
        if not items or any(isinstance(v, bool) or not isinstance(v, wanted) for v in items):
            raise ValueError(value)
        return [float(v) if option.element == "float" else v for v in items]
    if option.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(value)
        return value
    if option.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(value)
        return float(value)
    if not isinstance(value, str):
        raise ValueError(value)
    return value


def _example(option: Option) -> str:
    return {"int": "an integer", "float": "a number", "bool": "true or false",
            "str": "a string", "tuple": f"comma-separated {option.element}s, e.g. "
                                        f"{option.name}={format_value(option.default or [16, 32])}"
            }[option.kind] + (" or none" if option.allows_none else "")


def resolve(name: str, given: dict | None) -> dict:
    """The builder keyword arguments of zoo model ``name`` for the options ``given``.

    ``given`` maps option names to values, as text (``"16,32,64"``) or Python values; the key
    ``preset`` names one of the model's presets, whose values the other keys override. Only the
    options given (or set by the preset) are returned; the builder's defaults fill the rest.

    Raises
    ------
    InputError
        An unknown model, an unknown option (naming the valid ones), a value that is not of the
        option's type, or an unknown preset.
    """
    try:
        entry = registry.get(name)
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from exc
    given = dict(given or {})
    known = {o.name: o for o in options_of(name)}
    valid = list(known) + ([PRESET] if entry.presets else [])
    resolved = {}
    if PRESET in given and entry.presets:
        preset = given.pop(PRESET)
        if preset not in entry.presets:
            raise InputError(f"Option `{PRESET}` of model {name!r} must be one of: "
                             f"{', '.join(entry.presets)}. Received: {PRESET}={preset}")
        resolved.update({k: list(v) if isinstance(v, tuple) else v
                         for k, v in entry.presets[preset].items()})
    for key, value in given.items():
        if key not in known:
            raise InputError(f"Option `{key}` must be one of: {', '.join(valid) or '(none)'} "
                             f"(model {name!r}). Received: {key}={format_value(value)}")
        try:
            resolved[key] = _coerce(known[key], value)
        except (TypeError, ValueError):
            raise InputError(f"Option `{key}` of model {name!r} must be {_example(known[key])}. "
                             f"Received: {key}={format_value(value)}") from None
    return resolved


def parse_pairs(pairs, models) -> dict[str, dict[str, str]]:
    """``--option`` texts → ``{model: {key: text}}`` for each of ``models``.

    ``KEY=VALUE`` applies to every model given; ``MODEL.KEY=VALUE`` to that model alone. Values
    stay text here; :func:`resolve` parses them by each option's type.

    Raises
    ------
    InputError
        A text without ``=``, or a ``MODEL.`` prefix naming a model not given.
    """
    models = list(models)
    parsed: dict[str, dict[str, str]] = {m: {} for m in models}
    for text in pairs or []:
        key, sep, value = str(text).partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--option must be KEY=VALUE (or MODEL.KEY=VALUE). Received: {text}")
        scope, dot, bare = key.rpartition(".")
        if dot and scope not in parsed:
            raise InputError(f"--option {text}: `{scope}` must be one of the models given: "
                             f"{', '.join(models)}. Received: {scope}")
        for model in ([scope] if dot else models):
            parsed[model][bare] = value
    return parsed


def describe_options(name: str) -> dict:
    """What ``medzoo models NAME`` shows: task, description, options and presets of one model."""
    entry = registry.get(name)
    return {
        "name": name, "task": entry.task, "description": entry.description,
        "options": [{"name": o.name, "type": o.type_name, "default": o.default, "doc": o.doc}
                    for o in options_of(name)],
        "presets": {k: {o: list(v) if isinstance(v, tuple) else v for o, v in p.items()}
                    for k, p in entry.presets.items()},
    }


def render_options(info: dict) -> str:
    """:func:`describe_options` as text for the terminal."""
    lines = [f"{info['name']} ({info['task']}): {info['description']}", ""]
    verb = "medzoo gan train" if info["task"] == "augmentation" else f"medzoo train {info['name']}"
    if info["options"]:
        lines.append(f"options ({verb} --option KEY=VALUE):" if info["task"] != "augmentation"
                     else "options (builder keywords):")
        width = max(len(o["name"]) for o in info["options"])
        types = max(len(o["type"]) for o in info["options"])
        defaults = max(len(format_value(o["default"])) for o in info["options"])
        for o in info["options"]:
            lines.append(f"  {o['name']:<{width}}  {o['type']:<{types}}  default "
                         f"{format_value(o['default']):<{defaults}}  {o['doc']}".rstrip())
    else:
        lines.append("options: none")
    if info["presets"]:
        lines += ["", "presets (--option preset=NAME):"]
        width = max(len(k) for k in info["presets"])
        for key, values in info["presets"].items():
            shown = ", ".join(f"{k}={format_value(v)}" for k, v in values.items()) or "the defaults"
            lines.append(f"  {key:<{width}}  {shown}")
    return "\n".join(lines)
