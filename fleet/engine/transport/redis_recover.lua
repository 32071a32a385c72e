-- recover: declare silent consumers dead and settle what they held.
-- KEYS[1]  the key prefix
-- ARGV[1]  timeout: a consumer whose last heartbeat is older than this many seconds is dead
-- ARGV[2]  most consumers to recover in this call
-- Returns  {dead consumer ids, requeued count, lost} where lost holds six per message:
--          consumer id, id, queue, body, priority, redelivered (1/0)
--
-- The script is atomic, so when many nodes recover at once, the first to run takes each
-- dead consumer out of <p>:consumers and the others no longer see it: every consumer is
-- recovered exactly once.
local prefix = KEYS[1]
local now = clock_now()
local cutoff = '(' .. string.format('%.6f', now - tonumber(ARGV[1]))
local silent = call_typed(prefix, 'zset', 'ZRANGEBYSCORE', prefix .. ':consumers', '-inf',
                          cutoff, 'LIMIT', 0, tonumber(ARGV[2]))
local requeued, lost = 0, {}
for _, cid in ipairs(silent) do
    local count, gone = release_consumer(prefix, cid, now, true)
    requeued = requeued + count
    for _, item in ipairs(gone) do
        lost[#lost + 1] = item
    end
end
return {silent, requeued, lost}
