"""The chaos harness behind `bench/chaos`: a fleet of three nodes runs a mixed workload while
nodes are killed, frozen and restarted and the broker is restarted; every execution of every
task is written to a ledger outside the broker, and the analysis counts what was lost or ran
twice.

Modules: `tasks` (the app the nodes run), `ledger` (the execution record), `plan` (the
workload and the fault schedule, from a seed), `procs` (redis-server, `fleet multi`, and the
guarantee that nothing outlives a run), `faults` (carrying faults out), `monitor` (the
broker's consumer list over time), `producer` (sending the workload), `analysis` (counts and
targets, pure), `report` (CHAOS.md), `main` (one run, start to end).
"""
