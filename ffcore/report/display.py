"""How the study's tables look in a notebook: every column shown, and the caption they were saved with.

`Study.save_table` keeps the caption in the table's `attrs`; `configure_display` (called by
`open_study`) sets pandas to show every column (a wide table no longer hides its hard-AP
columns behind "...") and, inside an IPython kernel, renders a captioned table's HTML with its
caption above it. Plain-text output is pandas' own.
"""

from __future__ import annotations

import html

CAPTION = "caption"   # key of DataFrame.attrs that holds a saved table's caption


def configure_display() -> None:
    import pandas as pd

    pd.set_option("display.max_columns", None)
    pd.set_option("display.max_colwidth", 100)   # explanatory text columns, not cut at 50 characters
    pd.set_option("display.width", 180)
    try:
        from IPython import get_ipython
    except ImportError:   # plain Python: nothing renders HTML
        return
    shell = get_ipython()
    if shell is None:
        return
    shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, captioned_html)


def captioned_html(table) -> str | None:
    """pandas' HTML of `table`, with the caption of its `attrs` (when it has one) above it."""
    body = table._repr_html_()
    caption = table.attrs.get(CAPTION)
    if body is None or not caption:
        return body
    return f'<p style="max-width: 60em"><b>Table.</b> {html.escape(str(caption))}</p>\n{body}'
