"""The side-by-side benchmark suite behind `bench/run` (fleet vs Celery, Huey, Dramatiq, RQ).

Modules: procs (every process the suite starts, and their cleanup), redisserver (the private
redis-server), stats (medians, percentiles, ratios), peers/ (one module per framework, one
interface), scenarios (what is measured), profiles (where the time goes when a target is
missed), targets, report (RESULTS.md), main (the command line).
"""
