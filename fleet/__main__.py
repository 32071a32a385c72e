"""`python -m fleet` is the same as the `fleet` command (used to spawn detached nodes)."""

from fleet.cli import main

if __name__ == "__main__":
    main()
