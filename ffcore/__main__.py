"""`python -m ffcore ...` is the same as the `ffcore` console script."""

from ffcore.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
