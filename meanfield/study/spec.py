"""Experiment configs as compositions of the engine's frozen configs, and ``--set`` on them.

An experiment's config is a frozen dataclass whose fields are the engine's own objects — a
:class:`DataSpec` (a registered distribution name, or ``module:attribute``, with its parameters),
a :class:`ModelSpec`, ``flow: FlowConfig``, ``train: TrainConfig`` — plus the few parameters that
are the experiment's own. One syntax reaches every field, from the CLI and the API alike:

- ``flow.tau=0.1``, ``train.lr=0.05``: a field of a nested config (dotted keys, any depth);
- ``data=moons``: pick the distribution (its parameters reset to the new one's defaults; the
  name already in use keeps its parameters);
- ``data.noise=0.1``: a parameter of the distribution (parsed by the type of its default);
- ``model=deep``, ``model.depth=4``: the same for the model;
- tuples are comma-separated: ``lams=1e-2,1e-3`` (one element: ``lams=1e-2,``); ``none`` is None.

:func:`describe` lists every reachable key with its type, default and a one-line meaning taken
from the ``Attributes:`` section of the owning class's docstring.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, Mapping, Optional

__all__ = ["DataSpec", "ModelSpec", "apply_overrides", "describe", "to_dict", "from_dict",
           "parse_value", "parse_literal", "TUPLE_SYNTAX"]

TUPLE_SYNTAX = "comma-separated, e.g. 1e-2,1e-3 (one element: 1e-2,)"


def _freeze(params: Optional[Mapping[str, Any]]) -> tuple:
    if params is None:
        return ()
    if isinstance(params, tuple):
        params = dict(params)
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of name -> value, got {type(params).__name__}")
    for k in params:
        if not isinstance(k, str) or not k.isidentifier():
            raise ValueError(f"parameter names must be identifiers, got {k!r}")
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))


@dataclass(frozen=True)
class _Spec:
    name: str
    params: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"{type(self).__name__}.name must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "params", _freeze(self.params))

    @property
    def kwargs(self) -> dict:
        """The parameters as a dict (a copy)."""
        return dict(self.params)

    def with_params(self, **params) -> "_Spec":
        """A copy with these parameters added or replaced."""
        return replace(self, params={**self.kwargs, **params})

    def get(self, key: str, default=None):
        return self.kwargs.get(key, default)


@dataclass(frozen=True)
class DataSpec(_Spec):
    """A distribution by name with its parameters.

    Attributes:
        name: a registered distribution (``meanfield.data.list_distributions()``) or
            ``module:attribute`` naming a factory in the user's code.
        params: the factory's keyword arguments (a mapping; stored sorted, hashable).
    """

    def build(self):
        """The distribution (``get_distribution(name, **params)``)."""
        from ..data.registry import get_distribution
        return get_distribution(self.name, **self.kwargs)

    def defaults(self) -> dict:
        from ..data.registry import describe_distribution
        return describe_distribution(self.name)["params"]


@dataclass(frozen=True)
class ModelSpec(_Spec):
    """A model by name with its parameters.

    Attributes:
        name: a registered model (``meanfield.models.list_models()``).
        params: its keyword arguments (width, depth, activation, ...).
    """

    def defaults(self) -> dict:
        from ..models import describe_model
        return describe_model(self.name)["params"]


# ------------------------------------------------------------------ parsing values
def parse_literal(text: str):
    """A value of unknown type from text: none/true/false, int, float, a tuple (commas), or str."""
    t = text.strip()
    if "," in t:
        return tuple(parse_literal(x) for x in t.split(",") if x.strip())
    low = t.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    if re.fullmatch(r"[+-]?\d+", t):
        return int(t)
    try:
        return float(t)
    except ValueError:
        return t


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def parse_value(text: Any, tp, key: str):
    """Parse ``text`` as type ``tp`` (Optional, unions, tuples, bool, int, float, str).

    Non-string values are checked and passed through (ints become floats where a float is wanted).

    Raises:
        ValueError: naming ``key``, the expected type and the value.
    """
    if tp is Any:
        return parse_literal(text) if isinstance(text, str) else text
    if _is_union(tp):
        args = typing.get_args(tp)
        if (text is None or (isinstance(text, str) and text.strip().lower() in ("none", "null"))) \
                and type(None) in args:
            return None
        errors = []
        # tuples last so that "0.1" is a float when float | tuple[float, ...] is allowed
        for a in sorted((a for a in args if a is not type(None)),
                        key=lambda a: typing.get_origin(a) in (tuple, list)):
            try:
                return parse_value(text, a, key)
            except (ValueError, TypeError) as e:
                errors.append(str(e))
        raise ValueError(errors[-1] if errors else f"{key}: cannot parse {text!r}")
    origin = typing.get_origin(tp)
    if origin in (tuple, list) or tp in (tuple, list):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        if isinstance(text, str):
            items = [x for x in text.split(",") if x.strip()]
        elif isinstance(text, (tuple, list)):
            items = list(text)
        else:
            raise ValueError(f"{key} expects a tuple ({TUPLE_SYNTAX}), got {text!r}")
        return tuple(parse_value(x.strip() if isinstance(x, str) else x, inner, key) for x in items)
    if tp is bool:
        if isinstance(text, bool):
            return text
        if isinstance(text, str) and text.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(text, str) and text.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key} expects true/false, got {text!r}")
    if tp is int:
        if isinstance(text, bool):
            raise ValueError(f"{key} expects an integer, got {text!r}")
        try:
            v = float(text) if isinstance(text, str) else text
        except ValueError:
            raise ValueError(f"{key} expects an integer, got {text!r}") from None
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v):
            raise ValueError(f"{key} expects an integer, got {text!r}")
        if abs(v) > 2 ** 62:
            raise ValueError(f"{key} = {text!r} is too large (at most 2**62 in magnitude)")
        return int(v)
    if tp is float:
        if isinstance(text, bool):
            raise ValueError(f"{key} expects a number, got {text!r}")
        try:
            v = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"{key} expects a number, got {text!r}") from None
        # 'nan' as text (--set, --grid) is a typo or a bad value; a float NaN passed through the
        # API reaches the experiment, which fails the point (a sweep records it as failed)
        if math.isnan(v) and isinstance(text, str):
            raise ValueError(f"{key} expects a number, got {text!r} (NaN is not a parameter value)")
        return v
    if tp is str:
        if not isinstance(text, str):
            raise ValueError(f"{key} expects a string, got {text!r}")
        return text
    return text


# ------------------------------------------------------------------ overrides
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _spec_param(spec: _Spec, pname: str, value, key: str):
    try:
        defaults = spec.defaults()
    except ValueError:
        defaults = {}
    if defaults and pname not in defaults:
        raise ValueError(f"unknown parameter {pname!r} for {type(spec).__name__[:-4].lower()} "
                         f"{spec.name!r} (key {key!r}); its parameters: {', '.join(defaults) or '(none)'}")
    d = defaults.get(pname)
    if isinstance(value, str) and "," in value:
        return parse_literal(value)                     # a tuple (per-layer widths, masses, ...)
    if isinstance(d, bool):
        return parse_value(value, bool, key)
    if isinstance(d, int):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return parse_value(value, int, key)         # 1.5, 1e999, "e": "key expects an integer"
        return value
    if isinstance(d, float):
        return parse_value(value, float, key) if isinstance(value, (str, int, float)) else value
    if isinstance(value, str) and not isinstance(d, str):
        return parse_literal(value)
    return value


def _set(obj, path: list[str], value, key: str):
    """A copy of dataclass ``obj`` with the field at ``path`` set to ``value`` (parsed)."""
    if isinstance(obj, _Spec):
        if len(path) != 1:
            raise ValueError(f"key {key!r} is too deep: {type(obj).__name__} parameters are flat")
        return obj.with_params(**{path[0]: _spec_param(obj, path[0], value, key)})
    if not is_dataclass(obj):
        raise ValueError(f"key {key!r}: {type(obj).__name__} has no fields to set")
    names = [f.name for f in fields(obj)]
    head = path[0]
    if head not in names:
        where = type(obj).__name__
        raise ValueError(f"unknown parameter {key!r} ({head!r} is not a field of {where}); "
                         f"valid: {', '.join(names)} (see `meanfield list -v`)")
    cur = getattr(obj, head)
    if len(path) == 1:
        tp = _hints(type(obj))[head]
        if isinstance(cur, _Spec) or (isinstance(tp, type) and issubclass(tp, _Spec)):
            cls = type(cur) if isinstance(cur, _Spec) else tp
            if isinstance(value, _Spec):
                new = value
            elif isinstance(value, str) and isinstance(cur, _Spec) and value.strip() == cur.name:
                new = cur  # the same name keeps the configured parameters
            elif isinstance(value, str):
                try:  # an unknown name is refused here, naming the key, not at run time
                    new = cls(value.strip())
                    new.defaults()
                except (ValueError, TypeError) as e:
                    raise ValueError(f"{key}={value!r}: {e}") from None
            else:
                raise ValueError(f"{key} expects a name, got {value!r}")
        else:
            new = parse_value(value, tp, key)
    else:
        if cur is None:
            raise ValueError(f"key {key!r}: {head} is None here; set {head} first")
        new = _set(cur, path[1:], value, key)
    try:
        return replace(obj, **{head: new})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{key}={value!r}: {e}") from None


def apply_overrides(cfg, overrides: Optional[Mapping[str, Any]] = None):
    """A copy of the frozen config ``cfg`` with dotted-key overrides applied.

    Keys that pick a spec (``data=NAME``) are applied before its parameters (``data.x=1``),
    whatever their order. String values are parsed by the field's type.

    Raises:
        ValueError: an unknown key (listing the valid ones) or a value of the wrong type, naming
            the key.
    """
    items = list((overrides or {}).items())
    for k, _ in items:
        if not isinstance(k, str) or not k or any(not p.isidentifier() for p in k.split(".")):
            raise ValueError(f"bad parameter name {k!r}: use dotted identifiers such as flow.dt")
    items.sort(key=lambda kv: kv[0].count("."))
    for k, v in items:
        cfg = _set(cfg, k.split("."), v, k)
    return cfg


# ------------------------------------------------------------------ describing
def _attribute_docs(cls) -> dict:
    """``name -> first line`` from the ``Attributes:`` section of a class docstring."""
    out: dict = {}
    for klass in reversed(getattr(cls, "__mro__", (cls,))):
        doc = inspect.getdoc(klass) or ""
        m = re.search(r"^Attributes:\s*$(.*?)(?=^\S|\Z)", doc, re.M | re.S)
        if not m:
            continue
        cur = None
        for line in m.group(1).splitlines():
            mm = re.match(r"^\s{2,6}([\w, ]+?):\s*(.*)$", line)
            if mm and not line.startswith(" " * 7):
                names = [n.strip() for n in mm.group(1).split(",")]
                cur = names
                for n in names:
                    out[n] = mm.group(2).strip()
            elif cur and line.strip() and not out[cur[0]].endswith("."):
                for n in cur:
                    out[n] = (out[n] + " " + line.strip()).strip()
    return out


def _tpname(tp) -> str:
    s = getattr(tp, "__name__", None) if not typing.get_args(tp) else None
    return s or str(tp).replace("typing.", "").replace("NoneType", "None")


def describe(cfg, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Every reachable key of a config instance: ``(key, type, default, meaning)``.

    Nested dataclasses are flattened with dotted keys; a spec lists its name (``data``) and each
    of its parameters (``data.noise``) with the current value.
    """
    rows = []
    docs = _attribute_docs(type(cfg))
    hints = _hints(type(cfg))
    for f in fields(cfg):
        key = prefix + f.name
        val = getattr(cfg, f.name)
        meaning = docs.get(f.name, "")
        if isinstance(val, _Spec):
            kind = "distribution" if isinstance(val, DataSpec) else "model"
            rows.append((key, f"{kind} name", val.name, meaning))
            try:
                defaults = val.defaults()
            except ValueError:
                defaults = {}
            for pn, pd in {**defaults, **val.kwargs}.items():
                cur = val.kwargs.get(pn, pd)
                rows.append((f"{key}.{pn}", type(cur).__name__ if cur is not None else "any", cur,
                             f"parameter of {kind} {val.name!r}"))
        elif is_dataclass(val):
            rows.extend(describe(val, key + "."))
        else:
            tp = _tpname(hints.get(f.name, type(val)))
            if "tuple" in tp:
                meaning = (meaning + f" [tuple: {TUPLE_SYNTAX}]").strip()
            rows.append((key, tp, val, meaning))
    return rows


# ------------------------------------------------------------------ (de)serialising
def to_dict(cfg) -> dict:
    """A JSON-able dict of a config (specs as ``{"name", "params"}``, tuples as lists)."""
    if isinstance(cfg, _Spec):
        return {"name": cfg.name, "params": {k: _plain(v) for k, v in cfg.params}}
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = to_dict(v) if (is_dataclass(v) and not isinstance(v, type)) else _plain(v)
    return out


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return v


def from_dict(cls, d: Mapping[str, Any]):
    """Rebuild a config of type ``cls`` from :func:`to_dict` output (e.g. a run's config.json).

    Raises:
        ValueError: a key the config does not have or a value of the wrong type.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"expected a mapping for {cls.__name__}, got {type(d).__name__}")
    hints = _hints(cls)
    names = {f.name for f in fields(cls)}
    kw = {}
    for k, v in d.items():
        if k not in names:
            raise ValueError(f"unknown field {k!r} for {cls.__name__}")
        tp = hints[k]
        if isinstance(tp, type) and issubclass(tp, _Spec):
            if not isinstance(v, Mapping) or "name" not in v:
                raise ValueError(f"{k}: expected {{'name', 'params'}}, got {v!r}")
            kw[k] = tp(v["name"], v.get("params") or {})
        elif isinstance(tp, type) and is_dataclass(tp):
            kw[k] = from_dict(tp, v)
        else:
            kw[k] = parse_value(tuple(v) if isinstance(v, list) else v, tp, k)
    return cls(**kw)


def check_config(cls) -> None:
    """Validate that an experiment config type is a frozen dataclass with defaults everywhere.

    Raises:
        ValueError: otherwise, naming the problem.
    """
    if not (isinstance(cls, type) and is_dataclass(cls)):
        raise ValueError(f"an experiment config must be a dataclass type, got {cls!r}")
    if not cls.__dataclass_params__.frozen:
        raise ValueError(f"{cls.__name__} must be frozen (@dataclass(frozen=True))")
    missing = [f.name for f in fields(cls) if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{cls.__name__}: every field needs a default; missing: {', '.join(missing)}")
