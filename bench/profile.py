"""Sampling profiles of the benchmark's processes: every thread, on the wall clock.

A flow process does its work on several threads (the worker, the decode thread, the
columnar engines' pools, the Kafka clients'), so a profile of one thread's CPU hides
what bounds it: in a backlog the worker spent a third of its time waiting for the
columnar engine while the decode thread sat idle. The sampler records each thread's
stack whether it runs or waits, and the summary says, per thread, where in the
project's code its time goes and what it was doing there.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

SAMPLES_PER_S = 50
"""Sampled twice as often, the flow ran about a quarter slower in a backlog (two cores); at
this rate its figures stayed within their run-to-run spread, with a few thousand samples."""
PROJECT_PACKAGES = ("streamlane/", "sinks/", "flows/", "enrichers/", "schemas/")
THREADS_SHOWN = 4
WAITING_SHARE = 0.05
"""A thread away from its most frequent place in fewer samples than this was waiting there."""
PLACES_SHOWN = 8


def sampler_path() -> str:
    """The sampling profiler installed next to this interpreter (a dev dependency)."""
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise SystemExit("benchmark: --profile needs py-spy (pip install -e '.[dev]')")
    return found


@dataclass
class Sampler:
    """A sampler attached to one process until it exits (or `finish` stops it)."""

    output: Path
    process: subprocess.Popen[bytes]

    @classmethod
    def attach(cls, pid: int, output: Path) -> Sampler:
        """Start sampling process `pid`; the folded stacks go to `output` when it ends."""
        command = [
            sampler_path(), "record", "--pid", str(pid), "--threads", "--idle",
            "--nonblocking", "--rate", str(SAMPLES_PER_S), "--format", "raw",
            "--output", str(output),
        ]  # fmt: skip
        log = output.with_suffix(".log").open("wb")
        return cls(output, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

    def finish(self, timeout_s: float = 30) -> list[str]:
        """Stop sampling (the stacks are written on the way out) and summarize them."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if not self.output.exists():
            log = self.output.with_suffix(".log")
            last = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
            return [f"no profile was recorded ({last}); see {log}"]
        return summarize(self.output.read_text())


def _place(frame: str) -> str:
    """`function (path:line)` with the path from the package folder on."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")")
    for package in (*PROJECT_PACKAGES, "site-packages/"):
        if package in path:
            path = path[path.index(package) :].removeprefix("site-packages/")
            break
    return f"{name} ({path})" if where else name


def summarize(folded: str) -> list[str]:
    """Per thread, its share of the samples at each place, named by the innermost frame of
    the project's code and, after an arrow, the innermost frame of all (what it was doing
    there: parsing, waiting, producing...).

    Threads that did several things come first, most varied first; a thread found at one
    place in nearly every sample was waiting there all along, and is only named.
    """
    places: dict[str, Counter[str]] = defaultdict(Counter)
    for line in folded.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        thread_id, *frames = stack.split(";")
        # Threads of one role (a request handler, say) count together under its name.
        thread = thread_id.partition("): ")[2] or thread_id
        ours = [f for f in frames if any(p in f for p in PROJECT_PACKAGES)]
        leaf = _place(frames[-1]) if frames else "(no Python frame)"
        where = _place(ours[-1]) if ours else "(outside the project's code)"
        place = where if ours and ours[-1] == frames[-1] else f"{where} → {leaf}"
        places[thread][place] += int(samples)
    # How much of a thread's time was spent away from its most frequent place.
    varied = {
        thread: 1 - counts.most_common(1)[0][1] / counts.total()
        for thread, counts in places.items()
    }
    longest = max((counts.total() for counts in places.values()), default=0)
    busy = sorted(
        (t for t in places if varied[t] >= WAITING_SHARE and places[t].total() >= longest / 10),
        key=lambda t: -varied[t],
    )
    lines = []
    for thread in busy[:THREADS_SHOWN]:
        total = places[thread].total()
        lines.append(f"{thread}: {total} samples")
        for place, at in places[thread].most_common(PLACES_SHOWN):
            lines.append(f"  {100 * at / total:5.1f}%  {place}")
    waiting = sorted(t for t in places if t not in busy[:THREADS_SHOWN])
    if waiting:
        lines.append(f"also sampled (waiting, short-lived or not shown): {', '.join(waiting)}")
    return lines
