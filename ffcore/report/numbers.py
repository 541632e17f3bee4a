"""Every number the chapter cites, as a LaTeX macro generated from the tables (showyourwork style).

`cited_numbers(profile)` picks the numbers from the written tables by rule, not by list:

- every table with "AP easy %" / "AP medium %" / "AP hard %" columns and a first column that names
  each row once: the three APs of every row, and the hard AP's interval where the table has one;
- every table with paired differences ("deasy AP pts" ...): the three differences of every row, and
  each difference's interval (the chapter's paragraphs state a verdict with its interval);
- `efficiency`: each model's parameter count, true and thop's;
- the run's duration (total and per notebook) from the run's summary: the run from empty caches
  when the profile has one (it trained every model), else the last run's summary;
- the wall clock of the run from empty caches, every part of it (`summary.measured_parts`, read from
  results/<profile>/run_from_empty_caches.log), as `\\RunMinutesFromEmptyCaches`.

`write_numbers(profile, out_dir)` writes `numbers.tex` (`\\newcommand` per number) and `numbers.json`
(macro -> {"artifact", "row", "column", "value"}): `artifact` is relative to results/<profile>/,
`row` the row's first-column value (or its `run` where the first column repeats, as in the seed
comparisons), `column` the header, `value` the text as printed. The tests
check every entry against its CSV.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from ffcore.paths import results_dir
from ffcore.report.tables import read_table_csv

AP_COLUMNS = ("AP easy %", "AP medium %", "AP hard %")
AP_INTERVAL = ("hard CI low", "hard CI high")
DELTA_COLUMNS = ("deasy AP pts", "dmedium AP pts", "dhard AP pts")
# a pruned variant's difference from the parent it was pruned from (the pruning table)
PARENT_DELTA_COLUMNS = ("deasy AP pts vs parent", "dmedium AP pts vs parent", "dhard AP pts vs parent")
DELTA_INTERVAL = ("deasy CI low", "deasy CI high", "dmedium CI low", "dmedium CI high", "dhard CI low", "dhard CI high")
# The run's summaries, most informative first: the run that trained everything, then the last run.
SUMMARIES = ("summary_from_empty_caches.md", "summary.md")
WALL_TIME_HEADING = "## Wall time of the run that wrote these artifacts"

_DIGITS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")


@dataclass(frozen=True)
class CitedNumber:
    macro: str        # without the backslash; letters only
    artifact: str     # relative to results/<profile>/
    row: str
    column: str
    value: str        # as printed

    def as_record(self) -> dict:
        return {"artifact": self.artifact, "row": self.row, "column": self.column, "value": self.value}


def macro_name(*parts: str) -> str:
    """Letters only, CamelCase: digits spelled out ("v1_ap", "AP hard %" -> "VOneApApHard")."""
    words = []
    for part in parts:
        for token in re.findall(r"[A-Za-z]+|\d", str(part)):
            words.append(_DIGITS[int(token)] if token.isdigit() else token[0].upper() + token[1:].lower())
    name = "".join(words)
    if not name:
        raise ValueError(f"no letters or digits to make a macro name from {parts!r}")
    return name


def format_number(value: float, digits: int, signed: bool = False) -> str:
    if digits == 0:
        return f"{int(round(value)):,}"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def parse_printed(text: str) -> float:
    """The number a printed value stands for ("+4.7" -> 4.7, "592,371" -> 592371)."""
    return float(text.replace(",", "").replace("+", ""))


def printed_matches(printed: str, value: float) -> bool:
    """Whether `printed` is `value` rounded to the digits it shows."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return math.isclose(parse_printed(printed), value, abs_tol=0.5 * 10 ** -decimals + 1e-9)


def row_column(table) -> str | None:
    """The column that names each row once: the first column, or `run` where the first repeats (a seed
    comparison's `comparison` column is the same on its per-seed rows and its `pooled` row)."""
    for column in (table.columns[0], "run"):
        if column in table.columns and not table[column].astype(str).duplicated().any():
            return column
    return None


def _table_numbers(tables_dir: Path) -> list[CitedNumber]:
    found: list[CitedNumber] = []
    for csv in sorted(tables_dir.glob("*.csv")):
        table = read_table_csv(csv)
        if table.empty:
            continue
        first = row_column(table)
        if first is None:
            continue        # no column names each row once
        keys = table[first].astype(str)
        artifact = f"tables/{csv.name}"
        wanted: list[tuple[str, int, bool]] = []
        if all(c in table.columns for c in AP_COLUMNS):
            wanted += [(c, 1, False) for c in AP_COLUMNS]
            wanted += [(c, 1, False) for c in AP_INTERVAL if c in table.columns]
        if all(c in table.columns for c in DELTA_COLUMNS):
            wanted += [(c, 1, True) for c in DELTA_COLUMNS]
            wanted += [(c, 1, True) for c in DELTA_INTERVAL if c in table.columns]
        wanted += [(c, 1, True) for c in PARENT_DELTA_COLUMNS if c in table.columns]
        if csv.stem == "efficiency":
            wanted += [(c, 0, False) for c in ("parameters", "thop_parameters") if c in table.columns]
        for key, (_, row) in zip(keys, table.iterrows()):
            for column, digits, signed in wanted:
                value = row[column]
                if isinstance(value, float) and math.isnan(value):
                    continue
                found.append(CitedNumber(macro_name(csv.stem, key, column), artifact, key, column,
                                         format_number(float(value), digits, signed)))
    return found


def wall_times(summary: Path) -> dict[str, float]:
    """notebook (and "total") -> minutes, from the wall-time section `write_summary` writes."""
    lines = summary.read_text().splitlines()
    if WALL_TIME_HEADING not in lines:
        return {}
    times = {}
    for line in lines[lines.index(WALL_TIME_HEADING) + 1:]:
        if line.startswith("## "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[2].endswith(" min"):
            times[cells[0]] = float(cells[2].removesuffix(" min"))
    return times


def run_summary(profile: str) -> Path | None:
    """The summary whose wall times are the run's duration (see `SUMMARIES`), or None."""
    for name in SUMMARIES:
        path = results_dir() / profile / name
        if path.is_file() and wall_times(path):
            return path
    return None


def _duration_numbers(profile: str) -> list[CitedNumber]:
    summary = run_summary(profile)
    if summary is None:
        return []
    return [CitedNumber(macro_name("run minutes", notebook), summary.name, notebook, "wall time",
                        f"{minutes:.1f}") for notebook, minutes in wall_times(summary).items()]


EMPTY_CACHES_MACRO = "RunMinutesFromEmptyCaches"


def _empty_caches_number(profile: str) -> list[CitedNumber]:
    from ffcore.report.summary import DURATION_LOG, measured_parts

    parts = measured_parts(profile)
    if not parts:
        return []
    return [CitedNumber(EMPTY_CACHES_MACRO, DURATION_LOG, "total", "wall clock", f"{sum(parts) / 60:.1f}")]


def cited_numbers(profile: str) -> list[CitedNumber]:
    numbers = (_table_numbers(results_dir() / profile / "tables") + _duration_numbers(profile)
               + _empty_caches_number(profile))
    seen: dict[str, CitedNumber] = {}
    for number in numbers:
        if number.macro in seen:
            raise ValueError(f"two numbers make the macro \\{number.macro}: {seen[number.macro]} and {number}")
        seen[number.macro] = number
    return numbers


def latex_value(printed: str) -> str:
    return printed.replace(",", "{,}")


def write_numbers(profile: str, out_dir: str | Path) -> dict[str, Path]:
    """numbers.tex and numbers.json of the profile in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    numbers = cited_numbers(profile)
    tex = [f"% generated by ffcore from results/{profile}/ (see numbers.json for each number's source); do not edit"]
    tex += [f"\\newcommand{{\\{n.macro}}}{{{latex_value(n.value)}}}" for n in numbers]
    (out_dir / "numbers.tex").write_text("\n".join(tex) + "\n")
    (out_dir / "numbers.json").write_text(
        json.dumps({n.macro: n.as_record() for n in numbers}, indent=1, ensure_ascii=False) + "\n")
    return {"tex": out_dir / "numbers.tex", "json": out_dir / "numbers.json"}


def check_numbers(profile: str, numbers_json: str | Path) -> list[str]:
    """Every entry of a numbers.json that disagrees with its source, as messages (empty: all agree)."""
    problems = []
    entries = json.loads(Path(numbers_json).read_text())
    for macro, entry in entries.items():
        if not re.fullmatch(r"[A-Za-z]+", macro):
            problems.append(f"\\{macro}: not a LaTeX macro name (letters only)")
            continue
        source = results_dir() / profile / entry["artifact"]
        if not source.is_file():
            problems.append(f"\\{macro}: {source} does not exist")
            continue
        if source.suffix == ".md":
            actual = wall_times(source).get(entry["row"])
        elif source.suffix == ".log":
            from ffcore.report.summary import measured_parts

            actual = sum(measured_parts(profile)) / 60
        else:
            table = read_table_csv(source)
            key = row_column(table)
            rows = table.iloc[:0] if key is None else table[table[key].astype(str) == entry["row"]]
            actual = None if rows.empty or entry["column"] not in table.columns else float(rows.iloc[0][entry["column"]])
        if actual is None:
            problems.append(f"\\{macro}: no row {entry['row']!r} / column {entry['column']!r} in {source}")
        elif not printed_matches(entry["value"], actual):
            problems.append(f"\\{macro}: prints {entry['value']} but {source} has {actual}")
    return problems
