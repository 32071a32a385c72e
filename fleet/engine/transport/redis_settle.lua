-- settle: a consumer's started marks, acks and requeues, in that order.
-- KEYS[1]  the key prefix
-- ARGV[1]  consumer id
-- ARGV[2]  s: number of started ids, ARGV[3]  a: number of acked ids
-- ARGV[4 ..]  s started ids, then a acked ids, then the requeued ids (the rest)
-- Returns  {started, acked, requeued}: how many were found reserved by this consumer
--
-- Ids this consumer does not hold (already recovered by another node, or never reserved)
-- are ignored: an ack from a consumer declared dead must not delete a message that is
-- back on its queue or held by somebody else.
local prefix, cid = KEYS[1], ARGV[1]
local started_count, ack_count = tonumber(ARGV[2]), tonumber(ARGV[3])
local reserved_key = prefix .. ':reserved:' .. cid
local now = nil
local started, acked, requeued = 0, 0, 0

for i = 4, 3 + started_count do
    local value = redis.call('HGET', reserved_key, ARGV[i])
    if value then
        redis.call('HSET', reserved_key, ARGV[i], '1' .. string.sub(value, 2))
        started = started + 1
    end
end

for i = 4 + started_count, 3 + started_count + ack_count do
    if redis.call('HDEL', reserved_key, ARGV[i]) == 1 then
        redis.call('HDEL', prefix .. ':msg', ARGV[i])
        acked = acked + 1
    end
end

for i = 4 + started_count + ack_count, #ARGV do
    local value = redis.call('HGET', reserved_key, ARGV[i])
    if value then
        now = now or server_now()
        redis.call('HDEL', reserved_key, ARGV[i])
        requeue(prefix, ARGV[i], parse_reservation(value), now)
        requeued = requeued + 1
    end
end
return {started, acked, requeued}
