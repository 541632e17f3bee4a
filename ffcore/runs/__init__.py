"""Run orchestration: profiles, the run catalogue, run records and locks, jobs and launchers, and
the code that trains a planned run. Importing the package loads nothing (no pandas, no torch)."""
