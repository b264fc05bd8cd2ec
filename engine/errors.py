"""One exception hierarchy for the engine.

Every error a user can meet says what was wrong, where, and (when it helps) what to do.
``InputError`` and its subclasses mean bad input (the CLI exits 2); anything else that escapes
is an internal error (exit 1).
"""

from __future__ import annotations


class OptimizerError(Exception):
    """Base class of every error the engine raises on purpose."""


class LocatedError(OptimizerError):
    """An error that says what is wrong (``problem``), where (``where``) and what to do (``hint``)."""

    def __init__(self, problem: str, *, where: str = "", hint: str = "") -> None:
        self.problem = problem
        self.where = where
        self.hint = hint
        text = f"{where}: {problem}" if where else problem
        if hint:
            text = f"{text} ({hint})"
        super().__init__(text)


class InputError(LocatedError):
    """Bad input: a file, a scene, an option. ``where`` names the file/object at fault."""


class SceneError(InputError):
    """A scene, object, material, light or camera that breaks the Scene model's rules."""


class ImportFormatError(InputError):
    """A scene file that cannot be read: missing, truncated, or not the format it claims."""


class WireError(InputError):
    """A wire message that cannot be decoded (bad version, bad type, corrupt payload)."""


class ConfigError(InputError):
    """A configuration value (thresholds, options) that is out of range or unknown."""


class NotFound(InputError):
    """Something asked for by id, name or digest that is not stored (a job, an artifact, a blob)."""


class JobNotFound(NotFound):
    """No job with this id in the job store."""


class ArtifactNotFound(NotFound):
    """The job exists but has no artifact of this name."""


class BlobNotFound(NotFound):
    """No blob with this digest in the vault."""


class IdempotencyConflict(InputError):
    """An idempotency key reused for a different request (another kind, options or scene)."""


class InvalidTransition(OptimizerError):
    """A job state change that the job state machine does not allow (for example done → running)."""

    def __init__(self, job_id: str, current: str, requested: str, allowed: list[str]) -> None:
        self.job_id = job_id
        self.current = current
        self.requested = requested
        allowed_text = ", ".join(allowed) if allowed else "none: the job is finished"
        super().__init__(f"job {job_id}: cannot go from {current} to {requested} (allowed from {current}: {allowed_text})")


class StaleAttempt(InvalidTransition):
    """A state change from a worker of an earlier attempt of a job that has since been claimed again."""

    def __init__(self, job_id: str, attempt: int, current_attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.current_attempt = current_attempt
        self.current = self.requested = ""
        OptimizerError.__init__(self, f"job {job_id}: attempt {attempt} is stale (the job is on attempt "
                                      f"{current_attempt}); its result was not recorded")


class StorageError(LocatedError):
    """Stored data that cannot be read or changed as asked (a failed key rotation, a broken store).

    Not bad input: the node's own files are at fault. ``where`` names the file or record.
    """


class IntegrityError(StorageError):
    """Stored data that fails its integrity check: corrupt, truncated or tampered with. Never returned as data."""
