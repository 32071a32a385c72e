"""A node outlives its broker: when Redis goes away and comes back, the node keeps consuming
(celery#8030 and friends: workers that stay alive but silently stop consuming)."""

from __future__ import annotations

import signal

from fleet.engine.transport import open_transport
from tests.integration.test_redis_transport import closed_port, start_server
from tests.support import NodeFactory, fleet_env, run_fleet, wait_for


def test_a_node_consumes_again_after_the_redis_server_restarts(redis_server, tmp_path):
    port = closed_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = start_server(port, tmp_path)
    factory = NodeFactory(url, tmp_path)
    try:
        node = factory.start(concurrency=1)
        import testapp

        testapp.app.conf.update(broker_url=url)
        testapp.app.close()
        assert testapp.add.delay(1, 1).get(timeout=10) == 2

        check = ("worker", "-A", "testapp", "-n", "w1@%h", "--check")
        assert run_fleet(*check, env=fleet_env(url)).returncode == 0
        server.kill()
        server.wait()
        wait_for(lambda: "Broker error" in node.log_text(), 10, message="the node to notice")
        down = run_fleet(*check, env=fleet_env(url, FLEET_BROKER_CONNECTION_MAX_RETRIES="0"))
        assert down.returncode == 75 and ": UNKNOWN: cannot reach the broker" in down.stdout
        server = start_server(port, tmp_path)  # empty: no scripts, no consumers, no queues
        testapp.app.close()
        assert testapp.add.delay(2, 3).get(timeout=30) == 5
        assert "Broker reachable again" in node.log_text()
        wait_for(lambda: run_fleet(*check, env=fleet_env(url)).returncode == 0, 10,
                 interval=0.2, message="--check to say it consumes again")
        # it registered again, so it is visible (and recoverable) as a consumer
        wait_for(lambda: any(c.node.startswith("w1@") for c in open_transport(url).consumers()),
                 10, message="the node registered again")
        node.signal(signal.SIGTERM)
        assert node.wait(15) == 0
    finally:
        factory.cleanup()
        server.kill()
        server.wait()
        import testapp

        testapp.app.close()
