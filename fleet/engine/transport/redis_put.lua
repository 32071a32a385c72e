-- put: add messages to their queues.
-- KEYS[1]  the key prefix (every key is derived from it; see redis.py)
-- ARGV     five per message: id, queue, priority (0-9, already clamped),
--          eta (seconds since the epoch, "" for none), body
-- Returns  the number of messages added.
--
-- A message whose eta is still ahead (server clock) goes to <p>:delayed:<queue>, any other
-- to <p>:q:<queue>. One INCRBY numbers the whole batch, so FIFO holds inside a batch.
local prefix = KEYS[1]
local count = #ARGV / 5
local now = server_now()
local seq = redis.call('INCRBY', prefix .. ':seq', count) - count
for i = 0, count - 1 do
    local at = i * 5
    local id, queue, priority = ARGV[at + 1], ARGV[at + 2], tonumber(ARGV[at + 3])
    local score = string.format('%.0f', (9 - priority) * PRIORITY_SPAN + seq + i + 1)
    redis.call('HSET', prefix .. ':msg', id, ARGV[at + 5])
    redis.call('SADD', prefix .. ':queues', queue)
    enqueue(prefix, queue, id, score, ARGV[at + 4], now)
end
return count
