"""Errors that carry a message meant for a person, not a traceback.

Every command-line entry point catches :class:`MedSSLError` and prints its
message (which always says what to do next) instead of a stack trace.
"""

from __future__ import annotations


class MedSSLError(Exception):
    """Base class for errors whose message tells the user what to do."""


class UnknownDatasetError(MedSSLError, KeyError):
    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DatasetNotAvailableError(MedSSLError):
    """The npz file is missing and could not be downloaded."""


class CorruptDatasetError(MedSSLError):
    """The npz file exists but its MD5 does not match medmnist's INFO registry."""


class UnsupportedTaskError(MedSSLError):
    """The dataset's task (multi-label, 3D) is not covered by this course library."""


class WeightsUnavailableError(MedSSLError):
    """Pretrained weights were required but could not be loaded."""


class CheckpointError(MedSSLError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


class OutputExistsError(MedSSLError):
    """An output folder already holds results and --overwrite was not given."""


class ConfigError(MedSSLError, ValueError):
    """A parameter is out of range or inconsistent."""
