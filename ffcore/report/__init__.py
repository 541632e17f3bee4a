"""Reporting: provenance stamps, LaTeX and figures, table reading, the chapter, its numbers, the
summary and README blocks, run agreement. Importing the package loads nothing."""
