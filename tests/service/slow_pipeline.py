"""A pipeline kind for service tests: runs for a while, reporting progress (so it can be cancelled)."""

from __future__ import annotations

import time

from engine.service.pipelines import JobContext, PipelineSpec, register_pipeline


def run_slow(ctx: JobContext) -> None:
    """Sleep ``options.params.seconds`` (default 3 s) in 50 ms steps, then store an artifact."""
    seconds = float(ctx.options.get("params", {}).get("seconds", 3.0))
    steps = max(1, int(seconds / 0.05))
    for step in range(steps):
        ctx.progress("sleep", step / steps, f"step {step + 1} of {steps}")
        time.sleep(0.05)
    ctx.add_artifact("slept.txt", f"slept {seconds} s".encode(), "text/plain")
    ctx.progress("sleep", 1.0, "done")


register_pipeline(PipelineSpec("slow", "tests.service.slow_pipeline:run_slow", description="test: sleeps"))
