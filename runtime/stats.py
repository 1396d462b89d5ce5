"""Latency percentiles, FPS and memory for the live pipeline and the benchmarks.

Each stage owns one `Latency` (a preallocated ring of the most recent samples), so
recording a sample is a store and an increment: no allocation per frame, no lock (one
writer per stage; readers tolerate a sample in flight).
"""
import os
import time
from typing import Dict, Iterable, List, Optional

import numpy as np

DEFAULT_WINDOW = 4096
#: Stages shown live on the overlay (all of them go into the final table).
OVERLAY_STAGES = ("detect", "infer", "latency")


class Latency:
    """Most recent `window` samples of one stage, in seconds; percentiles in ms."""

    def __init__(self, name: str, window: int = DEFAULT_WINDOW) -> None:
        self.name = name
        self._buf = np.zeros(window, np.float64)
        self._n = 0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self._buf[self._n % len(self._buf)] = seconds
        self._n += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return self._n

    def samples(self) -> np.ndarray:
        return self._buf[:min(self._n, len(self._buf))]

    def percentile_ms(self, q: float) -> float:
        s = self.samples()
        return float(np.percentile(s, q) * 1e3) if len(s) else float("nan")

    def summary(self) -> Dict[str, float]:
        return {"count": self._n, "p50_ms": self.percentile_ms(50), "p95_ms": self.percentile_ms(95),
                "mean_ms": self.total / self._n * 1e3 if self._n else float("nan")}


class Fps:
    """Frames per second over the recent window (live display) and over the whole run."""

    def __init__(self, window: int = 64) -> None:
        self._t = np.zeros(window, np.float64)
        self._n = 0
        self.start = None  # type: Optional[float]
        self.last = None  # type: Optional[float]

    def tick(self, now: Optional[float] = None) -> None:
        now = time.perf_counter() if now is None else now
        if self.start is None:
            self.start = now
        self.last = now
        self._t[self._n % len(self._t)] = now
        self._n += 1

    @property
    def frames(self) -> int:
        return self._n

    def recent(self) -> float:
        k = min(self._n, len(self._t))
        if k < 2:
            return 0.0
        newest = self._t[(self._n - 1) % len(self._t)]
        oldest = self._t[(self._n - k) % len(self._t)]
        return (k - 1) / (newest - oldest) if newest > oldest else 0.0

    def overall(self) -> float:
        if self._n < 2 or self.last is None or self.start is None or self.last <= self.start:
            return 0.0
        return (self._n - 1) / (self.last - self.start)


class Stats:
    """Per-stage latencies + end-to-end latency + output FPS + counters for one run."""

    def __init__(self, stages: Iterable[str], window: int = DEFAULT_WINDOW) -> None:
        self.stages = {name: Latency(name, window) for name in stages}  # type: Dict[str, Latency]
        self.fps = Fps()
        self.counters = {}  # type: Dict[str, int]

    def __getitem__(self, stage: str) -> Latency:
        return self.stages[stage]

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def summary(self) -> Dict[str, object]:
        return {"fps": self.fps.overall(), "frames": self.fps.frames,
                "stages": {k: v.summary() for k, v in self.stages.items() if v.count},
                "counters": dict(self.counters)}

    def overlay_lines(self) -> List[str]:
        """Short text for the live overlay: FPS and p50/p95 of the busiest stages."""
        lines = ["%.0f fps" % self.fps.recent()]
        for name, lat in self.stages.items():
            if lat.count and name in OVERLAY_STAGES:
                lines.append("%s %.1f/%.1f ms" % (name, lat.percentile_ms(50), lat.percentile_ms(95)))
        return lines

    def table(self) -> str:
        return format_table(["stage", "count", "p50 ms", "p95 ms", "mean ms"],
                            [[k, str(v.count), "%.2f" % v.percentile_ms(50), "%.2f" % v.percentile_ms(95),
                              "%.2f" % (v.total / v.count * 1e3)] for k, v in self.stages.items() if v.count])


def format_table(header: List[str], rows: List[List[str]]) -> str:
    """Plain-text table (monospace columns), used by the CLI and the benchmark script."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    fmt = "  ".join("%%-%ds" % w for w in widths)
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt % tuple(header), sep] + [fmt % tuple(str(c) for c in r) for r in rows])


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
