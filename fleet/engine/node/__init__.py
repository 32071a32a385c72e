"""The parts of a node's main process, one job each, composed by `fleet.engine.worker.Node`.

    jobs.py       the jobs the node holds (running, prefetched, held until their ETA or
                  over a rate limit), the revoked ids and the counts: one object every part
                  shares; the node's run states
    consumer.py   the only code that talks to the broker: register, reserve and commit in
                  one round trip, subscription, heartbeat, recovery of dead nodes, retrying
                  with backoff while the broker is away
    dispatch.py   the dispatch buffer: how much to prefetch, the ETA heap, rate limits,
                  revoked and expired tasks, handing a job to an idle child
    children.py   child supervision: spawn, read outcomes, reap, boot-failure backoff,
                  time limits, grow and shrink; it drives the prefork pool
                  (fleet.engine.pool) or, with --pool solo|threads, threads of the main
                  process behind the same interface (fleet.engine.threadpool; what each
                  pool can apply: fleet.engine.pools)
    settle.py     settling jobs: results, acks, retries and follow-up messages into the
                  next commit; lost and stopped tasks
    followups.py  the workflow follow-ups the main process carries out itself
    shutdown.py   warm and cold shutdown, and restart in place
    revokes.py    durable revokes: the broker's revoke batches, read by number into the
                  node's revoked set (remote control's mailbox keeps it current)

`Node` (fleet/engine/worker.py) owns the loop, its timers and hooks, the lifecycle and the
signals; it creates one of each part, and a part reaches its siblings through it
(`node.consumer`, `node.children`, ...). This is the node side of the engine: nothing on the
client side (what a web process imports to send tasks) imports it.
"""
