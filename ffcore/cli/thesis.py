"""`ffcore thesis`: the results chapter of a profile, from the tables and figures its notebooks wrote."""

from __future__ import annotations

import sys


def add_thesis(sub) -> None:
    p = sub.add_parser("thesis", help="write (and compile) the results chapter of a profile",
                       description="Re-render every table's .tex from its CSV and sidecar (no recomputation), "
                                   "write numbers.tex/.json (every cited number as a macro), preamble.tex, "
                                   "results.tex and chapter.tex into thesis_figures/<profile>/, then compile "
                                   "chapter.pdf with latexmk.")
    p.add_argument("--profile", default="synthetic", help="run profile whose artifacts to use (default synthetic)")
    p.add_argument("--no-build", action="store_true", help="write the LaTeX sources only, do not run latexmk")
    p.add_argument("--check-numbers", action="store_true",
                   help="only check thesis_figures/<profile>/numbers.json against the tables (exit 1 on a mismatch)")
    p.add_argument("--results-page", default=None, metavar="FILE",
                   help="only rewrite FILE's results block for the profile (between <!-- results:<profile>:begin --> "
                        "and its end marker) from the tables; the committed page is docs/results.md")
    p.set_defaults(handler=thesis_command)


def thesis_command(profile: str = "synthetic", no_build: bool = False, check_numbers: bool = False,
                   results_page: str | None = None) -> int:
    from ffcore.paths import figures_dir
    from ffcore.report.numbers import check_numbers as check
    from ffcore.report.chapter import ThesisToolsMissing, build_chapter, write_chapter

    if results_page is not None:
        from ffcore.report.results_blocks import rewrite_page

        try:
            print(f"rewrote the {profile} results block of {rewrite_page(profile, results_page)}")
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if check_numbers:
        problems = check(profile, figures_dir() / profile / "numbers.json")
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{len(problems)} numbers disagree with their tables" if problems else "every number agrees")
        return 1 if problems else 0
    try:
        written = write_chapter(profile)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written['chapter']} (body {written['results'].name}, {written['json'].name})")
    if no_build:
        return 0
    try:
        pdf = build_chapter(profile)
    except ThesisToolsMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except RuntimeError as exc:     # latexmk ran and failed: its errors are in the message
        print(f"error: {exc}", file=sys.stderr)
        return 4
    print(f"built {pdf}")
    return 0
