"""An example fleet app: `cd examples && fleet worker -A proj -l info`."""
