"""Report data objects and their writers (terminal, JSON, Markdown)."""

from .e1 import E1Report, to_json, to_markdown, to_rich_table
from .gstudy import GStudyReport

__all__ = ["E1Report", "GStudyReport", "to_json", "to_markdown", "to_rich_table"]
