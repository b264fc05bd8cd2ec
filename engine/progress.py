"""The one progress callback type: the CLI draws it, the service streams it, the add-on shows it."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

# progress(stage, fraction 0..1 of that stage, message)
Progress = Callable[[str, float, str], None]


def no_progress(stage: str, fraction: float, message: str) -> None:
    """A Progress that ignores everything."""


class ProgressBar:
    """Draws progress on a terminal (one updating line), or plain lines when not a TTY."""

    def __init__(self, stream: TextIO | None = None, width: int = 28) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_stage = ""
        self._start = time.perf_counter()

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        fraction = min(1.0, max(0.0, fraction))
        elapsed = time.perf_counter() - self._start
        if self.tty:
            filled = round(fraction * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r{stage:<10} [{bar}] {fraction:4.0%} {message[:40]:<40} {elapsed:6.1f}s")
            if fraction >= 1.0:
                self.stream.write("\n")
        elif stage != self._last_stage or fraction >= 1.0:
            self.stream.write(f"{stage}: {fraction:.0%} {message} ({elapsed:.1f}s)\n")
        self.stream.flush()
        self._last_stage = stage
