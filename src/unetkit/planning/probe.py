"""The machine probe: how fast this device trains each candidate network, measured, cached.

A plan that fits a time budget needs images per second, and those depend on the CPU (AVX-512 with
native bf16 or AVX2 only), the thread count, the precision path and the network. FLOP counts
mislead on CPUs (memory-bound layers, layouts, oneDNN kernels), so the probe times a few real
training steps of each candidate — the :class:`~unetkit.training.Trainer`'s own step
(:func:`~unetkit.training.trainer.optimisation_step`), on random data of the candidate's patch
size, after warm-up steps — and keeps the result in a small JSON cache per machine, so a second
plan on the same machine costs nothing.

Cache: ``$UNETKIT_CACHE_DIR/probe.json`` (default ``$XDG_CACHE_HOME/unetkit`` or
``~/.cache/unetkit``); entries are keyed by CPU (name, family/model numbers, kernel level, flags),
torch version, device, precision, threads and the candidate. ``UNETKIT_CACHE_DIR=off`` disables it.
A timing taken while other processes held the CPUs (:func:`contention`) is used once, not cached.
Writers change only their own entries, under a lock, on the file as it is then
(:func:`_update_cache`): plans on the nodes of a cluster that share a home folder keep each other's
timings.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from .. import runtime
from ..utils import atomic_write_text

#: Timed steps per candidate (after the warm-up); the median is kept. Slow steps stop the
#: timing early: once PROBE_SECONDS have been timed, the steps so far are enough.
PROBE_STEPS = 3
PROBE_SECONDS = 3.0
#: Warm-up: steps until one is within WARMUP_SETTLED of the step before (at most WARMUP_STEPS, or
#: PROBE_SECONDS of them). The first steps of a fresh net allocate its buffers and build its
#: kernels: on a 2-core AVX-512 CPU a width-32 net at 16 × 128² took 0.64, 0.55, 0.46, then
#: 0.41–0.47 s a step, so timing from the second step read 2–7 % slow (BENCHMARKS.md, "Probe
#: warm-up")
WARMUP_STEPS = 3
WARMUP_SETTLED = 0.9
#: a run whose steps take under this share of the cached timing shows that timing was taken on a
#: busy machine (probe noise between idle plans is within ±10 %, BENCHMARKS.md "Probe warm-up"),
#: so :func:`forget_if_contradicted` drops it
RUN_CONTRADICTS = 0.8
#: how long a writer waits for another's lock on the cache before it leaves its timings unsaved
LOCK_WAIT_S = 10.0
#: other processes took at least this share of the CPU time the probe's threads could use while it
#: timed a candidate: the machine was busy, so the (slow) timing serves this plan but is not
#: cached for the next ones (:func:`contention`)
BUSY_SHARE = 0.2
#: a timing shorter than this is not judged: at 100 jiffies a second, a few stray kernel ticks
#: would read as a busy machine
BUSY_MIN_SECONDS = 0.5


@dataclass(frozen=True)
class Candidate:
    """One network/patch/batch configuration the planner may choose."""

    model: str
    base_features: int
    depth: int
    patch: tuple[int, ...]
    batch_size: int

    def key(self) -> str:
        return (
            f"{self.model}-w{self.base_features}-d{self.depth}-"
            f"{'x'.join(map(str, self.patch))}-b{self.batch_size}"
        )

    def options(self) -> dict:
        return {"base_features": self.base_features, "depth": self.depth}


@dataclass
class Measurement:
    """Seconds per training step of one candidate on this machine, and where the number came from."""

    candidate: Candidate
    seconds_per_step: float
    cached: bool
    #: its entry in the cache (with the channels, classes and dimensions it was timed for)
    entry: str = ""
    #: not timed: scaled from another patch's timing once the probe had used its share
    estimated: bool = False
    #: an estimate's source: the cache entry it was scaled from, and by how much (so a run that
    #: beats the estimate by far can forget the timing it came from)
    source: str = ""
    factor: float = 1.0

    @property
    def images_per_second(self) -> float:
        return self.candidate.batch_size / self.seconds_per_step

    def to_dict(self) -> dict:
        return {
            **asdict(self.candidate),
            "patch": list(self.candidate.patch),
            # significant digits: a GPU step of 3 ms keeps its precision (train re-reads them)
            "seconds_per_step": float(f"{self.seconds_per_step:.4g}"),
            "images_per_s": round(self.images_per_second, 3),
            "cached": self.cached,
            **({"entry": self.entry} if self.entry else {}),
            **({"estimated": True} if self.estimated else {}),
            **(
                {"estimated_from": self.source, "factor": float(f"{self.factor:.6g}")}
                if self.source
                else {}
            ),
        }


@dataclass(frozen=True)
class Estimate:
    """A step's seconds estimated from a timed one: ``seconds`` = the timing of cache entry
    ``source`` × ``factor``."""

    seconds: float
    source: str = ""
    factor: float = 1.0


def cache_path() -> Optional[Path]:
    """Where measurements are kept (``None`` when ``UNETKIT_CACHE_DIR=off``)."""
    root = os.environ.get("UNETKIT_CACHE_DIR")
    if root == "off":
        return None
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(base) / "unetkit")
    return Path(root) / "probe.json"


def machine_key(device: torch.device, dtype: Optional[torch.dtype]) -> str:
    """What makes a measurement valid elsewhere: CPU model (its name, family and model numbers,
    kernel level and relevant flags: a cache in a home folder shared by the nodes of a cluster
    must not mix CPU generations that virtual machines all call "AMD EPYC"), torch, device,
    precision, threads."""
    info = runtime.cpu_info()
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda" and torch.cuda.is_available()
        else f"{info.model} ({info.family or 'family ?'}; {info.isa}; {' '.join(info.flags)})"
    )
    precision = str(dtype).replace("torch.", "") if dtype is not None else "fp32"
    return f"{name}|torch {torch.__version__}|{device.type}|{precision}|{torch.get_num_threads()} threads"


def key_differences(then: str, now: str) -> list[str]:
    """What differs between two :func:`machine_key` values that matters for speed, one phrase
    each: the CPU or GPU and device, the precision, and on CPU the thread count (torch's version
    does not count). Keys made before the CPU's family numbers were part of them compare by the
    CPU's name; a key of another form gives no differences."""
    a, b = then.split("|"), now.split("|")
    if len(a) != 5 or len(b) != 5:
        return []
    names = (a[0], b[0] if " (" in a[0] else b[0].split(" (")[0])
    out = []
    if names[0] != names[1] or a[2] != b[2]:
        out.append(f"{a[0]} ({a[2]}), this run {b[0]} ({b[2]})")
    if a[3] != b[3]:
        out.append(f"{a[3]}, this run {b[3]}")
    if b[2] == "cpu" and a[4] != b[4]:
        out.append(f"{a[4]}, this run {b[4]}")
    return out


def _load_cache(path: Optional[Path]) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a damaged cache is only a cache: measure again
    return data if isinstance(data, dict) else {}


def _save_cache(path: Optional[Path], data: dict) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only home: the plan is still right, only the next one measures again


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``path``'s lock file (POSIX record locks, which NFS supports);
    yields whether it was obtained within ``LOCK_WAIT_S``. Where locking is not available (no
    ``fcntl``, a file system without locks) it yields ``False`` at once."""
    try:
        import fcntl
    except ImportError:  # Windows: one user, rarely two plans at once
        yield False
        return
    with contextlib.ExitStack() as stack:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = stack.enter_context(open(path.with_name(path.name + ".lock"), "a"))
        except OSError:
            yield False
            return
        got = _wait_for_lock(fcntl, handle)
        try:
            yield got
        finally:
            if got:
                fcntl.lockf(handle, fcntl.LOCK_UN)


def _wait_for_lock(fcntl, handle) -> bool:
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                return False  # held too long, or no locks on this file system
            time.sleep(0.05)


def _update_cache(
    path: Optional[Path], machine: str, changes: dict[str, Optional[float]]
) -> dict[str, Optional[float]]:
    """Apply ``changes`` (entry → seconds, or ``None`` to drop it) to ``machine``'s entries of
    the cache file as it is now, and save it; the lock keeps two writers (plans on two nodes
    sharing a home folder) from each saving a copy read before the other's change. Returns the
    values the changed entries had before. Without the lock (timed out, not supported) it
    saves all the same: a lost timing is only measured again."""
    if path is None or not changes:
        return {}
    with _locked(path):
        cache = _load_cache(path)
        entries = cache.get(machine)
        if not isinstance(entries, dict):
            entries = cache[machine] = {}
        before = {entry: entries.get(entry) for entry in changes}
        for entry, seconds in changes.items():
            if seconds is None:
                entries.pop(entry, None)
            else:
                entries[entry] = seconds
        _save_cache(path, cache)
    return before


@dataclass(frozen=True)
class CpuSnapshot:
    """Jiffies of this process's CPUs (busy incl. steal, and all) and this process's own CPU
    seconds, at one moment (:func:`cpu_snapshot`)."""

    busy: int
    total: int
    cpus: int
    own_seconds: float
    wall: float


def cpu_snapshot() -> Optional[CpuSnapshot]:
    """The CPU counters :func:`contention` compares, from ``/proc/stat`` for the CPUs this process
    may run on (``None`` where there is no ``/proc/stat``: not Linux). Hand-read: psutil is no
    dependency, and it neither restricts to the affinity set nor counts steal as busy."""
    if _cpu_quota():
        return None  # a container limited by time, not by cores: /proc/stat shows the host
    try:
        cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        lines = Path("/proc/stat").read_text().splitlines()
    except (AttributeError, OSError):
        return None
    busy = total = counted = 0
    for line in lines:
        name, *fields = line.split() or [""]
        if name not in cpus or len(fields) < 8:
            continue
        counted += 1
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        busy += user + nice + system + irq + softirq + steal
        total += user + nice + system + idle + iowait + irq + softirq + steal
    if not total:
        return None
    t = os.times()
    return CpuSnapshot(busy, total, counted, t.user + t.system, time.perf_counter())


def _cpu_quota() -> bool:
    """Whether this process's cgroup caps its CPU time (Docker ``--cpus``, Kubernetes limits):
    there the host's other tenants fill ``/proc/stat`` without taking anything from the probe's
    share, so :func:`cpu_snapshot` cannot tell a busy machine."""
    for path, unlimited in (
        ("/sys/fs/cgroup/cpu.max", "max"),  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1"),  # cgroup v1
        ("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1"),
    ):
        try:
            first = Path(path).read_text().split()[0]
        except (OSError, IndexError):
            continue
        return first != unlimited
    return False


def contention(
    before: Optional[CpuSnapshot], after: Optional[CpuSnapshot], threads: int
) -> Optional[float]:
    """The share of what ``threads`` threads could compute between two snapshots that other
    processes (and the hypervisor, as steal) took instead: 0 on an idle machine, 0.5 where
    another job keeps every core busy. CPUs beyond ``threads`` are theirs to use freely.
    ``None`` where it cannot be told (no snapshot, under :data:`BUSY_MIN_SECONDS` apart)."""
    if before is None or after is None or after.total <= before.total:
        return None
    wall, cpus = after.wall - before.wall, after.cpus
    if wall < BUSY_MIN_SECONDS or cpus != before.cpus:
        return None
    per_second = (after.total - before.total) / (wall * cpus)  # jiffies per CPU-second
    others = (after.busy - before.busy) / per_second - (after.own_seconds - before.own_seconds)
    spare = max(0, cpus - threads) * wall  # CPUs the probe's threads leave to others
    return max(0.0, others - spare) / (min(threads, cpus) * wall)


def time_training_step(
    candidate: Candidate,
    in_channels: int,
    num_classes: int,
    spatial_dims: int,
    device: torch.device,
    dtype: Optional[torch.dtype],
    steps: int = PROBE_STEPS,
) -> float:
    """Median seconds of ``steps`` training steps (after one warm-up) of ``candidate`` on random
    data; fewer when the timed steps already took ``PROBE_SECONDS``."""
    from ..data.dataset import patch_geometry
    from ..losses import DeepSupervisionLoss, create_loss
    from ..models import create_model
    from ..training.trainer import optimisation_step

    torch.manual_seed(0)
    model = create_model(
        candidate.model,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        init="torch",
        **candidate.options(),
    )
    model.outputs = "all"
    model.to(device)
    channels_last = runtime.use_channels_last(model, device, None, dtype=dtype, training=True)
    fmt = runtime.memory_format(spatial_dims, channels_last)
    model.to(memory_format=fmt).train()
    loss_fn = DeepSupervisionLoss(create_loss("dice_ce"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    patch, label = patch_geometry(model, candidate.patch)  # as the trainer: label size → input
    x = torch.randn(candidate.batch_size, in_channels, *patch, device=device)
    x = x.contiguous(memory_format=fmt)
    y = torch.randint(0, max(num_classes, 2), (candidate.batch_size, *label), device=device)

    def one_step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        optimisation_step(model, loss_fn, optimizer, x, y, None, device, dtype, 12.0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    return settled_median(one_step, steps)


def settled_median(one_step: Callable[[], float], steps: int = PROBE_STEPS) -> float:
    """Median of ``steps`` calls of ``one_step`` (each returns its seconds) after a warm-up that
    lasts until a step is within ``WARMUP_SETTLED`` of the one before (at most ``WARMUP_STEPS``
    steps or ``PROBE_SECONDS``); the timed steps stop early once they add up to ``PROBE_SECONDS``."""
    warm: list[float] = []
    while True:
        warm.append(one_step())
        settled = len(warm) >= 2 and warm[-1] >= WARMUP_SETTLED * warm[-2]
        if settled or len(warm) >= WARMUP_STEPS or sum(warm) >= PROBE_SECONDS:
            break
    times: list[float] = []
    while len(times) < steps:
        times.append(one_step())
        if sum(times) >= PROBE_SECONDS:
            break
    return float(sorted(times)[len(times) // 2])


def timing_cost(step: float) -> float:
    """The seconds timing a candidate whose steps take ``step`` seconds is expected to take: its
    warm-up and timed steps, each phase cut at :data:`PROBE_SECONDS` after the step that crosses
    it."""
    warm_up = min((WARMUP_STEPS - 1) * step, PROBE_SECONDS + step)  # warm-up usually settles
    return warm_up + min(PROBE_STEPS * step, PROBE_SECONDS + step)


def _wider(timed: Measurement, cand: Candidate) -> float:
    """A step of ``cand`` from a timed narrower candidate on the same patch (a convolution's cost
    grows with the width squared)."""
    return timed.seconds_per_step * (cand.base_features / timed.candidate.base_features) ** 2


def measure(
    candidates: list[Candidate],
    in_channels: int,
    num_classes: int,
    spatial_dims: int,
    device: torch.device,
    dtype: Optional[torch.dtype],
    timer: Optional[Callable[[Candidate], float]] = None,
    progress: Optional[Callable[[str], None]] = None,
    max_seconds: Optional[float] = None,
    estimate: Optional[Callable[[Candidate], Optional[Estimate]]] = None,
) -> list[Measurement]:
    """Seconds per step of the candidates: from the cache when this machine measured them before,
    else timed (``timer`` replaces the timing, for tests) and added to the cache.

    ``max_seconds`` bounds the timing: once the probe has spent that long, the remaining uncached
    candidates (give them narrowest first: the next would be slower still) are left out of the
    result. The first candidate is measured even then, unless ``estimate`` gives it a number (a
    3D step of a large patch takes seconds: timing each smaller patch a short plan tries would
    spend the budget it plans); an estimate is not cached."""
    path = cache_path()
    machine = machine_key(device, dtype)
    entries = _load_cache(path).get(machine)
    entries = dict(entries) if isinstance(entries, dict) else {}
    timed_now: dict[str, Optional[float]] = {}

    def key(cand: Candidate) -> str:
        return f"{cand.key()}-c{in_channels}-k{num_classes}-{spatial_dims}d"

    def timed(cand: Candidate) -> Measurement:
        if progress:
            progress(f"probing {cand.key()} …")
        before = cpu_snapshot() if timer is None and device.type == "cpu" else None
        seconds = float(  # a plain float: plans go into checkpoints, loaded weights-only
            timer(cand)
            if timer is not None
            else time_training_step(cand, in_channels, num_classes, spatial_dims, device, dtype)
        )
        entries[key(cand)] = seconds
        busy = contention(before, cpu_snapshot() if before else None, torch.get_num_threads())
        if busy is not None and busy >= BUSY_SHARE:
            if progress:  # kept, a slow number would shape every later plan on this machine
                progress(
                    f"other processes took {100 * busy:.0f} % of the CPU time while "
                    f"{cand.key()} was timed: the timing serves this plan and is not cached"
                )
        else:
            timed_now[key(cand)] = seconds
        return Measurement(cand, seconds, cached=False, entry=key(cand))

    out: list[Measurement] = []
    start = time.perf_counter()
    for cand in candidates:
        left = None if max_seconds is None else max_seconds - (time.perf_counter() - start)
        guess = estimate(cand) if estimate is not None and not out else None
        # a timing expected to outlast what is left of the share is not started: a wider 3D net's
        # warm-up and timed steps take many seconds where the share is one
        expected = _wider(out[-1], cand) if out else (guess.seconds if guess else None)
        spent = left is not None and (
            left <= 0 or (expected is not None and timing_cost(expected) > left)
        )
        if not spent:
            guess = None  # within the share: timed (the first is timed if nothing estimates it)
        if key(cand) in entries:
            out.append(Measurement(cand, float(entries[key(cand)]), cached=True, entry=key(cand)))
        elif guess is not None:
            if progress:
                progress(f"estimating {cand.key()} from a larger patch's timing (probe share used)")
            out.append(
                Measurement(
                    cand,
                    float(guess.seconds),
                    cached=False,
                    estimated=True,
                    source=guess.source,
                    factor=guess.factor,
                )
            )
        elif out and spent:
            if progress:
                why = (
                    f"timing it would take ≈ {timing_cost(expected):.0f} s, more than the "
                    "probe's share of the budget has left"
                    if left is not None and left > 0 and expected is not None
                    else "the probe has used its share of the budget"
                )
                progress(f"not probing {cand.key()}: {why}")
        else:
            out.append(timed(cand))
    # a wider net that steps faster than a narrower one on the same patch contradicts itself: a
    # cached number was measured on a busy machine. The cached ones of such a pair are timed again.
    for i, a in enumerate(out):
        for j, b in enumerate(out):
            same = (a.candidate.model, a.candidate.depth, a.candidate.patch, a.candidate.batch_size)
            if (
                same
                == (b.candidate.model, b.candidate.depth, b.candidate.patch, b.candidate.batch_size)
                and a.candidate.base_features < b.candidate.base_features
                and a.seconds_per_step >= b.seconds_per_step
            ):
                for k in (i, j):
                    if out[k].cached:
                        out[k] = timed(out[k].candidate)
    if timer is None:
        _update_cache(path, machine, timed_now)
    return out


def forget_if_contradicted(machine: str, entry: str, run_seconds: float) -> Optional[float]:
    """Drop a cached timing that a real run of the same candidate on the same machine beat by far
    (its steps took under ``RUN_CONTRADICTS`` of it): the probe was timed on a busy machine, and
    kept in the cache that slow number would shape every later plan here. The next plan times it
    again. Only faster runs count: a slower run may wait for its data or share the machine, which
    the clock schedule absorbs. Returns the forgotten seconds, or ``None``."""
    path = cache_path()
    entries = _load_cache(path).get(machine)
    cached = entries.get(entry) if isinstance(entries, dict) else None
    if not isinstance(cached, (int, float)) or not run_seconds < RUN_CONTRADICTS * cached:
        return None
    _update_cache(path, machine, {entry: None})
    return float(cached)


__all__ = [
    "BUSY_SHARE",
    "Candidate",
    "CpuSnapshot",
    "Estimate",
    "Measurement",
    "cache_path",
    "contention",
    "cpu_snapshot",
    "forget_if_contradicted",
    "key_differences",
    "machine_key",
    "measure",
    "settled_median",
    "time_training_step",
]
