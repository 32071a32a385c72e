-- reserve: hand up to `limit` due messages to one consumer.
-- KEYS[1]  the key prefix
-- ARGV[1]  consumer id
-- ARGV[2]  limit (> 0)
-- ARGV[3]  horizon: seconds ahead of now within which a scheduled message counts as due
-- ARGV[4]  token naming this call (stored in each reservation)
-- ARGV[5]  n: how many tokens of earlier, failed calls follow, to roll back first
-- ARGV[6 .. 5+n]  those tokens; the remaining ARGV are the queue names
-- Returns  five per message: id, queue, body, priority, redelivered (1/0)
--
-- Steps: roll back reservations of failed calls (their reply never reached the consumer);
-- promote scheduled messages that are due now (bounded batch); gather the best `limit`
-- candidates of every queue (ready ones, and scheduled ones due within the horizon); take
-- the best `limit` of all by score (priority, then age) and record them as reserved.
local PROMOTE_BATCH = 500
local prefix, cid = KEYS[1], ARGV[1]
local limit, horizon, token = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local rollbacks = tonumber(ARGV[5])
local now = clock_now()
local reserved_key = prefix .. ':reserved:' .. cid

local function roll_back(tokens)
    local held = call_typed(prefix, 'hash', 'HGETALL', reserved_key)
    for i = 1, #held, 2 do
        local reservation = parse_reservation(held[i + 1])
        if reservation and tokens[reservation.token] and not reservation.started then
            redis.call('HDEL', reserved_key, held[i])
            enqueue(prefix, reservation.queue, held[i], reservation.score, reservation.eta, now)
            if reservation.redelivered then
                redis.call('SADD', prefix .. ':redelivered', held[i])
            end
        end
    end
end

local function promote(queue)
    local delayed = prefix .. ':delayed:' .. queue
    local due = call_typed(prefix, 'zset', 'ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0,
                           PROMOTE_BATCH)
    for _, member in ipairs(due) do
        local score, id = split_member(member)
        if score then
            call_typed(prefix, 'zset', 'ZADD', prefix .. ':q:' .. queue, score, id)
        else
            dead_member(prefix, delayed, queue, member)
        end
    end
    if #due > 0 then
        call_each_slice('ZREM', delayed, due)
    end
    return #due > 0
end

local function gather(queue, candidates)
    local ready = call_typed(prefix, 'zset', 'ZRANGE', prefix .. ':q:' .. queue, 0, limit - 1,
                             'WITHSCORES')
    for i = 1, #ready, 2 do
        candidates[#candidates + 1] = {id = ready[i], score = ready[i + 1], eta = '',
                                       queue = queue, rank = tonumber(ready[i + 1])}
    end
    local delayed = prefix .. ':delayed:' .. queue
    local soon = call_typed(prefix, 'zset', 'ZRANGEBYSCORE', delayed, '-inf', now + horizon,
                            'WITHSCORES', 'LIMIT', 0, limit)
    for i = 1, #soon, 2 do
        local score, id = split_member(soon[i])
        if score then
            candidates[#candidates + 1] = {id = id, score = score, eta = soon[i + 1],
                                           queue = queue, member = soon[i],
                                           rank = tonumber(score)}
        else
            dead_member(prefix, delayed, queue, soon[i])
        end
    end
end

-- Take the chosen candidates off their sorted sets: one ZREM per set.
local function take(chosen)
    local members = {}
    for _, candidate in ipairs(chosen) do
        local key, member = prefix .. ':q:' .. candidate.queue, candidate.id
        if candidate.member then
            key, member = prefix .. ':delayed:' .. candidate.queue, candidate.member
        end
        members[key] = members[key] or {}
        table.insert(members[key], member)
    end
    for key, list in pairs(members) do
        call_each_slice('ZREM', key, list)
    end
end

-- Which chosen ids were redelivered; clears their marks. Usually the set is empty.
local function redelivered_flags(chosen)
    local flags = {}
    if call_typed(prefix, 'set', 'SCARD', prefix .. ':redelivered') > 0 then
        for i, candidate in ipairs(chosen) do
            flags[i] = redis.call('SREM', prefix .. ':redelivered', candidate.id) == 1
        end
    end
    return flags
end

if rollbacks > 0 then
    local tokens = {}
    for i = 6, 5 + rollbacks do
        tokens[ARGV[i]] = true
    end
    roll_back(tokens)
end

local promoted, candidates = {}, {}
for i = 6 + rollbacks, #ARGV do
    if promote(ARGV[i]) then
        promoted[#promoted + 1] = ARGV[i]
    end
    gather(ARGV[i], candidates)
end
table.sort(candidates, function(a, b) return a.rank < b.rank end)

local chosen, ids = {}, {}
for i = 1, math.min(limit, #candidates) do
    chosen[i] = candidates[i]
    ids[i] = candidates[i].id
end

local result = {}
if #ids > 0 then
    local bodies = call_each_slice('HMGET', prefix .. ':msg', ids, prefix, 'hash')
    take(chosen)
    local flags = redelivered_flags(chosen)
    local held = {}
    for i, candidate in ipairs(chosen) do
        -- A body is missing if an id was reused, or if something else than fleet wrote the
        -- entry: it is dropped, and said so in the dead letters.
        if not bodies[i] then
            record_dead(prefix, candidate.id, candidate.queue, '', 'no message body is stored '
                        .. 'for this id (an entry not written by fleet?): dropped')
        else
            held[#held + 1] = candidate.id
            held[#held + 1] = reservation_value(false, flags[i], candidate.score, candidate.eta,
                                                token, candidate.queue)
            result[#result + 1] = candidate.id
            result[#result + 1] = candidate.queue
            result[#result + 1] = bodies[i]
            result[#result + 1] = priority_of(candidate.score)
            result[#result + 1] = flags[i] and 1 or 0
        end
    end
    -- (id/value pairs: slices stay paired)
    call_each_slice('HSET', reserved_key, held, prefix, 'hash')
end

-- Holding messages makes the consumer known (as if it had registered), so recovery finds
-- its reservations even if it never registered or was declared dead since.
if #result > 0 then
    call_typed(prefix, 'zset', 'ZADD', prefix .. ':consumers', 'NX', now, cid)
end

-- Wake other consumers when promotion left due messages this call did not take.
for _, queue in ipairs(promoted) do
    if redis.call('ZCARD', prefix .. ':q:' .. queue) > 0 then
        redis.call('PUBLISH', prefix .. ':wake:' .. queue, '1')
    end
end
return result
