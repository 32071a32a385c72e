"""Tasks used by the benchmarks (the broker comes from FLEET_BROKER_URL)."""

from fleet import Fleet

app = Fleet("benchapp")


@app.task(ignore_result=True)
def noop():
    return None


@app.task
def noop_result():
    return None
