"""The course machinery: running, checking and collecting the weekly notebooks, and the helpers they import.

The library students read (``medssl.data``, ``medssl.models``, ``medssl.calibration``, ...) never imports
this package; it builds on the library.

* :mod:`~medssl.course.manifest`: what every week must produce, the one list everything here reads
* :mod:`~medssl.course.config`: the repository root and ``course.toml``
* :mod:`~medssl.course.check`: the submission checker
* :mod:`~medssl.course.runner`: papermill runs of one week, or of weeks x datasets
* :mod:`~medssl.course.roster`: a class roster (student,dataset rows), each row a chain of weeks
* :mod:`~medssl.course.cluster`: a class's batch as submitit jobs (local or Slurm), one per week of a chain
* :mod:`~medssl.course.aggregate`: class-wide tables and figures
* :mod:`~medssl.course.collect`: hand-in zips, made and taken in
* :mod:`~medssl.course.cli`: ``python -m medssl.course``
* :mod:`~medssl.course.notebook`: what the notebooks import as ``ch`` (``WeekRun``, ``Readme``, ...)
* :mod:`~medssl.course.selfcheck`: the exercises' self-checks and ``self_checks.json``
"""

from .config import PLACEHOLDER_URL, course_config, github_slug

__all__ = ["PLACEHOLDER_URL", "course_config", "github_slug"]
