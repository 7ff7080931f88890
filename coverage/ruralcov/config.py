"""The run configuration: frozen dataclasses loaded from TOML, every key with a default.

Relative paths are resolved against the configuration file's folder, so a run folder's
``config.toml`` recomputes the run wherever the folder is moved. Unknown keys are errors, not
silently ignored: a typo in a key would otherwise change a published number.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruralcov.errors import ConfigError
from ruralcov.schema import LEVELS, REGISTERS

#: Targets presets. ``shanxi-2020``: Shanxi's rural broadband plan (98 % of administrative
#: villages on fibre, 12 Mbps in villages, 100 Mbps in towns).
PROFILES: dict[str, dict[str, float]] = {
    "shanxi-2020": {
        "fibre_share": 0.98,
        "village_download_mbps": 12.0,
        "community_download_mbps": 100.0,
    },
}

FIBRE_KINDS = ("access_points", "routes", "table", "ofds")
SPEED_KINDS = ("tests",)
ENGINES = ("local",)


@dataclass(frozen=True)
class RunConfig:
    name: str = "ruralcov"
    out: Path | None = None
    profile: str = "shanxi-2020"
    #: Shown in the report and the map legend, e.g. which layers are synthetic.
    provenance: str = ""
    engine: str = "local"


@dataclass(frozen=True)
class VillagesConfig:
    path: Path | None = None
    layer: str | None = None
    code: str = "code"
    name: str = "name"
    register: str = "cn-nbs"
    levels: Mapping[str, str] = field(default_factory=dict)
    kind: str | None = None
    crs: str | None = None
    encoding: str = "utf-8"
    lon: str | None = None
    lat: str | None = None
    wkt: str | None = None
    #: Optional lookup tables (CSV with ``code`` and ``name``) per level, for level names.
    names: Mapping[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class BoundariesConfig:
    """Village polygons in a separate file, joined to the register by code."""

    path: Path | None = None
    layer: str | None = None
    code: str = "code"
    crs: str | None = None
    encoding: str = "utf-8"
    wkt: str | None = None


@dataclass(frozen=True)
class FibreConfig:
    path: Path | None = None
    layer: str | None = None
    kind: str = "access_points"
    id: str = "asset_id"
    #: ``table`` kind: the column with the village code, and optionally a yes/no column.
    code: str = "village_code"
    value: str | None = None
    #: Default: "status" for assets, none ("") for tables; "" means every row is operational.
    status: str | None = None
    operational: tuple[str, ...] = ("operational", "in_service")
    max_distance_m: float = 0.0
    nearby_m: float = 1000.0
    crs: str | None = None
    encoding: str = "utf-8"
    lon: str | None = None
    lat: str | None = None
    wkt: str | None = None


@dataclass(frozen=True)
class SpeedConfig:
    path: Path | None = None
    layer: str | None = None
    kind: str = "tests"
    lon: str = "lon"
    lat: str = "lat"
    download: str = "download_mbps"
    upload: str | None = "upload_mbps"
    latency: str | None = "latency_ms"
    device: str | None = "device_id"
    min_tests: int = 5
    min_devices: int = 3
    crs: str | None = None
    encoding: str = "utf-8"


@dataclass(frozen=True)
class TargetsConfig:
    fibre_share: float = 0.98
    village_download_mbps: float = 12.0
    community_download_mbps: float = 100.0


@dataclass(frozen=True)
class MapsConfig:
    enabled: bool = True


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    villages: VillagesConfig = field(default_factory=VillagesConfig)
    boundaries: BoundariesConfig | None = None
    fibre: tuple[FibreConfig, ...] = ()
    speed: SpeedConfig | None = None
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    maps: MapsConfig = field(default_factory=MapsConfig)
    #: Folder the configuration was read from; relative paths were resolved against it.
    base: Path = field(default_factory=Path.cwd)


_SECTIONS = {
    "run": RunConfig,
    "villages": VillagesConfig,
    "boundaries": BoundariesConfig,
    "fibre": FibreConfig,
    "speed": SpeedConfig,
    "targets": TargetsConfig,
    "maps": MapsConfig,
}
_PATH_KEYS = {"path", "out"}


def _build(cls: type, section: str, raw: Any, base: Path) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[{section}] must be a table of keys, got {type(raw).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in [{section}]; allowed keys are {sorted(names)}"
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _PATH_KEYS and value is not None:
            value = _resolve(value, base, f"{section}.{key}")
        elif key == "names":
            if not isinstance(value, Mapping):
                raise ConfigError(f"[{section}] names must be a table of level = path")
            value = {k: _resolve(v, base, f"{section}.names.{k}") for k, v in value.items()}
        elif key == "operational":
            if isinstance(value, str):
                value = [value]
            value = tuple(str(v) for v in value)
        values[key] = value
    try:
        obj = cls(**values)
    except TypeError as exc:  # pragma: no cover - guarded by the unknown-key check
        raise ConfigError(f"[{section}]: {exc}") from exc
    _check_types(obj, section)
    return obj


def _resolve(value: Any, base: Path, key: str) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ConfigError(f"{key} must be a non-empty path string, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _check_types(obj: Any, section: str) -> None:
    """Reject a value whose type does not match the field's default, naming the key."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if value is None or default is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int | float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            ok = True
        if not ok:
            raise ConfigError(
                f"[{section}] {f.name} must be {type(default).__name__}, got {value!r}"
            )


def config_from_dict(raw: Mapping[str, Any], *, base: Path | None = None) -> Config:
    """Build and check a :class:`Config` from parsed TOML (paths relative to ``base``)."""
    base = (base or Path.cwd()).resolve()
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; allowed sections are {sorted(_SECTIONS)}")
    run = _build(RunConfig, "run", raw.get("run", {}), base)
    if run.profile not in PROFILES:
        raise ConfigError(
            f"[run] profile {run.profile!r} is not known; use one of {list(PROFILES)}"
        )
    if run.engine not in ENGINES:
        raise ConfigError(
            f"[run] engine {run.engine!r} is not supported; use one of {list(ENGINES)}"
        )
    villages = _build(VillagesConfig, "villages", raw.get("villages", {}), base)
    if villages.path is None:
        raise ConfigError("[villages] path is required: the village register or village polygons")
    if villages.register not in REGISTERS:
        raise ConfigError(
            f"[villages] register {villages.register!r} is not known; use one of {list(REGISTERS)}"
        )
    for key in (*villages.levels, *villages.names):
        if key not in LEVELS:
            raise ConfigError(f"[villages] level {key!r} is not known; levels are {list(LEVELS)}")
    boundaries = None
    if "boundaries" in raw:
        boundaries = _build(BoundariesConfig, "boundaries", raw["boundaries"], base)
        if boundaries.path is None:
            raise ConfigError("[boundaries] path is required when the section is present")
    fibre_raw = raw.get("fibre", [])
    if isinstance(fibre_raw, Mapping):
        fibre_raw = [fibre_raw]
    fibre = tuple(_build(FibreConfig, "fibre", f, base) for f in fibre_raw)
    fibre = tuple(
        f
        if f.status is not None
        else dataclasses.replace(f, status="" if f.kind == "table" else "status")
        for f in fibre
    )
    for f in fibre:
        if f.path is None:
            raise ConfigError("[fibre] path is required for every fibre source")
        if f.kind not in FIBRE_KINDS:
            raise ConfigError(
                f"[fibre] kind {f.kind!r} is not known; use one of {list(FIBRE_KINDS)}"
            )
        if f.max_distance_m < 0 or f.nearby_m < 0:
            raise ConfigError("[fibre] max_distance_m and nearby_m must be zero or positive metres")
    speed = None
    if "speed" in raw:
        speed = _build(SpeedConfig, "speed", raw["speed"], base)
        if speed.path is None:
            raise ConfigError("[speed] path is required when the section is present")
        if speed.kind not in SPEED_KINDS:
            raise ConfigError(
                f"[speed] kind {speed.kind!r} is not supported; use one of {list(SPEED_KINDS)}"
            )
        if speed.min_tests < 1 or speed.min_devices < 0:
            raise ConfigError("[speed] min_tests must be ≥ 1 and min_devices ≥ 0")
    targets_raw = {**PROFILES[run.profile], **dict(raw.get("targets", {}))}
    targets = _build(TargetsConfig, "targets", targets_raw, base)
    if not 0 <= targets.fibre_share <= 1:
        raise ConfigError(
            f"[targets] fibre_share must be between 0 and 1, got {targets.fibre_share}"
        )
    maps = _build(MapsConfig, "maps", raw.get("maps", {}), base)
    return Config(
        run=run,
        villages=villages,
        boundaries=boundaries,
        fibre=fibre,
        speed=speed,
        targets=targets,
        maps=maps,
        base=base,
    )


def load_config(path: str | Path) -> Config:
    """Read a TOML configuration file; raise :class:`ConfigError` naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {str(path)!r} not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    return config_from_dict(raw, base=path.resolve().parent)


def config_to_dict(config: Config, *, relative_to: Path | None = None) -> dict[str, Any]:
    """The fully resolved configuration as plain TOML-ready values.

    Paths under ``relative_to`` are written relative to it (so a run folder stays movable);
    others are absolute.
    """

    def conv(value: Any) -> Any:
        if isinstance(value, Path):
            if relative_to is not None:
                try:
                    return value.resolve().relative_to(relative_to.resolve()).as_posix()
                except ValueError:
                    pass
            return str(value)
        if isinstance(value, Mapping):
            return {k: conv(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [conv(v) for v in value]
        return value

    def section(obj: Any) -> dict[str, Any]:
        return {
            f.name: conv(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if getattr(obj, f.name) is not None
        }

    out: dict[str, Any] = {"run": section(config.run), "villages": section(config.villages)}
    if config.boundaries is not None:
        out["boundaries"] = section(config.boundaries)
    if config.fibre:
        out["fibre"] = [section(f) for f in config.fibre]
    if config.speed is not None:
        out["speed"] = section(config.speed)
    out["targets"] = section(config.targets)
    out["maps"] = section(config.maps)
    return out


def dump_config(config: Config, path: Path) -> None:
    """Write the resolved configuration as TOML, paths relative to the file's folder."""
    import tomli_w

    data = config_to_dict(config, relative_to=path.parent)
    data["run"].pop("out", None)  # the run folder is wherever this file is
    path.write_text(tomli_w.dumps(data), encoding="utf-8")


def replace(config: Config, **sections: Any) -> Config:
    """A copy of ``config`` with whole sections or ``run``-level fields replaced."""
    return dataclasses.replace(config, **sections)
