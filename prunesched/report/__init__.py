"""Reviewing searches: what a search tried, how its fronts moved, and what its front points look like.

>>> from prunesched.report import read_search, write_report
>>> write_report(read_search(Store("prunesched.db"), 1), "report.html")

:func:`read_search` reads one search from its database (read-only, so a running search is not
disturbed); :mod:`prunesched.report.plots` draws it; :func:`write_report` writes the
self-contained HTML page of ``prunesched report``. The names load on first use, so the CLI's
tables do not pay for matplotlib and torch.
"""

from typing import TYPE_CHECKING

from prunesched.lazy import lazy_names

if TYPE_CHECKING:
    from prunesched.report.page import write_report
    from prunesched.report.record import SearchRecord, read_search

__all__ = ["SearchRecord", "read_search", "write_report"]


__getattr__ = lazy_names(
    __name__,
    {"SearchRecord": "prunesched.report.record", "read_search": "prunesched.report.record", "write_report": "prunesched.report.page"},
)
