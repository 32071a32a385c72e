-- put: add messages to their queues.
-- KEYS[1]  the key prefix (every key is derived from it; see redis.py)
-- ARGV     five per message: id, queue, priority (0-9, already clamped),
--          eta (seconds since the epoch, "" for none), body
-- Returns  the number of messages added.
--
-- A message whose eta is still ahead (by the clock) goes to <p>:delayed:<queue>, any other
-- to <p>:q:<queue>. Publishes <p>:wake:<queue> for delayed messages, and for ready ones when
-- the queue was empty. One INCRBY numbers the whole batch, so FIFO holds inside a batch, and
-- the writes are grouped: one HSET for the bodies, one ZADD per sorted set.
local prefix = KEYS[1]
local count = #ARGV / 5
local now = nil  -- the time by the clock, read only if some message has an eta
local seq = redis.pcall('INCRBY', prefix .. ':seq', count)
if type(seq) == 'table' then  -- not a counter: not written by fleet (see set_aside)
    set_aside(prefix, prefix .. ':seq', 'is not a counter')
    seq = redis.call('INCRBY', prefix .. ':seq', count)
end
seq = seq - count
local bodies, ready, delayed, was_empty = {}, {}, {}, {}

local function append(groups, key, score, member)
    local group = groups[key]
    if not group then
        group = {}
        groups[key] = group
    end
    group[#group + 1] = score
    group[#group + 1] = member
end

for i = 0, count - 1 do
    local at = i * 5
    local id, queue, eta = ARGV[at + 1], ARGV[at + 2], ARGV[at + 4]
    local score = string.format('%.0f', (9 - tonumber(ARGV[at + 3])) * PRIORITY_SPAN + seq + i + 1)
    bodies[#bodies + 1] = id
    bodies[#bodies + 1] = ARGV[at + 5]
    if was_empty[queue] == nil then
        was_empty[queue] = call_typed(prefix, 'zset', 'ZCARD', prefix .. ':q:' .. queue) == 0
        -- <p>:queues only grows, so a queue holding messages is in it already (every
        -- message on it was put here first): SADD only when the queue is empty.
        if was_empty[queue] then
            call_typed(prefix, 'set', 'SADD', prefix .. ':queues', queue)
        end
    end
    if eta ~= '' and now == nil then
        now = clock_now()
    end
    if eta ~= '' and tonumber(eta) > now then
        append(delayed, prefix .. ':delayed:' .. queue, eta, score .. '|' .. id)
    else
        append(ready, queue, score, id)
    end
end

call_each_slice('HSET', prefix .. ':msg', bodies, prefix, 'hash')
-- Delayed messages always wake the queue's listeners (once per queue and call): a node
-- holds ETA messages due within its horizon, so it must learn of them now, not at its next
-- poll. They are rarer than plain messages (countdowns, ETAs, retries), so this is cheap.
for key, group in pairs(delayed) do
    call_each_slice('ZADD', key, group, prefix, 'zset')
    redis.call('PUBLISH', prefix .. ':wake:' .. string.sub(key, #prefix + 10), '1')
end
-- Wake the queue's listeners only when it goes from empty to non-empty.
for queue, group in pairs(ready) do
    call_each_slice('ZADD', prefix .. ':q:' .. queue, group)
    if was_empty[queue] then
        redis.call('PUBLISH', prefix .. ':wake:' .. queue, '1')
    end
end
return count
