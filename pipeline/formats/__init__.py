"""Training-data formats written by the export stage: pure functions from trees and thoughts to rows."""

from __future__ import annotations

# Format name -> the files it writes under RUN/sft/ (the Snakefile declares them as outputs).
FORMAT_FILES = {
    "sft": ("journey.parquet", "shortcut.parquet"),
    "preference": ("preference.parquet",),
    "step_preference": ("step_preference.parquet",),
    "stepwise": ("stepwise.parquet",),
    "revision": ("revision.parquet",),
    "o1_journey": ("o1_journey.parquet",),
    "sharegpt": ("journey_sharegpt.parquet", "shortcut_sharegpt.parquet", "dataset_info.json"),
}
FORMATS = tuple(FORMAT_FILES)


def output_files(formats: list[str]) -> list[str]:
    """
    >>> output_files(["preference", "sft"])
    ['preference.parquet', 'journey.parquet', 'shortcut.parquet']
    """
    return [name for f in formats for name in FORMAT_FILES[f]]
