"""Writers for the report data that analyses contribute (``misalign.inference.sections``):
terminal and Markdown tables, matplotlib figures."""

from .figures import prior_check_figure, save_figure, sweep_figure
from .tables import to_markdown, to_rich
from .terminal import print_summary, summary_markdown

__all__ = ["print_summary", "prior_check_figure", "save_figure", "summary_markdown",
           "sweep_figure", "to_markdown", "to_rich"]
