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

-- The ids of ARGV[first .. last] this consumer holds, with their reservation values.
local function held(first, last)
    local ids = {}
    for i = first, last do
        ids[#ids + 1] = ARGV[i]
    end
    if #ids == 0 then
        return {}, {}
    end
    local values = call_each_slice('HMGET', reserved_key, ids, prefix, 'hash')
    local found, found_values = {}, {}
    for i, id in ipairs(ids) do
        if values[i] then
            found[#found + 1] = id
            found_values[#found_values + 1] = values[i]
        end
    end
    return found, found_values
end

local function mark_started(ids, values)
    local pairs_ = {}
    for i, id in ipairs(ids) do
        pairs_[#pairs_ + 1] = id
        pairs_[#pairs_ + 1] = '1' .. string.sub(values[i], 2)
    end
    call_each_slice('HSET', reserved_key, pairs_)
end

local started_ids, started_values = held(4, 3 + started_count)
mark_started(started_ids, started_values)

local acked = held(4 + started_count, 3 + started_count + ack_count)
call_each_slice('HDEL', reserved_key, acked)
call_each_slice('HDEL', prefix .. ':msg', acked, prefix, 'hash')

local requeued, requeued_values = held(4 + started_count + ack_count, #ARGV)
if #requeued > 0 then
    local now = clock_now()
    call_each_slice('HDEL', reserved_key, requeued)
    for i, id in ipairs(requeued) do
        local reservation = parse_reservation(requeued_values[i])
        if reservation then
            requeue(prefix, id, reservation, now)
        else
            dead_reservation(prefix, cid, id, requeued_values[i])
        end
    end
end
return {#started_ids, #acked, #requeued}
