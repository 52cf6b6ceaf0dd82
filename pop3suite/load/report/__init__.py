"""HTML report with matplotlib charts for load runs and capacity runs
(``pop3suite report RUN...``): see :func:`render_report` and docs/report.md."""

from .inputs import ReportInputError
from .render import render_report

__all__ = ["ReportInputError", "render_report"]
