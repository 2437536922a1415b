"""The run config: a resolved scenario, its strategies (the oracle first), a seed and a device.

This is the only reader and writer of run configs in TOML: a run folder's ``config.toml`` (``clu run
config.toml`` re-runs it) is :meth:`RunConfig.to_toml`, a sweep trial's carried config
:meth:`RunConfig.full_toml`, and both come back through :func:`run_config_from_toml` with the same validation.
:func:`resolve_config` turns command-line or API arguments (scenario name or file, strategy names or preset
files, seed, device) into a RunConfig.

Import-light (the command line validates with it before the heavy imports): torch and Avalanche are
imported only for the version stamp.
"""

from __future__ import annotations

import platform
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Sequence, get_args, get_type_hints

from clu import __version__, seeding
from clu.config import ConfigError, dump_toml, from_dict, read_toml, to_dict
from clu.paths import DEFAULT_SCENARIO, STRATEGY_DIR, resolve_scenario
from clu.results import ORACLE, TWIN, UnitSpec
from clu.scenario import ScenarioSpec, TrainingSpec, load_scenario, scenario_from_dict
from clu.strategies import STRATEGIES, StrategyChoice, get_entry, resolve_strategy, strategy_config

Device = Literal["auto", "cpu", "cuda"]
_KEYS = ("scenario_seed", "seed", "training_seeds", "replicas", "shadows", "device", "amp", "scenario", "strategies",
         "versions")
_HEADER = "# clu-sim run config: re-run with `clu run <this file> --out DIR`\n"
_COMMENTS = {
    "scenario_seed": "the event stream (class order, requests); replica 1 also trains with it",
    "training_seeds": "per replica: initial weights, batch order, buffer draws (from scenario_seed; informational)",
}
"""config.toml's comments on its top-level keys."""
_SCENARIO_SEED = next(f.default for f in fields(ScenarioSpec) if f.name == "seed")


@dataclass(frozen=True)
class RunConfig:
    """A fully resolved run: what ``config.toml`` holds and ``clu run config.toml`` re-runs."""

    scenario: ScenarioSpec
    strategies: tuple[StrategyChoice, ...]
    """One per strategy, the oracle first."""
    seed: int
    """The scenario seed (the event stream; config.toml's ``scenario_seed``); also replica 1's training seed. It
    overrides the scenario's default ``seed``."""
    device: Device = "auto"
    """auto (CUDA when present) | cpu | cuda."""
    replicas: int = 1
    """Training replicas R (replica k > 1 trains with clu.seeding.training_seed(seed, k))."""
    shadows: int | None = None
    """Shadow oracles of the membership attack; None: the scenario's ``[evaluation] shadows``."""
    amp: bool = False
    """Forward passes under bf16 autocast (``--amp``; written to config.toml only when on)."""

    @property
    def n_shadows(self) -> int:
        """The shadow count in effect."""
        return self.scenario.evaluation.shadows if self.shadows is None else self.shadows

    @property
    def training_seeds(self) -> list[int]:
        """Replica k's training seed, k = 1..R (:func:`clu.seeding.training_seed`)."""
        return [seeding.training_seed(self.seed, k) for k in range(1, self.replicas + 1)]

    def to_toml(self, *, versions: bool = True) -> str:
        """config.toml: one seed, ``scenario_seed`` (the scenario's default seed, which it overrides, only when
        not 0), with replicas the ``training_seeds`` it gives (informational), and only the ``[data]`` and
        ``[model]`` fields that apply to the chosen dataset and architecture (the others at their defaults are
        left out); commented. :func:`run_config_from_toml` gives this config back. ``versions`` adds the header
        line and the version stamp."""
        scenario = to_dict(self.scenario, applicable=True)
        if self.scenario.seed == _SCENARIO_SEED:
            del scenario["seed"]
        seeds = {"scenario_seed": self.seed, **({"training_seeds": self.training_seeds} if self.replicas > 1 else {})}
        data = self._data(seeds, scenario)
        if versions:
            data["versions"] = _versions()
        return (_HEADER if versions else "") + _commented(dump_toml(data))

    def full_toml(self) -> str:
        """Every field, the run's seed as ``seed`` and the scenario's own: config.toml's earlier form, kept as
        a sweep trial's carried config and fingerprint input, so that finished trials (the committed results
        included) stay reusable by ``--resume`` and ``--extend``."""
        return dump_toml(self._data({"seed": self.seed}, to_dict(self.scenario)))

    def _data(self, seeds: dict[str, Any], scenario: dict[str, Any]) -> dict[str, Any]:
        return {
            **seeds,
            "replicas": self.replicas,
            **({} if self.shadows is None else {"shadows": self.shadows}),
            "device": self.device,
            **({"amp": True} if self.amp else {}),
            "scenario": scenario,
            "strategies": [{"strategy": c.name, "label": c.label, **to_dict(c.config)} for c in self.strategies],
        }


def _commented(text: str) -> str:
    """``text`` with :data:`_COMMENTS` after its top-level keys (those before the first table)."""
    head, sep, tables = text.partition("\n[")
    lines = []
    for line in head.split("\n"):
        key = line.partition(" = ")[0]
        lines.append(f"{line}  # {_COMMENTS[key]}" if key in _COMMENTS and " = " in line else line)
    return "\n".join(lines) + sep + tables


def plan_units(config: RunConfig) -> list[UnitSpec]:
    """The units of a run, in run order: per replica k = 1..R its oracle, the oracle's twin and the strategies
    (init and batch order from the replica's training seed; the twin reorders with its own seed); then the
    extra shadow oracles the attack needs beyond the other replicas' oracles (K − (R − 1) of them, shared
    by all replicas, init = order seed = :func:`clu.seeding.shadow_seed`). A sweep trial runs one of them."""
    specs: list[UnitSpec] = []
    oracle = config.strategies[0]
    for k in range(1, config.replicas + 1):
        t = seeding.training_seed(config.seed, k)
        specs.append(UnitSpec(oracle.label, oracle.name, k, t, t, "oracle"))
        specs.append(UnitSpec(TWIN, oracle.name, k, t, seeding.twin_seed(t), "twin"))
        specs += [UnitSpec(c.label, c.name, k, t, t, "strategy") for c in config.strategies[1:]]
    for j in range(1, max(0, config.n_shadows - (config.replicas - 1)) + 1):
        s = seeding.shadow_seed(config.seed, j)
        specs.append(UnitSpec(f"{ORACLE} (shadow {j})", oracle.name, 1, s, s, "shadow"))
    return specs


def _versions() -> dict[str, str]:
    import avalanche  # the stamp only: a run has imported both by now
    import torch

    return {"clu": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "avalanche": avalanche.__version__}


def run_config_from_dict(raw: dict[str, Any], source: str | Path) -> RunConfig:
    """Parsed config TOML → RunConfig; every error names ``source`` (``versions`` is informational)."""
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ConfigError("unknown key in a run config", key=unknown[0], file=source)
    try:
        scenario = scenario_from_dict(raw.get("scenario", {}), str(source))
    except ConfigError as e:
        raise e.under("scenario") from None
    choices = []
    for i, entry in enumerate(raw.get("strategies", [])):
        entry = dict(entry)
        name, label = entry.pop("strategy", None), entry.pop("label", None)
        if not isinstance(name, str):
            raise ConfigError("missing strategy name", key=f"strategies[{i}].strategy", file=source)
        try:
            choices.append(StrategyChoice(name, str(label or name), strategy_config(name, entry, source=str(source))))
        except ConfigError as e:
            raise e.under(f"strategies[{i}]").in_file(source) from None
    if "scenario_seed" in raw and "seed" in raw:
        raise ConfigError("give the seed once, as scenario_seed (seed is its earlier name)", key="seed", file=source)
    seed_key = "seed" if "seed" in raw else "scenario_seed"
    seed = raw.get(seed_key, scenario.seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"must be a whole number >= 0, got {seed!r}", key=seed_key, file=source)
    replicas = check_count(raw.get("replicas", 1), "replicas", 1, source)
    derived = [seeding.training_seed(seed, k) for k in range(1, replicas + 1)]
    if "training_seeds" in raw and raw["training_seeds"] != derived:
        raise ConfigError(f"is derived from scenario_seed and replicas ({derived}); change those instead",
                          key="training_seeds", file=source)
    shadows = None if raw.get("shadows") is None else check_count(raw["shadows"], "shadows", 0, source)
    amp = raw.get("amp", False)
    if not isinstance(amp, bool):
        raise ConfigError(f"expected true or false, got {amp!r}", key="amp", file=source)
    return RunConfig(scenario, tuple(choices), seed, check_device(raw.get("device", "auto"), "device", source),
                     replicas, shadows, amp)


def run_config_from_toml(text: str, source: str | Path) -> RunConfig:
    """The inverse of :meth:`RunConfig.to_toml`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML ({e})", file=source) from None
    return run_config_from_dict(raw, source)


def load_run_config(path: Path) -> RunConfig:
    """A run's ``config.toml`` back into a RunConfig."""
    return run_config_from_dict(read_toml(path), path)


def is_run_config(raw: dict[str, Any]) -> bool:
    """Whether parsed TOML is a run config (rather than a scenario file)."""
    return "scenario" in raw and "strategies" in raw


def check_count(value: Any, key: str, least: int, source: str | Path | None = None) -> int:
    """A whole number >= ``least`` (replicas, shadows)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"must be a whole number >= {least}, got {value!r}", key=key, file=source)
    return value


def check_device(device: Any, key: str, source: str | Path | None = None) -> Device:
    if device not in get_args(Device):
        raise ConfigError(f"{device!r} is not allowed; choose auto, cpu or cuda", key=key, file=source)
    return device


def default_strategies(scenario: ScenarioSpec) -> list[str]:
    """Every registered strategy the scenario's setting allows."""
    aware = scenario.setting == "task_aware"
    return [n for n, e in STRATEGIES.items() if aware or not e.task_aware_only]


def check_setting(choices: Sequence[StrategyChoice], scenario: ScenarioSpec, key: str) -> None:
    """Task-aware-only strategies need a task-aware scenario."""
    if scenario.setting != "task_aware":
        bad = [c.name for c in choices if STRATEGIES[c.name].task_aware_only]
        if bad:
            raise ConfigError(f"{bad[0]} needs a task_aware scenario; {scenario.name} is task_agnostic", key=key)


def preset_file(name: str, family: str) -> Path | None:
    """The preset of strategy ``name`` in the preset family ``family`` (``strategies/<family>/<name>.toml``),
    or None: the default family, or no such file (then the default preset applies)."""
    if family == "default":
        return None
    path = STRATEGY_DIR / family / f"{name.replace('_', '-')}.toml"
    return path if path.is_file() else None


def _family_dirs() -> set[Path]:
    """The folders of the preset families other than the default (``strategies/paper``)."""
    families = get_args(get_type_hints(TrainingSpec)["presets"])
    return {(STRATEGY_DIR / f).resolve() for f in families if f != "default"}


def resolve_in_family(spec: str, family: str) -> StrategyChoice:
    """A strategy name resolved in the scenario's preset family (``[training] presets``), or a preset file.

    A family preset replaces the default preset (it starts from the config class defaults, not from the
    CPU-tuned file), also when given by its path (``strategies/paper/er-sfron.toml``). Names without a family
    file, and other files, resolve as :func:`clu.strategies.resolve_strategy` does.
    """
    if spec.endswith(".toml"):
        path = Path(spec)
        if path.resolve().parent not in _family_dirs():  # not a family preset given by its path
            return resolve_strategy(spec)
        name = read_toml(path).get("strategy")
        if not isinstance(name, str):
            return resolve_strategy(spec)  # its error names the file
    else:
        name, path = spec, preset_file(spec, family)
        if path is None:
            return resolve_strategy(spec)
    data = dict(read_toml(path))
    named, label = data.pop("strategy", name), data.pop("label", name)
    if named != name or path.stem != name.replace("_", "-"):
        raise ConfigError(f"a family preset file is named after its strategy; this one names {named!r}",
                          key="strategy", file=path)
    try:
        config = from_dict(get_entry(name).config_class, data)
    except ConfigError as e:
        raise e.in_file(path) from None
    return StrategyChoice(name, str(label), config)


def resolve_config(
    scenario: str | None, strategies: Sequence[str], seed: int | None, device: str | None, *,
    replicas: int | None = None, shadows: int | None = None, amp: bool | None = None,
) -> RunConfig:
    """CLI/API arguments → RunConfig. ``scenario`` may be a scenario file/name or a run's config.toml.

    The oracle ``retrain`` is always added, first; a run config's strategies, seed, device, replicas, shadows
    and amp are the defaults when ``scenario`` is one. Strategy names resolve in the scenario's preset family
    (``[training] presets``).
    """
    base: RunConfig | None = None
    path = resolve_scenario(scenario or DEFAULT_SCENARIO)
    raw = read_toml(path)
    if is_run_config(raw):
        base = run_config_from_dict(raw, path)
        spec = base.scenario
    else:
        spec = load_scenario(path)
    family = spec.training.presets
    if strategies:
        choices = [resolve_in_family(s, family) for s in strategies]
    elif base is not None:
        choices = list(base.strategies)
    else:
        choices = [resolve_in_family(s, family) for s in default_strategies(spec)]
    labels = [c.label for c in choices]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"strategy {dup[0]!r} given twice; give each a distinct label", key="--strategy")
    if TWIN in labels:
        raise ConfigError(f"the label {TWIN!r} is reserved for the oracle's twin", key="--strategy")
    check_setting(choices, spec, "--strategy")
    oracle = [c for c in choices if c.name == ORACLE]
    if not oracle:
        oracle = [resolve_in_family(ORACLE, family)]  # gaps need it; it runs once and is reported
    choices = oracle[:1] + [c for c in choices if c is not oracle[0] and c.label != oracle[0].label]
    final_seed = seed if seed is not None else (base.seed if base else spec.seed)
    final_device = check_device(device or (base.device if base else "auto"), "--device")
    final_replicas = check_count(replicas if replicas is not None else (base.replicas if base else 1), "--replicas", 1)
    final_shadows = shadows if shadows is not None else (base.shadows if base else None)
    if final_shadows is not None:
        check_count(final_shadows, "--shadows", 0)
    final_amp = amp if amp is not None else (base.amp if base else False)
    return RunConfig(spec, tuple(choices), final_seed, final_device, final_replicas, final_shadows, final_amp)
