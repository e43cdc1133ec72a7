"""The errors a user can cause and fix.

Every failure that bad input causes (an option, a file, a folder, a permission, a corrupt
run file) raises a :class:`UserError`; the ``iclab`` command prints its message on one line
and exits with status 2. Anything else is a bug in iclab and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message names the option, file or folder and what would be valid."""


class ConfigError(UserError, ValueError):
    """A config field holds a value outside its allowed range, or fields contradict."""


class RunFolderError(UserError):
    """A run folder is missing, not an iclab run, held by another process, or unreadable."""


class CheckpointError(RunFolderError, ValueError):
    """A checkpoint file is missing, malformed, or does not fit the run's config."""


class DatasetError(UserError, ValueError):
    """A dataset file is missing or malformed."""


class TrainingDivergedError(UserError, FloatingPointError):
    """Training diverged (a non-finite loss, or one far above its start); the last good
    state was saved."""


__all__ = ["CheckpointError", "ConfigError", "DatasetError", "RunFolderError",
           "TrainingDivergedError", "UserError"]
