"""YAML configs with one place for defaults, inheritance through `_base_`, and dotted overrides.

Every key that may appear in any config is declared in `cfgs/defaults.yaml`. An experiment file
names its parent with `_base_` (a path relative to itself) and states only what differs. Unknown
keys and values of the wrong type fail at load time with a message that names the key.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

DEFAULTS_PATH = Path(__file__).resolve().parent.parent / "cfgs" / "defaults.yaml"
BASE_KEY = "_base_"


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key or file."""


class FrozenConfigError(TypeError):
    """Code wrote to a loaded config (a programming error, not a user's: it keeps its
    traceback)."""


class Config(dict):
    """A nested dict whose keys can also be read as attributes (`cfg.stage1.lr`). Read-only once
    loaded (`freeze`, done by load_config and replaced): a changed copy comes from `replaced`.
    Lists inside stay Python lists (YAML-safe); `to_dict` copies them, so nothing read from a
    frozen config writes back into it."""

    _frozen = False

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}' (keys: {sorted(self)})") from None

    def _writable(self, key: Any = None) -> None:
        if self._frozen:
            what = f" (key {key!r})" if key is not None else ""
            raise FrozenConfigError(
                f"a loaded config is read-only{what}: make a changed copy with "
                "utils.config.replaced(cfg, {'dotted.key': value})"
            )

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            raise AttributeError(f"config keys do not start with '_': {name!r}")
        self[name] = value

    def __setitem__(self, key: str, value: Any) -> None:
        self._writable(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._writable(key)
        super().__delitem__(key)

    def __ior__(self, other):
        self._writable()
        return super().__ior__(other)

    def update(self, *args, **kwargs) -> None:
        self._writable()
        super().update(*args, **kwargs)

    def pop(self, *args):
        self._writable()
        return super().pop(*args)

    def setdefault(self, key, default=None):
        self._writable()
        return super().setdefault(key, default)

    def popitem(self):
        self._writable()
        return super().popitem()

    def clear(self) -> None:
        self._writable()
        super().clear()

    def freeze(self) -> Config:
        """Make this config and its sections read-only; returns it."""
        object.__setattr__(self, "_frozen", True)
        for value in self.values():
            if isinstance(value, Config):
                value.freeze()
        return self

    def __deepcopy__(self, memo):  # a writable copy (replaced() freezes it again)
        return Config({k: copy.deepcopy(v, memo) for k, v in self.items()})

    def __reduce__(self):  # pickled (worker processes) as plain data, frozen again on arrival
        return _rebuilt, (self.to_dict(), self._frozen)

    def to_dict(self) -> dict:
        """A plain nested dict; lists and other values are copies."""
        return {
            k: v.to_dict() if isinstance(v, Config) else copy.deepcopy(v) for k, v in self.items()
        }


def _rebuilt(data: dict, frozen: bool) -> Config:
    cfg = as_config(data)
    return cfg.freeze() if frozen else cfg


def as_config(value: Any) -> Any:
    """A plain (nested) dict as a Config, e.g. a resolved config read back from YAML."""
    if isinstance(value, dict):
        return Config({k: as_config(v) for k, v in value.items()})
    return value


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse YAML file {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _check_type(key: str, default: Any, value: Any) -> Any:
    """Return `value` if it fits the type of `default` (ints are accepted for floats)."""
    if default is None or value is None:
        return value
    if isinstance(default, float) and isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as text; people write it so
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, (list, dict, str)):
        ok = isinstance(value, type(default))
    else:
        ok = True
    if not ok:
        raise ConfigError(
            f"config key '{key}' expects {type(default).__name__} (default {default!r}), "
            f"got {type(value).__name__} {value!r}"
        )
    return value


def _merge(base: dict, update: dict, prefix: str = "") -> None:
    """Merge `update` into `base` in place; every key of `update` must exist in `base`."""
    for key, value in update.items():
        full = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"unknown config key '{full}'; valid keys here: {sorted(base)}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{full}' is a section; got {value!r}")
            _merge(base[key], value, prefix=f"{full}.")
        else:
            base[key] = _check_type(full, base[key], value)


def _resolve_chain(path: Path, seen: tuple = ()) -> list[dict]:
    """Files from the root ancestor to `path`, each without its `_base_` key."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"circular _base_ chain through {path}")
    data = _read_yaml(path)
    base = data.pop(BASE_KEY, None)
    if base is None:
        return [data]
    if not isinstance(base, str) or not base:
        raise ConfigError(f"config key '{BASE_KEY}' in {path} must be a file path, got {base!r}")
    return _resolve_chain((path.parent / base), seen + (path,)) + [data]


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into (["a", "b", "c"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _nest(keys: list[str], value: Any) -> dict:
    out: Any = value
    for key in reversed(keys):
        out = {key: out}
    return out


DATASETS_ENV = "HF2VAD_DATASETS"  # where the datasets are, when not in data/ of the clone


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> Config:
    """Defaults (data roots from $HF2VAD_DATASETS when set), then the `_base_` chain of `path`,
    then command-line overrides."""
    cfg = _read_yaml(DEFAULTS_PATH)
    cfg.pop(BASE_KEY, None)
    default_roots = (cfg["data"]["root"], cfg["mnist"]["root"])
    if path is not None:
        for layer in _resolve_chain(Path(path)):
            _merge(cfg, layer)
        cfg["config_file"] = str(path)
    datasets = os.environ.get(DATASETS_ENV)
    if datasets:  # replaces the default roots only, not a root that a config file names
        if cfg["data"]["root"] == default_roots[0]:
            cfg["data"]["root"] = datasets
        if cfg["mnist"]["root"] == default_roots[1]:
            cfg["mnist"]["root"] = str(Path(datasets) / "mnist")
    for text in overrides:
        keys, value = parse_override(text)
        _merge(cfg, _nest(keys, value))
    cfg = as_config(cfg)
    check_values(cfg)
    return cfg.freeze()


def replaced(cfg: Config, changes: dict[str, Any]) -> Config:
    """A checked copy of `cfg` with dotted keys set to new values (a loaded config is never
    changed in place: copies say what differs)."""
    new = copy.deepcopy(cfg)
    for dotted, value in changes.items():
        *path, key = dotted.split(".")
        section = new
        for part in path:
            section = section.get(part) if isinstance(section, dict) else None
        if not isinstance(section, dict) or key not in section:
            raise ConfigError(f"unknown config key {dotted!r}")
        section[key] = as_config(value)
    check_values(new)
    return new.freeze()


SCORING_BACKENDS = ("torch", "onnxruntime", "openvino")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _require(ok: bool, key: str, value: Any, what: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' must be {what}, got {value!r}")


def check_values(cfg: Config) -> None:
    """Values that have the right type but cannot work fail here, naming the key."""
    device = str(cfg.device)
    _require(bool(_DEVICE.match(device)), "device", cfg.device, "auto, cpu, cuda or cuda:N")
    for stage in ("stage1", "stage2", "stage3"):
        section = cfg[stage]
        for key, low in (("num_epochs", 0), ("batch_size", 1), ("ckpt_every", 1), ("patience", 0)):
            _require(section[key] >= low, f"{stage}.{key}", section[key], f"an integer >= {low}")
        _require(section.max_cubes >= 0, f"{stage}.max_cubes", section.max_cubes, ">= 0")
        for key in ("lr", "eps", "gamma"):
            value = section[key]
            _require(math.isfinite(value) and value >= 0, f"{stage}.{key}", value, "finite, >= 0")
    _require(0 < cfg.eval.far < 1, "eval.far", cfg.eval.far, "a rate strictly between 0 and 1")
    k = cfg.eval.appearance_k
    _require(k >= 1, "eval.appearance_k", k, "an integer >= 1")
    hog = cfg.eval.appearance_hog
    _require(0 <= hog < 1, "eval.appearance_hog", hog, "a number in [0, 1)")
    for key in ("w_r", "w_p", "w_a", "w_kl", "sigma", "border_margin"):
        value = cfg.eval[key]
        _require(math.isfinite(value), f"eval.{key}", value, "a finite number")
    _require(cfg.eval.window >= 1, "eval.window", cfg.eval.window, "a positive odd integer")
    _require(cfg.eval.drop_first >= 0, "eval.drop_first", cfg.eval.drop_first, "an integer >= 0")
    backend = cfg.eval.backend  # inference/runtimes.py
    _require(backend in SCORING_BACKENDS, "eval.backend", backend, " or ".join(SCORING_BACKENDS))
    for key in ("lambda_recon", "lambda_ent", "lambda_kl", "lambda_frame", "lambda_grad"):
        value = cfg.loss[key]
        _require(math.isfinite(value) and value >= 0, f"loss.{key}", value, "finite, >= 0")


def save_config(cfg: dict, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    from utils.io import atomic_write_text

    plain = cfg.to_dict() if isinstance(cfg, Config) else cfg
    atomic_write_text(path, yaml.safe_dump(plain, sort_keys=False))


def add_config_args(parser) -> None:
    """The `--cfg PATH` option and free `key=value` overrides that every script takes."""
    parser.add_argument(
        "--cfg",
        required=True,
        help="experiment YAML, e.g. cfgs/ped2.yaml; outputs go to its run_dir (override with "
        "run_dir=PATH)",
    )
    parser.add_argument(
        "overrides", nargs="*", help="dotted overrides of the config, e.g. seed=1 eval.w_p=0.5"
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
