"""The `edgenas run` config: one YAML file for the whole pipeline, validated with pydantic.

Errors come back as one line naming the file, the line and the key
(`examples/x.yaml:14: search.method: ...`), like device profiles. Device entries either
point at a profile file (`profile: devices/mcu.yaml`, relative to the config's folder) or
give the profile inline (`name:` + `budgets:`); either may pick its own search method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from edgenas.core.device import Budgets, DeviceProfile, LatencySpec, Precision, load_device
from edgenas.core.errors import ConfigError
from edgenas.core.yamlio import load_model, read_yaml
from edgenas.search.methods import METHODS, aimed_at
from edgenas.spaces import SPACES


def search_methods() -> tuple[str, ...]:
    """What a device may use: `screen` (the top screened arch) or a registered search method."""
    return ("screen", *METHODS.names())


def _one_of(names) -> AfterValidator:
    """Accept a name that `names()` lists (a registry's names, read when the config is validated)."""

    def check(value: str) -> str:
        allowed = names()
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return AfterValidator(check)


SpaceName = Annotated[str, _one_of(SPACES.names)]
MethodName = Annotated[str, _one_of(search_methods)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSection(_Strict):
    """Which data, and how much of it the pipeline's training stages use.

    `resolution` (the input side) is `resize` under its issue-20 name; give either.
    `in_memory`, `skip_bad` and `workers` say how training jobs read images (searches
    and screening hold their subsets in memory).
    """

    name: str = "fashion-mnist"
    data_dir: str | None = None
    subset: int | None = Field(12000, ge=1, description="training images used (stratified, seeded)")
    val_fraction: float = Field(0.1, gt=0, lt=1)
    resize: int | None = Field(None, ge=1)
    resolution: int | None = Field(None, ge=1, description="input side (same as resize)")
    in_memory: Literal["auto"] | bool = Field(
        "auto", description="true: float tensors; false: decode per batch; auto: stream folders and data over 2 GiB"
    )
    skip_bad: bool = Field(False, description="leave out unreadable images (counted) instead of stopping")
    workers: int | None = Field(None, ge=0, description="processes decoding streamed batches (default: cores - 1)")

    @model_validator(mode="after")
    def _resolution(self) -> DatasetSection:
        if self.resolution is not None:
            if self.resize is not None and self.resize != self.resolution:
                raise ValueError(f"resolution {self.resolution} and resize {self.resize} differ; give one of them")
            self.resize, self.resolution = self.resolution, None
        return self


# Dataset options added by issue 20: left out of a run's recorded options while at their
# defaults, so runs recorded before them resume (their jobs then read data as they did).
NEW_DATASET_DEFAULTS: dict[str, Any] = {"resolution": None, "in_memory": "auto", "skip_bad": False, "workers": None}
# Screen options added after issue 18, left out the same way.
NEW_SCREEN_DEFAULTS: dict[str, Any] = {"strategy": "random", "population": 64}


def recorded_options(cfg: RunConfig) -> dict[str, Any]:
    """The options a run records and a resume compares (the executor section is not among them)."""
    options = cfg.model_dump(mode="json", exclude={"executor"})
    for section, defaults in (("dataset", NEW_DATASET_DEFAULTS), ("screen", NEW_SCREEN_DEFAULTS)):
        for key, default in defaults.items():
            if key in options[section] and options[section][key] == default:
                del options[section][key]
    if not options["teacher"].get("generic"):  # issue 22's key, left out while empty (older runs resume)
        options["teacher"].pop("generic", None)
    return options


class SpaceSection(_Strict):
    """The search space and the size of the deployed networks."""

    name: SpaceName = "nb201"
    width: int = Field(16, ge=1, description="channels of the first stage, C")
    cells: int = Field(1, ge=1, description="cells per stage, N")


class DeviceEntry(_Strict):
    """A target: a profile file, or a profile written inline; optionally its own search method."""

    profile: str | None = None
    name: str | None = None
    description: str = ""
    budgets: Budgets | None = None
    latency: LatencySpec | None = None
    precision: Precision | None = None
    method: MethodName | None = None

    @model_serializer(mode="wrap")
    def _omit_unset_precision(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without `precision` an entry dumps as before it existed (stored runs resume)."""
        data = handler(self)
        if data.get("precision") is None:
            data.pop("precision", None)
        return data

    @model_validator(mode="after")
    def _one_source(self) -> DeviceEntry:
        if self.profile is None and self.name is None:
            raise ValueError("give `profile: FILE` or an inline profile with `name:` and `budgets:`")
        if self.profile is not None and (self.name or self.budgets or self.latency or self.precision):
            raise ValueError(
                "give either `profile: FILE` or an inline profile (name/budgets/latency/precision), not both"
            )
        return self


class ScreenSection(_Strict):
    """Training-free screening (AZ-NAS): ranks candidates inside each device's budgets.

    `random` scores one seeded sample of `n` archs for all devices, each keeping those inside
    its budgets (a tight budget may keep few). `evolution` (AZ-NAS's search) runs per device
    and scores `n` candidates all inside that device's static budgets.
    """

    strategy: Literal["random", "evolution"] = "random"
    n: int = Field(300, ge=1, description="archs sampled (random) or in-budget archs scored per device (evolution)")
    population: int = Field(64, ge=2, description="evolution: the best-ranked archs that parents are drawn from")
    proxies: str = "az"
    top: int = Field(5, ge=1, description="ranked candidates kept per device (fallbacks for search)")
    batch: int = Field(64, ge=2)
    latency_tries: int = Field(15, ge=1, description="best-ranked archs whose latency is measured at most")


class SearchSection(_Strict):
    """The per-device search (DCA-NAS), one DNAD search for all devices, or `screen` (the top screened arch)."""

    method: MethodName = "dca"
    subset: int | None = Field(10000, ge=1)
    val_fraction: float = Field(0.5, gt=0, lt=1)
    dca: dict[str, Any] = Field(default_factory=dict, description="DCA-NAS settings (DCAConfig), e.g. epochs")
    dnad: dict[str, Any] = Field(default_factory=dict, description="DNAD settings (SNPSConfig), e.g. epochs")


class TeacherSection(_Strict):
    """One teacher for every student: plain (the default: it beat every generic teacher measured,
    benchmarks/README.md "Generic teacher"), generic (GTN), or none (students train alone)."""

    kind: Literal["plain", "generic", "none"] = "plain"
    arch: str | None = Field(None, description="teacher cell (default: all 3×3 convolutions)")
    width: int = Field(16, ge=1)
    cells: int = Field(1, ge=1)
    epochs: int = Field(3, ge=1)
    mu: float = Field(0.1, ge=0, description="generic teacher without `generic`: the fixed KD-awareness weight")
    generic: dict[str, Any] = Field(
        default_factory=dict,
        description="generic teacher options (GenericConfig: conditioning, mu, mu_mode, sampler, pool, ...); "
        "empty: the first edgenas generic teacher (FiLM, fixed mu, uniform students)",
    )


class TrainSection(_Strict):
    """How each device's student is trained (with KD when there is a teacher)."""

    epochs: int = Field(3, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(0.1, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    kd_weight: float = Field(1.0, ge=0)
    temperature: float = Field(4.0, gt=0)


class ExecutorSection(_Strict):
    """Where independent jobs run; the CLI's `--executor/--address/--workers` override it."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    workers: int = Field(2, ge=1)
    threads: int | None = Field(
        None, ge=1, description="torch threads per job (default: this machine's cores shared among the jobs)"
    )
    gpus_per_job: float | None = Field(
        None, ge=0, description="Ray: GPUs per job, fractions share one (default: 1 when computing on CUDA, else 0)"
    )
    nice: int = Field(0, ge=0, le=19, description="Ray: niceness of a local instance's workers (Ray's own: 15)")


class RunConfig(_Strict):
    """Everything `edgenas run` does, in one validated object."""

    name: str = "edgenas-run"
    seed: int = 0
    dataset: DatasetSection = Field(default_factory=DatasetSection)
    space: SpaceSection = Field(default_factory=SpaceSection)
    devices: list[DeviceEntry] = Field(min_length=1)
    screen: ScreenSection = Field(default_factory=ScreenSection)
    search: SearchSection = Field(default_factory=SearchSection)
    teacher: TeacherSection = Field(default_factory=TeacherSection)
    train: TrainSection = Field(default_factory=TrainSection)
    executor: ExecutorSection = Field(default_factory=ExecutorSection)

    def method_for(self, i: int) -> str:
        """The search method of device `i` (its own, else the config's)."""
        return self.devices[i].method or self.search.method


def load_run_config(path: str | Path) -> tuple[RunConfig, list[DeviceProfile]]:
    """Read, validate and resolve a run config: the config and one profile per device entry.

    Profile files are read relative to the config's folder; device names must be unique
    (they name the per-device folders of the run).
    """
    path = Path(path)
    data, lines = read_yaml(path)
    cfg = load_model(RunConfig, path, data, lines)
    from edgenas.data import DATASETS

    if cfg.dataset.name not in DATASETS:
        where = lines.get(("dataset", "name"))
        raise ConfigError(f"{path}:{where}: dataset.name: {cfg.dataset.name!r} is not one of {', '.join(DATASETS)}")
    if cfg.dataset.data_dir is not None:  # like profile files: relative to the config's folder
        data_dir = Path(cfg.dataset.data_dir).expanduser()
        if not data_dir.is_absolute():
            data_dir = (path.parent / data_dir).resolve()
        cfg.dataset.data_dir = str(data_dir)
    profiles = []
    for i, entry in enumerate(cfg.devices):
        if entry.profile is not None:
            file = Path(entry.profile).expanduser()
            if not file.is_absolute():
                file = path.parent / file
            if not file.is_file():
                where = lines.get(("devices", i, "profile"))
                raise ConfigError(f"{path}:{where}: devices.{i}.profile: {file}: no such file")
            profiles.append(load_device(file))
        else:
            profiles.append(
                DeviceProfile(
                    name=entry.name or "",
                    description=entry.description,
                    budgets=entry.budgets or Budgets(),
                    latency=entry.latency or LatencySpec(),
                    precision=entry.precision or "fp32",
                )
            )
    names = [p.name for p in profiles]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise ConfigError(f"{path}:{lines.get(('devices', i))}: devices.{i}: device name {name!r} is used twice")
        if not profiles[i].budgets.items():
            raise ConfigError(f"{path}:{lines.get(('devices', i))}: devices.{i}: device {name!r} sets no budget")
    _check_reachable(path, lines, cfg, profiles)
    methods = {cfg.method_for(i) for i in range(len(cfg.devices))}
    if aimed_at("teacher", methods) and cfg.teacher.kind == "none":
        raise ConfigError(
            f"{path}:{lines.get(('teacher',))}: teacher.kind: DNAD distils from a teacher; use plain or generic"
        )
    _check_method_options(path, lines, cfg, methods)
    _check_generic_options(path, lines, cfg)
    return cfg, profiles


def _check_generic_options(path: Path, lines: dict, cfg: RunConfig) -> None:
    """`teacher.generic` is checked now (GenericConfig), not when the teacher starts."""
    from pydantic import ValidationError

    from edgenas.distill.generic_teacher import GenericConfig

    options = cfg.teacher.generic
    if not options:
        return
    where = f"{path}:{lines.get(('teacher', 'generic'))}: teacher.generic"
    if cfg.teacher.kind != "generic":
        raise ConfigError(f"{where}: options of a generic teacher, but teacher.kind is {cfg.teacher.kind}")
    shape = {"student_width", "student_cells"} & set(options)
    if shape:
        raise ConfigError(f"{where}: {', '.join(sorted(shape))} come from space.width and space.cells")
    try:
        GenericConfig(**options)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{where}.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def _check_reachable(path: Path, lines: dict, cfg: RunConfig, profiles: list[DeviceProfile]) -> None:
    """A budget below the space's smallest network is refused now, not after a search finds nothing."""
    from edgenas.core.errors import UserError
    from edgenas.core.space import NetShape
    from edgenas.cost.floor import unreachable_budgets
    from edgenas.data import dataset_info
    from edgenas.spaces import get_space

    try:
        info = dataset_info(cfg.dataset.name, cfg.dataset.data_dir, cfg.dataset.resize)
    except UserError:
        return  # the data's own error comes when the run loads it
    space = get_space(cfg.space.name)
    shape = NetShape.for_data(info, cfg.space.width, cfg.space.cells)
    for i, profile in enumerate(profiles):
        for bad in unreachable_budgets(profile, space, shape):
            key = ("devices", i, "budgets", bad.budget)
            where = f"devices.{i}.budgets.{bad.budget}" if key in lines else f"devices.{i}.profile"
            line = lines.get(key) or lines.get(("devices", i, "profile")) or lines.get(("devices", i))
            raise ConfigError(f"{path}:{line}: {where}: {bad.message(profile.name, cfg.space.name, shape)}")


def _check_method_options(path: Path, lines: dict, cfg: RunConfig, methods: set[str]) -> None:
    """Method settings are checked now, not when the search starts after the screening."""
    for name in METHODS:
        options = getattr(cfg.search, name)
        if name in methods or options:
            try:
                METHODS.get(name).config.from_options(options)
            except ConfigError as exc:
                raise ConfigError(f"{path}:{lines.get(('search', name))}: search.{name}: {exc}") from None
