-- Helpers shared by fleet's Redis scripts. redis_scripts.py prepends this file to every
-- script before loading it, so each script runs as one self-contained, atomic unit.
--
-- The key layout is documented at the top of fleet/engine/transport/redis.py.
--
-- The clock: redis_scripts.py puts one line before this file, which sets CLOCK. With the
-- transport's default, real-time clock it is `local CLOCK = ''`: every time is the
-- server's own (TIME), so clients on hosts whose clocks disagree still agree on heartbeats,
-- recovery, due times and leases, and the scripts take no extra argument. With a test's
-- clock it is `local CLOCK = table.remove(ARGV, 1)`: the caller passes the time (seconds
-- since the epoch) before the script's own arguments, which then still start at ARGV[1].
--
-- A reservation value is "<started>|<redelivered>|<score>|<eta>|<token>|<queue>":
--   started      "1" once mark_started ran (an early-acked task began), else "0"
--   redelivered  "1" if the message had been reserved before, else "0"
--   score        the message's score on its ready queue (restores its place on requeue)
--   eta          the message's eta ("" if none) so a requeue can put it back on hold
--   token        the reserve call that took it (lets a failed call be rolled back)
--   queue        last, so a queue name may contain "|"

-- Scores are (9 - priority) * 2^43 + seq: priority bands, FIFO inside a band.
local PRIORITY_SPAN = 8796093022208

-- True when the server's clock is the clock in force (see above).
local function server_clock()
    return CLOCK == ''
end

-- The time now, in seconds since the epoch, by the clock in force.
local function clock_now()
    if not server_clock() then
        return tonumber(CLOCK)
    end
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function priority_of(score)
    return 9 - math.floor(tonumber(score) / PRIORITY_SPAN)
end

local function parse_reservation(value)
    local started, redelivered, score, eta, token, queue =
        string.match(value, '^(%d)|(%d)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
    return {started = started == '1', redelivered = redelivered == '1', score = score,
            eta = eta, token = token, queue = queue}
end

local function reservation_value(started, redelivered, score, eta, token, queue)
    return (started and '1' or '0') .. '|' .. (redelivered and '1' or '0') .. '|' .. score
        .. '|' .. eta .. '|' .. token .. '|' .. queue
end

-- redis.call(command, key, items...) in slices, as Lua's unpack() has a stack limit;
-- returns the replies (when they are lists, as of HMGET) joined in order.
local function call_each_slice(command, key, items)
    local replies = {}
    for first = 1, #items, 1000 do
        local last = math.min(first + 999, #items)
        local reply = redis.call(command, key, unpack(items, first, last))
        if type(reply) == 'table' then
            for i = 1, #reply do
                replies[#replies + 1] = reply[i]
            end
        end
    end
    return replies
end

-- Split a scheduled member "<score>|<id>" (the score never holds "|", an id may).
local function split_member(member)
    local bar = string.find(member, '|', 1, true)
    return string.sub(member, 1, bar - 1), string.sub(member, bar + 1)
end

-- Put message `id` on `queue` at `score`: on hold if its eta is still ahead, else ready.
-- Publishes a wakeup only when the ready queue goes from empty to non-empty.
local function enqueue(prefix, queue, id, score, eta, now)
    if eta ~= '' and tonumber(eta) > now then
        redis.call('ZADD', prefix .. ':delayed:' .. queue, eta, score .. '|' .. id)
        return
    end
    local ready = prefix .. ':q:' .. queue
    redis.call('ZADD', ready, score, id)
    if redis.call('ZCARD', ready) == 1 then
        redis.call('PUBLISH', prefix .. ':wake:' .. queue, '1')
    end
end

-- Return a reserved message to its queue at its original place, marked redelivered.
local function requeue(prefix, id, reservation, now)
    enqueue(prefix, reservation.queue, id, reservation.score, reservation.eta, now)
    redis.call('SADD', prefix .. ':redelivered', id)
end

-- Forget consumer `cid` and settle everything it holds. Unstarted reservations are
-- requeued; started ones are requeued too when `lose_started` is false (a clean exit),
-- otherwise deleted with their bodies and returned as lost:
-- {requeued count, {cid, id, queue, body, priority, redelivered, ...}}.
local function release_consumer(prefix, cid, now, lose_started)
    local reserved_key = prefix .. ':reserved:' .. cid
    local held = redis.call('HGETALL', reserved_key)
    local requeued, lost = 0, {}
    for i = 1, #held, 2 do
        local id, reservation = held[i], parse_reservation(held[i + 1])
        if reservation.started and lose_started then
            local body = redis.call('HGET', prefix .. ':msg', id)
            redis.call('HDEL', prefix .. ':msg', id)
            if body then
                lost[#lost + 1] = cid
                lost[#lost + 1] = id
                lost[#lost + 1] = reservation.queue
                lost[#lost + 1] = body
                lost[#lost + 1] = priority_of(reservation.score)
                lost[#lost + 1] = reservation.redelivered and 1 or 0
            end
        else
            requeue(prefix, id, reservation, now)
            requeued = requeued + 1
        end
    end
    redis.call('DEL', reserved_key, prefix .. ':consumer:' .. cid)
    redis.call('ZREM', prefix .. ':consumers', cid)
    return requeued, lost
end

