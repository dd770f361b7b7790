"""The YAML configuration file: environments, sections, and typed values with clear errors.

One file serves every part of Quarry. Its top level names environments (``default``,
``development``, ``test``, ``production``); the one in force is chosen by ``QUARRY_ENV``
(``development`` when unset) and laid over ``default`` key by key::

    default:
      api: {url: http://127.0.0.1:9000/foodstats, rate_limit: 100, pool: 4}
      server: {port: 8080}
    production:
      api: {url: https://api.example.org/v1/foodstats, first_id: 658330693}

A file without environment names is taken as ``default`` alone. The original paged-API
script kept its settings flat in each environment (``url: ...`` beside ``pool: ...``); those
keys are read as the ``api`` section, so its ``config.yml`` works as it is.

Each section is read by the module that owns it (``Section.get_*`` validate a value and name
the file, environment and key when it is wrong); unknown sections and keys are errors rather
than silently ignored, since a typo would otherwise quietly fall back to a default.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from quarry.errors import BadConfig

ENVIRONMENTS = ("default", "development", "test", "production")
ENV_VAR = "QUARRY_ENV"
CONFIG_VAR = "QUARRY_CONFIG"
DEFAULT_ENV = "development"
# Looked for in the working folder when no file is named (config.yml is the original's name).
DEFAULT_FILES = ("quarry.yml", "quarry.yaml", "config.yml")
# Sections owned by Quarry's parts; another part adds its name here.
SECTIONS = frozenset({"api", "server", "events", "pipeline", "pipelines", "store"})
# The original paged-API script's flat keys, read as the ``api`` section.
FLAT_API_KEYS = frozenset({"url", "rate_limit", "pool", "first_id", "last_id",
                           "results_per_page"})
MAX_BYTES = 1 << 20


def _hint(key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Section:
    """One section of the environment in force, e.g. ``api``; ``where`` names it in errors."""

    name: str
    values: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def _bad(self, key: str, want: str, value: Any) -> BadConfig:
        return BadConfig(f"{self.where}.{key} must be {want}, got {value!r}",
                         key=f"{self.name}.{key}")

    def check_keys(self, allowed: Iterable[str]) -> None:
        allowed = frozenset(allowed)
        for key in self.values:
            if key not in allowed:
                raise BadConfig(f"{self.where}: unknown key {key!r}{_hint(key, allowed)}; "
                                f"known keys: {', '.join(sorted(allowed))}",
                                key=f"{self.name}.{key}")

    def get_str(self, key: str, default: str | None = None) -> str | None:
        value = self.values.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self._bad(key, "text", value)
        return value

    def get_int(self, key: str, default: int | None = None, *, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        value = self.values.get(key, default)
        if value is None:
            return None
        # YAML reads `yes` as True, and True is an int to Python: refuse it explicitly.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "a whole number", value)
        if minimum is not None and value < minimum:
            raise self._bad(key, f"at least {minimum}", value)
        if maximum is not None and value > maximum:
            raise self._bad(key, f"at most {maximum}", value)
        return value

    def get_float(self, key: str, default: float | None = None, *,
                  minimum: float | None = None, positive: bool = False) -> float | None:
        value = self.values.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(key, "a number", value)
        if positive and not value > 0:
            raise self._bad(key, "a positive number", value)
        if minimum is not None and value < minimum:
            raise self._bad(key, f"at least {minimum}", value)
        return float(value)

    def get_bool(self, key: str, default: bool | None = None) -> bool | None:
        value = self.values.get(key, default)
        if value is not None and not isinstance(value, bool):
            raise self._bad(key, "true or false", value)
        return value


@dataclass(frozen=True)
class Config:
    env: str
    source: str | None  # the file read, or None when there was none
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def section(self, name: str) -> Section:
        if name not in SECTIONS:
            raise ValueError(f"{name!r} is not a known configuration section")
        where = f"{self.source or 'configuration'}: {self.env}.{name}"
        return Section(name, self.sections.get(name, {}), where)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _environment(body: Any, source: str, env: str) -> dict[str, Any]:
    """One environment's mapping with flat API keys folded into ``api``, checked."""
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise BadConfig(f"{source}: environment {env!r} must be a mapping of sections, "
                        f"got {type(body).__name__}")
    out: dict[str, Any] = {}
    flat: dict[str, Any] = {}
    for key, value in body.items():
        if not isinstance(key, str):
            raise BadConfig(f"{source}: {env}: keys must be text, got {key!r}")
        if key in FLAT_API_KEYS:
            flat[key] = value
        elif key in SECTIONS:
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise BadConfig(f"{source}: {env}.{key} must be a mapping, got "
                                f"{type(value).__name__}")
            out[key] = dict(value)
        else:
            raise BadConfig(f"{source}: {env}: unknown section {key!r}"
                            f"{_hint(key, SECTIONS | FLAT_API_KEYS)}; sections are "
                            f"{', '.join(sorted(SECTIONS))}", key=f"{env}.{key}")
    if flat:
        if "api" in out and set(flat) & set(out["api"]):
            dup = sorted(set(flat) & set(out["api"]))[0]
            raise BadConfig(f"{source}: {env}: {dup!r} is set both flat and under api")
        out["api"] = {**out.get("api", {}), **flat}
    return out


def find_config(path: Path | str | None = None,
                environ: Mapping[str, str] | None = None) -> Path | None:
    environ = os.environ if environ is None else environ
    if path is not None:
        return Path(path)
    if environ.get(CONFIG_VAR):
        return Path(environ[CONFIG_VAR])
    for name in DEFAULT_FILES:
        if Path(name).is_file():
            return Path(name)
    return None


def parse_config(text: str, source: str, env: str) -> Config:
    """A configuration from YAML text; ``source`` names it in error messages."""
    if env not in ENVIRONMENTS:
        raise BadConfig(f"unknown environment {env!r} (from {ENV_VAR}): use one of "
                        f"{', '.join(ENVIRONMENTS)}")
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BadConfig(f"{source}: not valid YAML{at}: {e.problem}") from None
    except yaml.YAMLError as e:
        raise BadConfig(f"{source}: not valid YAML: {e}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise BadConfig(f"{source}: the top level must be a mapping of environments "
                        f"({', '.join(ENVIRONMENTS)}), got {type(doc).__name__}")
    envs = [k for k in doc if k in ENVIRONMENTS]
    if envs and len(envs) != len(doc):
        other = next(k for k in doc if k not in ENVIRONMENTS)
        raise BadConfig(f"{source}: top-level key {other!r} is not an environment"
                        f"{_hint(str(other), ENVIRONMENTS)}; with environments, every "
                        f"top-level key must be one of {', '.join(ENVIRONMENTS)}")
    if not envs:
        doc = {"default": doc}
    merged = _environment(doc.get("default"), source, "default")
    if env != "default":
        merged = _merge(merged, _environment(doc.get(env), source, env))
    return Config(env=env, source=source, sections=merged)


def load_config(path: Path | str | None = None, env: str | None = None,
                environ: Mapping[str, str] | None = None) -> Config:
    """The configuration in force: from ``path``, ``$QUARRY_CONFIG`` or a file in the working
    folder (none is fine: every section is then empty), for ``env`` or ``$QUARRY_ENV``."""
    environ = os.environ if environ is None else environ
    env = env or environ.get(ENV_VAR) or DEFAULT_ENV
    found = find_config(path, environ)
    if found is None:
        return parse_config("", "configuration", env)
    try:
        if found.stat().st_size > MAX_BYTES:
            raise BadConfig(f"{found}: a configuration file over {MAX_BYTES} bytes is surely "
                            "not one")
        text = found.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadConfig(f"configuration file {found} does not exist") from None
    except UnicodeDecodeError:
        raise BadConfig(f"{found}: not UTF-8 text") from None
    except IsADirectoryError:
        raise BadConfig(f"configuration file {found} is a folder") from None
    return parse_config(text, str(found), env)
