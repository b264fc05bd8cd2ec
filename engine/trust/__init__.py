"""The Trust Engine: decides whether an optimized result is good enough without trusting whoever made it.

Sampled quality metrics, peer re-verification with signed votes, weighted consensus, reputation, and the
tamper-evident audit log (``engine.trust.audit``). Submodules import their heavy dependencies themselves;
importing this package imports nothing.
"""

from __future__ import annotations
