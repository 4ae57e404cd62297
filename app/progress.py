"""A terminal progress bar for CLI commands: a tqdm bar on a terminal, silence elsewhere.

    with Progress(total=30, desc="render", unit="frame") as bar:
        for ...:
            bar.update()
        bar.summary = "wrote out.mp4"

On a TTY the bar is drawn on stderr and erased at the end; logs and pipes get no bar. Either
way one final line goes to stderr when the block ends: the summary (or "N/M units in X s").
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str = "", unit: str = "it", stream=None,
                 enabled: bool | None = None):
        self.total = int(total)
        self.desc = desc
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.summary: str | None = None  # the final line; None: a count and rate
        self.t0 = time.perf_counter()
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc or None, unit=unit, file=self.stream,
                             leave=False, dynamic_ncols=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def default_summary(self) -> str:
        rate = self.done / self.elapsed if self.elapsed > 0 else 0.0
        head = f"{self.desc}: " if self.desc else ""
        return (f"{head}{self.done}/{self.total} {self.unit}s in {self.elapsed:.1f} s "
                f"({rate:.2f} {self.unit}s/s)")

    def close(self, final_line: bool = True) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if final_line:
            print(self.summary or self.default_summary(), file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On an error the caller prints its own one line; do not add a second.
        self.close(final_line=exc_type is None)
