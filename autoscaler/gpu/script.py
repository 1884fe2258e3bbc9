"""Utilisation scripts for the simulated GPUs: the format, its validation, and the built-in scenario.

A script is YAML (or JSON, which YAML reads too)::

    version: 1                      # optional; only 1 exists
    driver_version: "550.90.07"     # optional, what NVML reports
    seed: 0                         # optional; varies UUIDs and the values drawn from ranges
    gpus:                           # one entry per GPU, NVML index = position
      - model: NVIDIA A100-SXM4-80GB   # default
        memory_mib: 81920              # default
        power_idle_w: 60               # default 60; power is idle + (max - idle) * util / 100
        power_max_w: 400               # default 400
        sm_clock_idle_mhz: 210         # default 210; the SM clock while util is 0, else sm_clock_max_mhz
        sm_clock_max_mhz: 1410         # default 1410 (A100 SXM; an H100/H200 SXM boosts to 1980)
        mem_clock_mhz: 1593            # default 1593 (A100 80GB HBM2e), constant
        uuid: GPU-...                  # default derived from the seed, the node name and the index
        preset: busy                   # busy | idle | bursty | held-idle | falls-off-bus, or trace: (a
                                       #   recorded pod's series, see gpu/tracephases.py), or:
        phases:                        #   a list of phases, played in order
          - seconds: 30                #   how long the phase lasts
            util: [90, 100]            #   percent, a number or [low, high] (drawn once a second)
            memory_mib: 40000          #   memory used (default 0)
            processes: 1               #   processes sharing the work (default 1 if busy or memory held)
            power_w: 350               #   optional, overrides the power model
          - lost: true                 #   falls off the bus: NVML raises GpuIsLost from here on
        loop: true                     # replay the phases when they end (default); false holds the last
        unsupported: [power]           # NVML answers NotSupported for: utilization, power, energy,
                                       #   temperature, clocks, process_utilization, mig
        mig:                           # MIG mode on, with these MIG devices (no device utilisation)
          - {profile: 3g.40gb, memory_mib: 40192, memory_used_mib: 1024}
    pods:                              # optional: the kubelet's answer when no real one is asked
      - {namespace: ml, pod: trainer-0, container: main, gpus: [0, 1]}   # indexes, UUIDs, or "6/0"
                                                                        #   (MIG device 0 of GPU 6)

No I/O here except :func:`load_scenario`, which reads the file it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpufleet.core import names

UNSUPPORTABLE = frozenset(
    {"utilization", "power", "energy", "temperature", "clocks", "process_utilization", "mig"}
)
_GPU_KEYS = frozenset(
    {"model", "memory_mib", "power_idle_w", "power_max_w", "uuid", "preset", "phases", "loop", "unsupported", "mig",
     "trace", "sm_clock_idle_mhz", "sm_clock_max_mhz", "mem_clock_mhz"}
)
_PHASE_KEYS = frozenset({"seconds", "util", "memory_mib", "processes", "power_w", "lost"})
_TOP_KEYS = frozenset({"version", "driver_version", "seed", "gpus", "pods", "name"})
_POD_KEYS = frozenset({"namespace", "pod", "container", "gpus", "resource_name"})
_MAX_GPUS = 1024

# preset -> phases, memory as a fraction of the GPU's memory
PRESETS: dict[str, list[dict[str, Any]]] = {
    "busy": [{"seconds": 60, "util": [88, 100], "memory_fraction": 0.6}],
    "idle": [{"seconds": 60, "util": 0, "memory_fraction": 0.0}],
    "bursty": [
        {"seconds": 20, "util": [70, 100], "memory_fraction": 0.3},
        {"seconds": 40, "util": 0, "memory_fraction": 0.3},
    ],
    "held-idle": [{"seconds": 60, "util": 0, "memory_fraction": 0.5, "processes": 1}],
    "falls-off-bus": [{"seconds": 90, "util": [40, 60], "memory_fraction": 0.4}, {"lost": True}],
}


class ScriptError(ValueError):
    """A utilisation script is invalid; ``errors`` lists every problem with its path."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"reading GPU script {source}: " + "; ".join(errors))


@dataclass(frozen=True, slots=True)
class Phase:
    seconds: float  # math.inf for a terminal lost phase
    util_low: int
    util_high: int
    memory_mib: int
    processes: int
    power_w: float | None = None
    lost: bool = False


@dataclass(frozen=True, slots=True)
class MigSpec:
    profile: str
    memory_mib: int
    memory_used_mib: int = 0


@dataclass(frozen=True, slots=True)
class GpuScript:
    model: str
    memory_mib: int
    power_idle_w: float
    power_max_w: float
    phases: tuple[Phase, ...]
    loop: bool = True
    uuid: str | None = None
    unsupported: frozenset[str] = frozenset()
    mig: tuple[MigSpec, ...] = ()
    sm_clock_idle_mhz: int = 210
    sm_clock_max_mhz: int = 1410
    mem_clock_mhz: int = 1593

    def phase_at(self, t: float) -> Phase:
        """The phase playing ``t`` seconds after the start."""
        total = sum(p.seconds for p in self.phases)
        if self.loop and math.isfinite(total) and total > 0:
            t = t % total
        for phase in self.phases:
            if t < phase.seconds:
                return phase
            t -= phase.seconds
        return self.phases[-1]


@dataclass(frozen=True, slots=True)
class PodSpec:
    namespace: str
    pod: str
    container: str
    devices: tuple[str, ...]  # "3" (GPU index), "GPU-..." / "MIG-..." (UUID), "6/0" (MIG slot of GPU 6)
    resource_name: str = names.GPU_RESOURCE


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    gpus: tuple[GpuScript, ...]
    pods: tuple[PodSpec, ...] = ()
    driver_version: str = "550.90.07"
    seed: int = 0


BUILTIN_SCRIPT = """\
# The built-in scenario of `gpufleet agent --simulate`: one node with 8 A100 80GB GPUs.
name: builtin-8xA100
version: 1
driver_version: "550.90.07"
gpus:
  - preset: busy            # 0: training, held by ml/trainer-0
  - preset: busy            # 1: training, held by ml/trainer-0
  - preset: bursty          # 2: 20 s busy then 40 s idle, memory kept; held by ml/batch-infer
  - preset: idle            # 3: nobody holds it
  - preset: held-idle       # 4: a notebook holding 40 GiB at 0 %: the reclaim target
  - preset: idle            # 5: nobody holds it
  - unsupported: [process_utilization]
    phases:                 # 6: MIG mode, two 3g.40gb devices; one used by research/probe
      - {seconds: 60, util: 0}
    mig:
      - {profile: 3g.40gb, memory_mib: 40192, memory_used_mib: 9000}
      - {profile: 3g.40gb, memory_mib: 40192, memory_used_mib: 0}
  - preset: falls-off-bus   # 7: busy for 90 s, then GpuIsLost; held by ml/stuck-job
pods:
  - {namespace: ml, pod: trainer-0, container: main, gpus: [0, 1]}
  - {namespace: ml, pod: batch-infer, container: worker, gpus: [2]}
  - {namespace: research, pod: notebook-7f9c, container: jupyter, gpus: [4]}
  - {namespace: research, pod: probe, container: main, gpus: ["6/0"], resource_name: nvidia.com/mig-3g.40gb}
  - {namespace: ml, pod: stuck-job, container: main, gpus: [7]}
"""


def builtin_scenario() -> Scenario:
    """The 8-GPU scenario that ``--simulate`` plays without a script."""
    import yaml  # only the simulator needs YAML; the NVML agent never loads it

    return parse_scenario(yaml.safe_load(BUILTIN_SCRIPT), "<builtin>")


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a script file. Raises ScriptError."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ScriptError(str(path), [f"cannot read: {err.strerror or err}"]) from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ScriptError(str(path), [f"not YAML/JSON: {err}"]) from err
    return parse_scenario(data, str(path))


def parse_scenario(data: object, source: str = "<script>") -> Scenario:
    """Validate a decoded script, collecting every error with its path. Raises ScriptError."""
    errors: list[str] = []
    if not isinstance(data, dict):
        raise ScriptError(source, ["top level: must be a mapping with a 'gpus' list"])
    _unknown_keys(data, _TOP_KEYS, "", errors)
    if data.get("version", 1) != 1:
        errors.append(f"version: must be 1, got {data.get('version')!r}")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        errors.append("seed: must be an integer")
        seed = 0
    driver_version = data.get("driver_version", "550.90.07")
    if not isinstance(driver_version, str):
        errors.append("driver_version: must be a string")
        driver_version = "550.90.07"
    raw_gpus = data.get("gpus")
    gpus: list[GpuScript] = []
    if not isinstance(raw_gpus, list) or not raw_gpus:
        errors.append("gpus: must be a non-empty list")
    elif len(raw_gpus) > _MAX_GPUS:
        errors.append(f"gpus: at most {_MAX_GPUS} GPUs, got {len(raw_gpus)}")
    else:
        for i, raw in enumerate(raw_gpus):
            gpu = _parse_gpu(raw, f"gpus[{i}]", errors)
            if gpu is not None:
                gpus.append(gpu)
    pods = _parse_pods(data.get("pods", []), gpus if len(gpus) == len(raw_gpus or []) else None, errors)
    if errors:
        raise ScriptError(source, errors)
    return Scenario(
        name=str(data.get("name") or Path(source).stem),
        gpus=tuple(gpus),
        pods=tuple(pods),
        driver_version=driver_version,
        seed=seed,
    )


def _unknown_keys(raw: dict[str, Any], allowed: frozenset[str], path: str, errors: list[str]) -> None:
    for key in raw:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            errors.append(f"{where}: unknown key (expected one of {', '.join(sorted(allowed))})")


def _number(raw: dict[str, Any], key: str, default: float, path: str, errors: list[str], minimum: float = 0) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        errors.append(f"{path}.{key}: must be a number")
        return default
    if value < minimum:
        errors.append(f"{path}.{key}: must be >= {minimum}")
        return default
    return float(value)


def _integer(raw: dict[str, Any], key: str, default: int, path: str, errors: list[str], minimum: int = 0) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(f"{path}.{key}: must be an integer")
        return default
    if value < minimum:
        errors.append(f"{path}.{key}: must be >= {minimum}")
        return default
    return value


def _parse_gpu(raw: object, path: str, errors: list[str]) -> GpuScript | None:
    if not isinstance(raw, dict):
        errors.append(f"{path}: must be a mapping")
        return None
    start = len(errors)
    _unknown_keys(raw, _GPU_KEYS, path, errors)
    model = raw.get("model", "NVIDIA A100-SXM4-80GB")
    if not isinstance(model, str) or not model:
        errors.append(f"{path}.model: must be a non-empty string")
    memory_mib = _integer(raw, "memory_mib", 81920, path, errors, minimum=1)
    idle_w = _number(raw, "power_idle_w", 60.0, path, errors)
    max_w = _number(raw, "power_max_w", 400.0, path, errors)
    if max_w < idle_w:
        errors.append(f"{path}.power_max_w: must be >= power_idle_w ({idle_w})")
    sm_idle = _integer(raw, "sm_clock_idle_mhz", 210, path, errors, minimum=1)
    sm_max = _integer(raw, "sm_clock_max_mhz", 1410, path, errors, minimum=1)
    if sm_max < sm_idle:
        errors.append(f"{path}.sm_clock_max_mhz: must be >= sm_clock_idle_mhz ({sm_idle})")
    mem_clock = _integer(raw, "mem_clock_mhz", 1593, path, errors, minimum=1)
    uuid = raw.get("uuid")
    if uuid is not None and (not isinstance(uuid, str) or not uuid.startswith("GPU-")):
        errors.append(f"{path}.uuid: must be a string starting with 'GPU-'")
    loop = raw.get("loop", True)
    if not isinstance(loop, bool):
        errors.append(f"{path}.loop: must be true or false")
    unsupported = raw.get("unsupported", [])
    if not isinstance(unsupported, list) or any(u not in UNSUPPORTABLE for u in unsupported):
        errors.append(f"{path}.unsupported: must be a list of {', '.join(sorted(UNSUPPORTABLE))}")
        unsupported = []
    phases = _parse_phases(raw, memory_mib, path, errors)
    mig = _parse_mig(raw.get("mig", []), memory_mib, f"{path}.mig", errors)
    if len(errors) > start:
        return None
    return GpuScript(
        model=model,
        memory_mib=memory_mib,
        power_idle_w=idle_w,
        power_max_w=max_w,
        phases=phases,
        loop=loop,
        uuid=uuid,
        unsupported=frozenset(unsupported),
        mig=mig,
        sm_clock_idle_mhz=sm_idle,
        sm_clock_max_mhz=sm_max,
        mem_clock_mhz=mem_clock,
    )


def _parse_phases(raw: dict[str, Any], memory_mib: int, path: str, errors: list[str]) -> tuple[Phase, ...]:
    if "trace" in raw:  # a recorded pod's series (GenTD26 layout): gpufleet.autoscaler.gpu.tracephases
        from gpufleet.autoscaler.gpu.tracephases import trace_phases

        if "preset" in raw or "phases" in raw:
            errors.append(f"{path}: give one of preset, phases or trace")
            return ()
        return trace_phases(raw["trace"], memory_mib, f"{path}.trace", errors)
    has_preset, has_phases = "preset" in raw, "phases" in raw
    if has_preset and has_phases:
        errors.append(f"{path}: give either preset or phases, not both")
        return ()
    if has_preset:
        preset = raw["preset"]
        if preset not in PRESETS:
            errors.append(f"{path}.preset: must be one of {', '.join(PRESETS)}, got {preset!r}")
            return ()
        raw_phases: object = [
            {**{k: v for k, v in p.items() if k != "memory_fraction"},
             **({"memory_mib": int(memory_mib * p["memory_fraction"])} if "memory_fraction" in p else {})}
            for p in PRESETS[preset]
        ]
        phases_path = f"{path}.preset({preset})"
    else:
        raw_phases = raw.get("phases", [{"seconds": 60, "util": 0}])
        phases_path = f"{path}.phases"
    if not isinstance(raw_phases, list) or not raw_phases:
        errors.append(f"{phases_path}: must be a non-empty list")
        return ()
    phases = []
    for j, raw_phase in enumerate(raw_phases):
        phase = _parse_phase(raw_phase, memory_mib, f"{phases_path}[{j}]", errors)
        if phase is None:
            continue
        if phase.lost and j != len(raw_phases) - 1:
            errors.append(f"{phases_path}[{j}].lost: a lost GPU stays lost, so this must be the last phase")
        phases.append(phase)
    return tuple(phases)


def _parse_phase(raw: object, memory_mib: int, path: str, errors: list[str]) -> Phase | None:
    if not isinstance(raw, dict):
        errors.append(f"{path}: must be a mapping")
        return None
    start = len(errors)
    _unknown_keys(raw, _PHASE_KEYS, path, errors)
    lost = raw.get("lost", False)
    if not isinstance(lost, bool):
        errors.append(f"{path}.lost: must be true or false")
        lost = False
    if lost:
        return Phase(math.inf, 0, 0, 0, 0, lost=True) if len(errors) == start else None
    if "seconds" not in raw:
        errors.append(f"{path}.seconds: required")
    seconds = _number(raw, "seconds", 60.0, path, errors)
    if seconds <= 0:
        errors.append(f"{path}.seconds: must be > 0")
    util = raw.get("util", 0)
    low = high = 0
    if isinstance(util, list) and len(util) == 2 and all(_is_int(u) for u in util):
        low, high = util
    elif _is_int(util):
        low = high = util
    else:
        errors.append(f"{path}.util: must be a percentage or [low, high]")
    if not 0 <= low <= high <= 100:
        errors.append(f"{path}.util: must satisfy 0 <= low <= high <= 100")
    used = _integer(raw, "memory_mib", 0, path, errors)
    if used > memory_mib:
        errors.append(f"{path}.memory_mib: {used} exceeds the GPU's {memory_mib} MiB")
    processes = _integer(raw, "processes", 1 if (high > 0 or used > 0) else 0, path, errors)
    power_w = raw.get("power_w")
    if power_w is not None:
        power_w = _number(raw, "power_w", 0.0, path, errors)
    if len(errors) > start:
        return None
    return Phase(seconds, low, high, used, processes, power_w)


def _parse_mig(raw: object, memory_mib: int, path: str, errors: list[str]) -> tuple[MigSpec, ...]:
    if not isinstance(raw, list):
        errors.append(f"{path}: must be a list")
        return ()
    specs = []
    for k, item in enumerate(raw):
        where = f"{path}[{k}]"
        if not isinstance(item, dict) or not isinstance(item.get("profile"), str):
            errors.append(f"{where}: must be a mapping with a profile such as 1g.10gb")
            continue
        size = _integer(item, "memory_mib", 0, where, errors, minimum=1)
        used = _integer(item, "memory_used_mib", 0, where, errors)
        if used > size:
            errors.append(f"{where}.memory_used_mib: exceeds memory_mib {size}")
        specs.append(MigSpec(item["profile"], size, used))
    if sum(s.memory_mib for s in specs) > memory_mib:
        errors.append(f"{path}: MIG devices hold more memory than the GPU's {memory_mib} MiB")
    return tuple(specs)


def _parse_pods(raw: object, gpus: list[GpuScript] | None, errors: list[str]) -> list[PodSpec]:
    if not isinstance(raw, list):
        errors.append("pods: must be a list")
        return []
    pods = []
    for i, item in enumerate(raw):
        path = f"pods[{i}]"
        if not isinstance(item, dict):
            errors.append(f"{path}: must be a mapping")
            continue
        _unknown_keys(item, _POD_KEYS, path, errors)
        ident = {k: item.get(k, "main" if k == "container" else None) for k in ("namespace", "pod", "container")}
        for key, value in ident.items():
            if not isinstance(value, str) or not value:
                errors.append(f"{path}.{key}: must be a non-empty string")
        devices = item.get("gpus")
        if not isinstance(devices, list) or not devices:
            errors.append(f"{path}.gpus: must be a non-empty list of GPU indexes, UUIDs or 'gpu/mig' slots")
            continue
        refs = [str(d) for d in devices]
        if gpus is not None:
            for j, ref in enumerate(refs):
                problem = _check_device_ref(ref, gpus)
                if problem:
                    errors.append(f"{path}.gpus[{j}]: {problem}")
        resource = item.get("resource_name", names.GPU_RESOURCE)
        pods.append(PodSpec(str(ident["namespace"]), str(ident["pod"]), str(ident["container"]), tuple(refs),
                            str(resource)))
    return pods


def _check_device_ref(ref: str, gpus: list[GpuScript]) -> str | None:
    if ref.startswith(("GPU-", "MIG-")):
        return None  # checked against generated UUIDs when the simulator builds its devices
    gpu_part, _, mig_part = ref.partition("/")
    if not gpu_part.isdigit() or int(gpu_part) >= len(gpus):
        return f"no GPU {gpu_part!r} (there are {len(gpus)})"
    if mig_part and (not mig_part.isdigit() or int(mig_part) >= len(gpus[int(gpu_part)].mig)):
        return f"GPU {gpu_part} has no MIG device {mig_part!r}"
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
