"""LaTeX for the study's tables: escaping, human column names, and a printed layout that fits a page.

The CSV keeps every column; the `.tex` prints a choice of them (`TexLayout`). The rule, in order:

1. the caller's `columns` when given (CSV column names, in the order to print);
2. otherwise every column except the provenance ones (`PROVENANCE_COLUMNS`: checkpoint hashes,
   "loaded (checkpoint exists)" statuses, machine load), which the sidecar JSON already records;
3. an interval's bounds never get columns of their own: a value column followed by
   "<k> CI low" / "<k> CI high" prints as one cell, "94.3 [90.6, 97.0]";
4. with at least three rows, a column holding one value (missing cells aside) moves to the
   caption ("val images: 100");
5. a paired difference's verdict ("<setting> verdict") prints under the difference and its interval,
   in the same cell, so a comparison table keeps every setting's verdict however narrow it is;
6. a column that repeats an earlier printed column cell for cell (a run named like its model)
   prints once; a comparison table (differences with verdicts) prints what names its rows and its
   differences, and leaves the APs of each arm and their spreads to the CSV (the AP tables print them),
   and its "comparison" column too where "run" and "vs" name every row;
7. above `max_columns` printed columns, the first column and the paired differences stay, the
   other columns fill the room left in their order, and the three settings' APs print all or not
   at all (a table with the easy AP only reads as if easy were the measure); the caption names
   every column left to the CSV, so nothing disappears silently.

Tables longer than `LONGTABLE_ROWS` rows are a `longtable` (breaks across pages; `xltabular` when
columns wrap; one font size smaller); shorter ones a `table` float (`tabularx` when columns wrap). Missing values print as an en dash, sentinel values (`SENTINELS`: the seed -1 of a
"mean over seeds" row) as an empty cell. Long text columns wrap (`p{}` columns sized from their
share of the text). Everything here is pure string work on a DataFrame: no TeX is run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

LONGTABLE_ROWS = 40
MAX_COLUMNS = 10
# Font size by number of printed columns, with the characters of that size across \linewidth
# (A4, 2.5 cm margins; an estimate that keeps p{} columns from pushing a table off the page).
FONT_SIZES = (*[(r"\small", 95)] * 6, *[(r"\footnotesize", 105)] * 3, (r"\scriptsize", 125))
# A text cell longer than this wraps in a p{} column, never narrower than MIN_WRAP characters;
# PADDING: the column separation, in characters.
WRAP_AFTER = 24
MIN_WRAP = 10
PADDING = 3

PROVENANCE_COLUMNS = frozenset({"checkpoint", "status", "load_average"})
# (column, value) pairs that mark "not applicable" in a CSV (kept there so the column stays numeric).
SENTINELS = frozenset({("seed", -1)})

_ESCAPES = {
    "\\": r"\textbackslash{}", "%": r"\%", "_": r"\_\allowbreak{}", "&": r"\&", "#": r"\#", "$": r"\$",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}",
    # pdflatex's default input encoding takes UTF-8, but these need a text-mode command or a package.
    "±": r"\ensuremath{\pm}", "≥": r"\ensuremath{\geq}", "≤": r"\ensuremath{\leq}", "×": r"\ensuremath{\times}",
    "→": r"\ensuremath{\rightarrow}", "−": "-", "Δ": r"\ensuremath{\Delta}", "…": r"\dots{}",
    "≈": r"\ensuremath{\approx}", "µ": r"\ensuremath{\mu}", "°": r"\ensuremath{^\circ}",
}
_ESCAPE_PATTERN = re.compile("|".join(re.escape(k) for k in _ESCAPES))

# Whole-name renames; anything else goes through `column_label`'s general rules.
COLUMN_NAMES = {
    "thop_parameters": "parameters (thop)",
    "missed_by_thop": "missed by thop",
    "share_%": "share %",
    "fp32_weights_MB": "FP32 weights MB",
    "model_file_mb": "model file MB",
    "peak_rss_delta_mb": "peak RSS +MB",
    "vs_reference": "vs reference",
    "kernel_ms": "kernel ms",
}
_DELTA = re.compile(r"^d(easy|medium|hard) AP pts(.*)$")
_GFLOPS = re.compile(r"^GFLOPs_(\d+)$")


# a dot or slash between letters, as in a module path ("attention.levels.0") or a repository
# ("fokouarnaud/FeatherFace"): a place the line may break
_DOTTED = re.compile(r"(?<=[A-Za-z])([./])(?=[A-Za-z])")


def escape(text: Any) -> str:
    """`text` as LaTeX text: every special character (% _ & # $ { } ~ ^ \\ < >) made literal, and a line
    break allowed after the "_" and the inner "." or "/" of identifiers."""
    return _DOTTED.sub(r"\1\\allowbreak{}", _ESCAPE_PATTERN.sub(lambda m: _ESCAPES[m.group(0)], str(text)))


def column_label(name: str) -> str:
    """A reader's name for a CSV column ("deasy AP pts" -> "Δ easy (AP pts)", "GFLOPs_640" -> "GFLOPs at 640"),
    as plain text (escape it for LaTeX)."""
    if name in COLUMN_NAMES:
        return COLUMN_NAMES[name]
    delta = _DELTA.match(name)
    if delta:
        return f"Δ {delta.group(1)} (AP pts){delta.group(2)}"
    gflops = _GFLOPS.match(name)
    if gflops:
        return f"GFLOPs at {gflops.group(1)}"
    return name.replace("_", " ")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value)


def format_value(value: Any, column: str = "", float_format: str = "%.4g") -> str:
    """One cell as LaTeX: missing -> en dash, sentinel -> empty, floats by `float_format`."""
    if _is_missing(value):
        return "--"
    if (column, value) in SENTINELS:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15 and "%.4g" == float_format:
        value = int(value)
    if isinstance(value, float):
        return escape(float_format % value)
    if isinstance(value, int) and abs(value) >= 10000:
        return f"{value:,}".replace(",", r"\,")    # 592\,371: thin-space thousands
    if hasattr(value, "item") and not isinstance(value, str):   # numpy scalar
        return format_value(value.item(), column, float_format)
    return escape(value)


def interval_cell(value: Any, low: Any, high: Any, digits: int = 1, stacked: bool = False) -> str:
    """"94.3 [90.6, 97.0]" (LaTeX); only the value when the bounds are missing, an en dash when all are.
    `stacked`: the interval on a second line of the same cell (narrow columns of wide tables)."""
    if _is_missing(value):
        return "--"
    text = f"{float(value):.{digits}f}"
    if _is_missing(low) or _is_missing(high):
        return escape(text)
    interval = f"[{float(low):.{digits}f}, {float(high):.{digits}f}]"
    if stacked:   # "\\ {}[" : a bare "\\ [" would read the interval as \\'s optional spacing
        return r"\begin{tabular}[t]{@{}r@{}}" + escape(text) + r"\\ {}" + escape(interval) + r"\end{tabular}"
    return escape(f"{text} {interval}")


@dataclass(frozen=True)
class PrintedColumn:
    """One printed column: its header, the CSV columns it reads (value, and an interval's bounds), and
    the verdict column printed under the value, if any."""

    header: str
    sources: tuple[str, ...]
    verdict: str | None = None

    @property
    def is_interval(self) -> bool:
        return len(self.sources) == 3

    @property
    def read(self) -> tuple[str, ...]:
        return (*self.sources, self.verdict) if self.verdict else self.sources


def _verdict_column(name: str, columns: Sequence[str]) -> str | None:
    """"easy verdict" for a difference column "deasy AP pts..." when the table has it."""
    delta = _DELTA.match(name)
    verdict = f"{delta.group(1)} verdict" if delta else None
    return verdict if verdict in columns else None


def _repeats(name: str, earlier: Sequence[str], rows: Sequence[dict]) -> bool:
    """Whether column `name` holds, row for row, the same values as one of the `earlier` columns."""
    return bool(rows) and any(all(str(row.get(name)) == str(row.get(other)) for row in rows) for other in earlier)


AP_SETTING_COLUMNS = ("AP easy %", "AP medium %", "AP hard %")
# verdict texts of the comparison tables -> the word a cell prints, and what it means (in the note)
SHORT_VERDICTS = {"one seed: not established": "one seed", "inside the noise": "noise"}
SHORT_VERDICT_MEANINGS = {"one seed": "one training run on a side, so no verdict",
                          "noise": "the interval contains zero"}


def _comparison_columns(printed: list[PrintedColumn], rows: Sequence[dict]) -> list[PrintedColumn]:
    """A comparison table's print (rule 6): what names a row, then the differences with their verdicts.
    Its "comparison" text ("a vs b") prints only where "run" and "vs" do not already say it: when the
    runs repeat (several comparisons pooled in one table), it is the only name of a row."""
    measures = [i for i, p in enumerate(printed) if p.sources[0] in AP_SETTING_COLUMNS or _DELTA.match(p.sources[0])]
    first = measures[0] if measures else len(printed)
    kept = [p for i, p in enumerate(printed) if i < first or _DELTA.match(p.sources[0])]
    names = [p.sources[0] for p in kept]
    runs = [str(row.get("run")) for row in rows]
    if {"comparison", "run", "vs"} <= set(names) and len(set(runs)) == len(runs):
        kept = [p for p in kept if p.sources[0] != "comparison"]
    return kept


def _within_cap(printed: list[PrintedColumn], cap: int) -> list[PrintedColumn]:
    """At most `cap` columns by rule 7 of the module docstring, in their printed order."""
    differences = [p for p in printed[1:] if _DELTA.match(p.sources[0])]
    others = [p for p in printed[1:] if p not in differences]
    kept = {id(p) for p in [printed[0], *differences, *others[: max(0, cap - 1 - len(differences))]]}
    aps = [p for p in printed if p.sources[0] in AP_SETTING_COLUMNS]
    if sum(id(p) in kept for p in aps) < len(aps):
        kept -= {id(p) for p in aps}
    return [p for p in printed if id(p) in kept][:cap]


def _interval_bounds(columns: Sequence[str]) -> dict[str, tuple[str, str]]:
    """value column -> (low, high) for every "<k> CI low"/"<k> CI high" pair after a column naming <k>."""
    found: dict[str, tuple[str, str]] = {}
    for i, name in enumerate(columns):
        if not name.endswith(" CI low"):
            continue
        key = name[: -len(" CI low")]
        high = f"{key} CI high"
        if high not in columns:
            continue
        for candidate in reversed(columns[:i]):
            if key in candidate and "CI" not in candidate:
                found[candidate] = (name, high)
                break
    return found


@dataclass(frozen=True)
class TexLayout:
    """What a table prints. `columns`: CSV columns in print order (None: the module's rule);
    `max_columns`: the cap on printed columns; `longtable_rows`: above this, a longtable."""

    columns: tuple[str, ...] | None = None
    max_columns: int = MAX_COLUMNS
    longtable_rows: int = LONGTABLE_ROWS
    float_format: str = "%.4g"

    @classmethod
    def from_record(cls, record: dict | None) -> "TexLayout":
        """The layout a sidecar's "tex" entry describes (absent: the default rule)."""
        record = record or {}
        columns = record.get("columns")
        return cls(columns=tuple(columns) if columns else None,
                   max_columns=int(record.get("max_columns", MAX_COLUMNS)),
                   longtable_rows=int(record.get("longtable_rows", LONGTABLE_ROWS)),
                   float_format=record.get("float_format", "%.4g"))

    def as_record(self) -> dict:
        return {"columns": list(self.columns) if self.columns else None, "max_columns": self.max_columns,
                "longtable_rows": self.longtable_rows, "float_format": self.float_format}

    def printed(self, csv_columns: Sequence[str], rows: Sequence[dict] = ()) -> tuple[
            list[PrintedColumn], list[str], dict[str, Any]]:
        """(printed columns, CSV columns left out of the print, constant columns moved to the caption)."""
        csv_columns = [str(c) for c in csv_columns]
        if self.columns is not None:
            unknown = [c for c in self.columns if c not in csv_columns]
            if unknown:
                raise KeyError(f"printed columns {unknown} are not in the table (its columns: {csv_columns})")
            chosen = list(self.columns)
        else:
            chosen = [c for c in csv_columns if c not in PROVENANCE_COLUMNS]
        bounds = _interval_bounds(csv_columns)
        in_intervals = {c for value, pair in bounds.items() for c in (value, *pair)}
        constants: dict[str, Any] = {}
        if self.columns is None and len(rows) >= 3:
            # the first column too: one value on every row names no row (a seed table's "comparison")
            for name in (c for c in chosen if c not in in_intervals and not _DELTA.match(c) and not c.endswith(" verdict")):
                values = {row.get(name) for row in rows if not _is_missing(row.get(name))}
                if len(values) == 1:
                    constants[name] = values.pop()
            chosen = [c for c in chosen if c not in constants]
        merged_away = {b for pair in bounds.values() for b in pair}
        verdicts = {name: v for name in chosen if (v := _verdict_column(name, csv_columns))}
        printed = []
        for name in chosen:
            if name in merged_away or name in verdicts.values():
                continue
            if self.columns is None and _repeats(name, [p.sources[0] for p in printed], rows):
                continue
            sources = (name, *bounds[name]) if name in bounds else (name,)
            printed.append(PrintedColumn(column_label(name), sources, verdicts.get(name)))
        if self.columns is None and any(p.verdict for p in printed):
            printed = _comparison_columns(printed, rows)
        if len(printed) > self.max_columns:
            printed = _within_cap(printed, self.max_columns)
        shown = {s for p in printed for s in p.read}
        left_out = [c for c in csv_columns if c not in shown and c not in constants]
        return printed, left_out, constants


def _cell(row: dict, column: PrintedColumn, float_format: str, stacked: bool) -> str:
    if column.is_interval:
        text = interval_cell(*(row.get(s) for s in column.sources), stacked=stacked and not column.verdict)
    else:
        text = format_value(row.get(column.sources[0]), column.sources[0], float_format)
    verdict = row.get(column.verdict) if column.verdict else None
    if _is_missing(verdict):
        return text
    # the verdict on a second line of the same cell, in italics ("\\ {}": see interval_cell), in its
    # short form when it has one (the note under the table says what the short forms mean)
    verdict = SHORT_VERDICTS.get(verdict, verdict)
    return r"\begin{tabular}[t]{@{}r@{}}" + text + r"\\ {}\emph{" + escape(verdict) + r"}\end{tabular}"


def _plain_length(latex: str) -> int:
    """Rough printed width of a LaTeX cell in characters (commands count as one character; a stacked
    cell counts its longest line)."""
    if latex.startswith(r"\begin{tabular}"):
        inner = re.sub(r"\\(begin|end)\{tabular\}(\[t\]\{@\{\}r@\{\}\})?", "", latex)
        return max(_plain_length(part) for part in inner.split(r"\\"))
    latex = latex.replace(r"\allowbreak{}", "").replace(r"\_", "_").replace(r"\,", ",")
    return len(re.sub(r"[{}\\]", "", re.sub(r"\\[a-zA-Z]+(\{\})?", "x", latex)))


def _plain_text(latex: str) -> str:
    """The visible text of a cell, roughly (commands dropped)."""
    return re.sub(r"\\[a-zA-Z]+(\{\})?|[{}\\]", "", latex.replace(r"\_", "_"))


def format_plain(value: Any) -> str:
    """A value as plain text (for captions, escaped later)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_numeric_cell(latex: str) -> bool:
    latex = re.sub(r"\\emph\{[^}]*\}", "", latex)     # a verdict under a number leaves the column numeric
    bare = re.sub(r"\\(begin|end)\{tabular\}(\[t\]\{@\{\}r@\{\}\})?|\\\\|\\,|\{\}", "", latex)
    return re.fullmatch(r"[-+\d.,\[\] ]*", bare) is not None


def _column_specs(printed: list[PrintedColumn], cells: list[list[str]], line_characters: int,
                  breaks_pages: bool = False) -> list[str]:
    """l / r for short columns, a wrapping p{} for long text, sized so the row fits \\linewidth.

    Text columns longer than `WRAP_AFTER` wrap; while the unwrapped columns still leave less room than
    the wrapped ones need (`MIN_WRAP` characters each), the widest remaining text column wraps too."""
    widths, numeric, needs, chunks = [], [], [], []
    for j, column in enumerate(printed):
        lengths = sorted(_plain_length(row[j]) for row in cells) or [0]
        longest_word = max((len(w) for w in column.header.split()), default=0)
        widths.append(max(lengths[-1], min(longest_word, 12)))
        numeric.append(all(_is_numeric_cell(row[j]) for row in cells))
        # what a wrapped column needs: its typical (90th percentile) cell, and room for its longest word
        words = max((len(w) for row in cells for w in re.split(r"[ _]", _plain_text(row[j]))), default=0)
        needs.append(max(lengths[int(0.9 * (len(lengths) - 1))], min(max(words, longest_word), 20)))
        # the widest piece a line cannot break inside ("featherface_" of an identifier, with its "_")
        chunks.append(max((len(w) + 1 for row in cells for w in re.split(r"[ _.]", _plain_text(row[j]))), default=0))
    text = [j for j in range(len(widths)) if not numeric[j]]
    wrapped = [j for j in text if widths[j] > WRAP_AFTER]

    def room() -> int:
        return line_characters - sum(widths[j] + PADDING for j in range(len(widths)) if j not in wrapped) \
            - PADDING * len(wrapped)

    while room() < MIN_WRAP * len(wrapped) or (not wrapped and room() < 0):
        candidates = [j for j in text if j not in wrapped and widths[j] > MIN_WRAP]
        if not candidates:
            break
        wrapped.append(max(candidates, key=widths.__getitem__))
    # Wrapped columns are tabularx X columns: LaTeX gives them exactly the width the others leave,
    # shared in proportion to their text (the \hsize factors average to 1, as tabularx requires).
    # When the others leave too little, a float gets fixed-width columns instead and is scaled down
    # as a whole (adjustbox); a long table cannot be scaled and keeps the X columns.
    fits = room() >= MIN_WRAP * len(wrapped)
    # each wrapped column first gets its widest unbreakable piece, then a share of what is left in
    # proportion to its text (so no identifier sticks out of a narrow column)
    spare = max(0, room() - sum(chunks[j] for j in wrapped))
    total_need = sum(needs[j] for j in wrapped) or 1
    shares = {j: chunks[j] + spare * needs[j] / total_need for j in wrapped}
    mean = sum(shares.values()) / len(wrapped) if wrapped else 1
    specs = []
    for j, w in enumerate(widths):
        if j in wrapped and (fits or breaks_pages):
            specs.append(rf">{{\raggedright\arraybackslash\hsize={shares[j] / mean:.3f}\hsize}}X")
        elif j in wrapped:   # about half an em per character
            specs.append(rf">{{\raggedright\arraybackslash}}p{{{max(MIN_WRAP, min(needs[j], 16)) / 2:.1f}em}}")
        else:
            specs.append("r" if numeric[j] else "l")
    return specs


def _header(column: PrintedColumn, width: int) -> str:
    """The header, broken over lines (a nested tabular) when longer than its column's cells."""
    words, lines, line = re.findall(r"\([^)]*\)|\S+", column.header), [], ""   # "(AP pts)" stays whole
    limit = max(width, 6)
    for word in words:
        if line and len(line) + 1 + len(word) > limit:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    if len(lines) == 1:
        return escape(lines[0])
    return r"\begin{tabular}[b]{@{}c@{}}" + r" \\ ".join(escape(l) for l in lines) + r"\end{tabular}"


_SOURCE_LABEL = re.compile(r"\s*(\[[^\[\]]*\])\s*$")


def split_caption(caption: str) -> tuple[str, str]:
    """(what the table is, how it was made): the text before the first ":" or ";" outside parentheses,
    without its parenthetical remarks, keeps a trailing "[data source]" label; the rest is the method.
    "AP on the test split (seed 7): one row per run [SYNTHETIC]" ->
    ("AP on the test split [SYNTHETIC]", "(seed 7) one row per run")."""
    label_match = _SOURCE_LABEL.search(caption)
    label = label_match.group(1) if label_match else ""
    text = caption[: label_match.start()] if label_match else caption
    title, method, depth, cut = [], [], 0, None
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        if depth == 0 and char in ":;" and cut is None:
            cut = i
            break
        (method if depth else title).append(char)
        if char == ")":
            depth -= 1
    rest = text[cut + 1:].strip() if cut is not None else ""
    head = re.sub(r"\s+([,.])", r"\1", re.sub(r"\s+", " ", "".join(title))).strip().rstrip(",")
    aside = re.sub(r"\s+", " ", "".join(method)).strip().replace(")(", ") (")
    detail = " ".join(part for part in (aside, rest) if part)
    return f"{head} {label}".strip() if head else caption.strip(), detail if head else ""


def render_table(rows: list[dict], csv_columns: Sequence[str], name: str, caption: str,
                 layout: TexLayout = TexLayout()) -> str:
    """The `\\input`-ready LaTeX of a table (booktabs; longtable when long). `caption` is plain text."""
    printed, left_out, constants = layout.printed(csv_columns, rows)
    if not printed:
        raise ValueError(f"table {name!r}: no column left to print (columns {list(csv_columns)})")
    stacked = sum(c.is_interval for c in printed) > 3
    cells = [[_cell(row, c, layout.float_format, stacked) for c in printed] for row in rows]
    breaks_pages = len(rows) > layout.longtable_rows
    # a table of several pages is reference matter: one size smaller (never below \scriptsize, 8 pt)
    size, line_characters = FONT_SIZES[min(len(printed) + 3 * breaks_pages, len(FONT_SIZES)) - 1]
    specs = _column_specs(printed, cells, line_characters, breaks_pages)
    widths = [max([_plain_length(r[j]) for r in cells] or [0]) for j in range(len(printed))]
    header = " & ".join(_header(c, w) for c, w in zip(printed, widths)) + r" \\"
    title, method = split_caption(caption)
    full_caption = escape(title)
    notes = [method if method.endswith(".") else method + "."] if method else []
    if constants:
        notes.append("Every row: " + "; ".join(f"{column_label(k)} {format_plain(v)}" for k, v in constants.items()) + ".")
    verdicts = {row.get(c.verdict) for row in rows for c in printed if c.verdict}
    used = [short for long, short in SHORT_VERDICTS.items() if long in verdicts]
    if used:
        notes.append("Verdicts: " + "; ".join(f"{short}: {SHORT_VERDICT_MEANINGS[short]}" for short in used) + ".")
    if left_out:
        notes.append(f"In the CSV only: {', '.join(left_out)}.")
    # what the table is goes in the caption; how it was made, under the table in small print
    note = [r"\par\smallskip{\footnotesize\raggedright " + escape(" ".join(notes)) + r"\par}"] if notes else []
    body = [" & ".join(r) + r" \\" for r in cells]
    spec = "".join(specs)
    wraps = any(s.endswith("X") for s in specs)
    # more columns, less space between them (the default 6pt a side takes a quarter of a 10-column row)
    spacing = r"\setlength{\tabcolsep}{4pt}" if len(printed) > 8 else ""
    lines = [f"% generated by ffcore from {name}.csv (every column) and {name}.json (provenance); do not edit"]
    if breaks_pages:
        environment = "xltabular" if wraps else "longtable"
        width = r"{\linewidth}" if wraps else ""
        lines += ["\\begingroup" + size + spacing, rf"\begin{{{environment}}}{width}{{{spec}}}",
                  rf"\caption{{{full_caption}}}\label{{tab:{name}}}\\", r"\toprule", header, r"\midrule",
                  r"\endfirsthead", r"\toprule", header, r"\midrule", r"\endhead",
                  rf"\midrule\multicolumn{{{len(printed)}}}{{r}}{{\emph{{continued}}}}\\", r"\endfoot",
                  r"\bottomrule", r"\endlastfoot", *body, rf"\end{{{environment}}}", *note, r"\endgroup"]
    elif wraps:   # exactly \linewidth wide
        lines += [r"\begin{table}[htbp]", r"\centering", size + spacing, rf"\caption{{{full_caption}}}",
                  rf"\label{{tab:{name}}}", rf"\begin{{tabularx}}{{\linewidth}}{{{spec}}}", r"\toprule", header,
                  r"\midrule", *body, r"\bottomrule", r"\end{tabularx}", *note, r"\end{table}"]
    else:
        lines += [r"\begin{table}[htbp]", r"\centering", size + spacing, rf"\caption{{{full_caption}}}",
                  rf"\label{{tab:{name}}}",
                  # shrinks the table only when the estimate of its width was short (never enlarges it)
                  r"\begin{adjustbox}{max width=\linewidth}",
                  rf"\begin{{tabular}}{{{spec}}}", r"\toprule", header, r"\midrule",
                  *body, r"\bottomrule", r"\end{tabular}", r"\end{adjustbox}", *note, r"\end{table}"]
    return "\n".join(lines) + "\n"


def frame_rows(table) -> tuple[list[dict], list[str]]:
    """(rows as dicts, column names) of a pandas DataFrame, NaN kept as float NaN."""
    columns = [str(c) for c in table.columns]
    return [dict(zip(columns, values)) for values in table.itertuples(index=False, name=None)], columns


# The packages `render_table`'s output needs; the chapter's preamble declares them.
PREAMBLE_PACKAGES = (
    r"\usepackage[T1]{fontenc}",
    r"\usepackage[utf8]{inputenc}",
    r"\usepackage{lmodern}",
    r"\usepackage{booktabs}",
    r"\usepackage{longtable}",
    r"\usepackage{tabularx}",
    r"\usepackage{xltabular}",
    r"\usepackage{array}",
    r"\usepackage{adjustbox}",
    r"\usepackage{graphicx}",
    r"\usepackage{caption}",
    r"\usepackage{placeins}",      # \FloatBarrier: an artifact stays in the section that introduces it
    r"\usepackage[hidelinks]{hyperref}",
)
