"""Setting up a node's process, below the CLI: what `fleet worker` and `fleet multi` share.

    options.py     the worker's options, declared once (click, multi and fleet.toml use them)
    run.py         run a node in this process from WorkerOptions
    detach.py      `--detach`: the double fork, built on fleet.daemon's primitives
    handshake.py   the readiness pipe: how a detached node tells its launcher it came up
"""
