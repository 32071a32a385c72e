"""The `fleet multi` controller: starts nodes detached and verified, remembers them, finds them
again, signals and stops them safely. It never prints: it reports events and returns data,
and `fleet multi` (fleet/cli/multi.py) renders them.

    state.py          what multi remembers: a record per node, in a TOML state file
    launch.py         starting nodes in parallel and waiting until each consumes
    control.py        start, stop, stopwait, kill, reload, restart, status; is it our node?
    targets.py        which nodes a command is about: NODES after start select remembered
                      nodes (a number is a position); --spec previews what start would run
    toml_section.py   the [multi] section of fleet.toml, as the command line it stands for

Node specs (the command-line grammar and its expansion into nodes) are fleet/multi.py.
"""
