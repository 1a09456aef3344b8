"""python -m rlcore: see rlcore.cli."""

from rlcore.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
