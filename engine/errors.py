"""One exception hierarchy for the engine.

Every error a user can meet says what was wrong, where, and (when it helps) what to do.
``InputError`` and its subclasses mean bad input (the CLI exits 2); anything else that escapes
is an internal error (exit 1).
"""

from __future__ import annotations


class OptimizerError(Exception):
    """Base class of every error the engine raises on purpose."""


class InputError(OptimizerError):
    """Bad input: a file, a scene, an option. ``where`` names the file/object at fault."""

    def __init__(self, problem: str, *, where: str = "", hint: str = "") -> None:
        self.problem = problem
        self.where = where
        self.hint = hint
        text = f"{where}: {problem}" if where else problem
        if hint:
            text = f"{text} ({hint})"
        super().__init__(text)


class SceneError(InputError):
    """A scene, object, material, light or camera that breaks the Scene model's rules."""


class ImportFormatError(InputError):
    """A scene file that cannot be read: missing, truncated, or not the format it claims."""


class WireError(InputError):
    """A wire message that cannot be decoded (bad version, bad type, corrupt payload)."""


class ConfigError(InputError):
    """A configuration value (thresholds, options) that is out of range or unknown."""
