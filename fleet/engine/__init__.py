"""The embedded task engine: apps, tasks, messages, results, transports and the worker.

Everything here works without the CLI; `fleet.cli` is a thin layer over it.
"""
