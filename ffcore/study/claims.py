"""Parameter counts claimed by the seed documents, located in their source files.

These are claims, not results: each is a literal quoted from a seed document
(`../shared/seeds/`), found there at run time so the table cites file and line. The
study puts them next to the counts measured on the registered models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Claim:
    model: str          # registry name the claim is about (may be unregistered, e.g. V2 Ultra)
    quote: str          # the literal in the seed document
    source: str         # file under shared/seeds/
    context: str        # a phrase on the same line, to find the right occurrence


SEED_CLAIMS: tuple[Claim, ...] = (
    Claim("featherface_v1", "~490K", "000_fork_project_overview.md", "Total: ~490K parameters"),
    Claim("featherface_v1", "487,103", "001_readme_v1_v2_ultra.md", "| **Parameters** |"),
    Claim("featherface_v1", "487K", "004_v1_v2_architecture_analysis.md", "| **TOTAL** |"),
    Claim("featherface_v1", "489K", "004_v1_v2_architecture_analysis.md", "paper target 489K"),
    Claim("featherface_v1", "502K", "004_v1_v2_architecture_analysis.md", "**Paramètres** : 502K"),
    Claim("featherface_v1", "592,371", "003_v2_technical_report.md", "**Paramètres V1**"),
    Claim("featherface_v1", "601K", "003_v2_technical_report.md", "Teacher (601K params)"),
    Claim("featherface_v2", "~285K", "000_fork_project_overview.md", "Total: ~285K parameters"),
    Claim("featherface_v2", "256,156", "003_v2_technical_report.md", "**Paramètres V2**"),
    Claim("featherface_v2", "256K", "004_v1_v2_architecture_analysis.md", "**✅ V2** : 256K"),
    Claim("featherface_v2_ultra", "244,483", "001_readme_v1_v2_ultra.md", "| **Parameters** |"),
)


def parse_count(quote: str) -> int:
    """'487,103' -> 487103, '~490K' -> 490000, '0.49M' -> 490000."""
    text = quote.strip().lstrip("~≈").replace(",", "")
    match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([KkMm]?)", text)
    if not match:
        raise ValueError(f"cannot read a parameter count from {quote!r}")
    value, unit = float(match.group(1)), match.group(2).upper()
    return int(round(value * {"": 1, "K": 1e3, "M": 1e6}[unit]))


def locate(claim: Claim, seeds_dir: Path) -> int | None:
    """1-based line of the claim in its source file (None when the file or the quote is not there)."""
    path = seeds_dir / claim.source
    if not path.is_file():
        return None
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if claim.quote in line and claim.context in line:
            return number
    return None
