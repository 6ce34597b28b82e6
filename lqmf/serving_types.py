"""The types, errors and name rules a face names (in type hints, except clauses, request schemas), from the layers
below the library: a face imports them from here, and reaches the work itself only through the Library's calls."""

from __future__ import annotations

from agents.classifiers.artifact import NAME_MAX as CLASSIFIER_NAME_MAX
from agents.classifiers.artifact import NAME_PATTERN as CLASSIFIER_NAME_PATTERN
from agents.classifiers.errors import ClassifierNotFound, ClassifierRefused, DataError
from server.runtime.discovery import ModelRecord
from server.runtime.endpoint_spec import ModelChoiceNeeded
from server.runtime.jobs import Job, NotLoadedNow

__all__ = ["CLASSIFIER_NAME_MAX", "CLASSIFIER_NAME_PATTERN", "ClassifierNotFound", "ClassifierRefused", "DataError",
           "Job", "ModelChoiceNeeded", "ModelRecord", "NotLoadedNow"]
