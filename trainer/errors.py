"""The user-facing errors of trainer.

The CLI prints their message as one line and exits with status 2, so messages name the
thing (file, option), the value found and what was expected.
"""

from __future__ import annotations


class TrainerError(Exception):
    """Base class of every error trainer raises for bad input (files, options, runs)."""


class ConfigError(TrainerError, ValueError):
    """A training, model or evaluation option has an invalid value."""


class ModelFileError(TrainerError):
    """A model file is missing, unreadable, or not a model this trainer can use."""


class RunDirError(TrainerError):
    """A run directory cannot be used as asked (not empty, not a run, inconsistent)."""


class InputFileError(TrainerError):
    """An input file for prediction is missing or has the wrong type or shape."""
