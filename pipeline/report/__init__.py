"""Static HTML report of a run: a summary and filterable index, and one page per problem's tree."""

from pipeline.report.build import load_run, run_report

__all__ = ["load_run", "run_report"]
