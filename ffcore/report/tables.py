"""Reading the tables a study wrote (`ffcore.report.provenance.write_table`: a provenance line,
then the CSV) and the Markdown a notebook cell renders about them."""

from __future__ import annotations

from pathlib import Path


def read_table_csv(csv_path: str | Path):
    """A table CSV written by `write_table` as a DataFrame: its provenance line (`# ...`) skipped,
    nothing else (a `#` inside a cell is data, not a comment)."""
    import pandas as pd

    with open(csv_path) as handle:
        stamped = handle.readline().startswith("#")
    return pd.read_csv(csv_path, comment=None, skiprows=1 if stamped else 0)


def read_table(study, name: str):
    """The table `name` a study wrote to its tables folder (`study.tables_dir`), or an error that
    says which cell writes it."""
    path = Path(study.tables_dir) / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"table {path} does not exist yet; run the cell that writes {name!r} first")
    return read_table_csv(path)


def markdown(text: str):
    """Text for a notebook cell to render (IPython's Markdown; the plain string outside IPython)."""
    try:
        from IPython.display import Markdown
    except ImportError:   # plain Python: the text itself
        return text
    return Markdown(text)
