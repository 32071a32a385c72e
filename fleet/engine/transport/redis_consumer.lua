-- consumer: register a consumer or refresh its heartbeat (by the clock) and its details.
-- KEYS[1]  the key prefix
-- ARGV[1]  consumer id
-- ARGV[2]  JSON of its ConsumerInfo
-- Returns  1 if the consumer was not registered before (new, or recovered as dead), else 0.
local prefix, cid = KEYS[1], ARGV[1]
local added = call_typed(prefix, 'zset', 'ZADD', prefix .. ':consumers', clock_now(), cid)
redis.call('SET', prefix .. ':consumer:' .. cid, ARGV[2])
return added
