"""Setting up a node's process, below the CLI: what `fleet worker` and `fleet multi` share."""
