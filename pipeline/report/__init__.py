"""Static HTML report of a run: a summary and filterable index, and one page per problem's tree;
and a page comparing two runs."""

from pipeline.report.build import RunFilesError, load_run, run_report
from pipeline.report.compare import compare_runs

__all__ = ["RunFilesError", "compare_runs", "load_run", "run_report"]
