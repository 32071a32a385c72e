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
    local priority = 9 - math.floor((tonumber(score) or 0) / PRIORITY_SPAN)
    if priority ~= priority or priority < 0 then  -- (a score fleet did not write)
        return 0
    end
    return math.min(priority, 9)
end

-- Malformed entries: anything fleet did not write (a key of another type, a member or a
-- reservation in another format) never fails a script. It is moved out of the way and
-- recorded in the dead letters with the reason (and in the server's log), and the script
-- carries on: one bad write costs only itself.
local DEAD_LETTERS_KEEP = 10000

-- Add {id, queue, body, reason, at} to the dead letters (newest first, DEAD_LETTERS_KEEP
-- kept); a dead-letter list of another type is renamed out of the way first.
local function record_dead(prefix, id, queue, body, reason)
    local dead = prefix .. ':dead'
    local entry = cjson.encode({id = id, queue = queue, body = body, reason = reason,
                                at = clock_now()})
    local pushed = redis.pcall('LPUSH', dead, entry)
    if type(pushed) == 'table' and pushed.err then
        local aside = prefix .. ':aside:' .. string.format('%.6f', clock_now()) .. ':' .. dead
        redis.call('RENAME', dead, aside)
        record_dead(prefix, '', '', '', 'key ' .. dead .. ' was not a list (not written by '
                    .. 'fleet): renamed to ' .. aside)
        redis.call('LPUSH', dead, entry)
    end
    redis.call('LTRIM', dead, 0, DEAD_LETTERS_KEEP - 1)
    redis.log(redis.LOG_WARNING, 'fleet: dead letter ' .. id .. ': ' .. reason)
end

-- Rename `key` to <p>:aside:<time>:<key> and record why in the dead letters.
local function set_aside(prefix, key, why, queue)
    local aside = prefix .. ':aside:' .. string.format('%.6f', clock_now()) .. ':' .. key
    redis.call('RENAME', key, aside)
    record_dead(prefix, '', queue or '', '', 'key ' .. key .. ' ' .. why
                .. ' (not written by fleet): renamed to ' .. aside)
end

-- redis.call(command, key, ...) for a key that must be a `wanted` ('zset', 'hash', ...): a key
-- of another type is set aside (see set_aside) and the command runs on the key anew.
local function call_typed(prefix, wanted, command, key, ...)
    local reply = redis.pcall(command, key, ...)
    if type(reply) ~= 'table' or not reply.err then
        return reply
    end
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= wanted and kind ~= 'none' then
        set_aside(prefix, key, 'held a ' .. kind .. ', not a ' .. wanted)
    end
    return redis.call(command, key, ...)
end

-- A reservation value (see the format above), or nil when it is not in that format.
local function parse_reservation(value)
    local started, redelivered, score, eta, token, queue =
        string.match(value, '^([01])|([01])|([^|]*)|([^|]*)|([^|]*)|(.*)$')
    if not started or not tonumber(score) or (eta ~= '' and not tonumber(eta))
            or queue == '' then
        return nil
    end
    return {started = started == '1', redelivered = redelivered == '1', score = score,
            eta = eta, token = token, queue = queue}
end

-- A reservation of consumer `cid` that is not in fleet's format: its message (if any) goes
-- to the dead letters with its body, instead of back to a queue nobody can name.
local function dead_reservation(prefix, cid, id, value)
    local body = call_typed(prefix, 'hash', 'HGET', prefix .. ':msg', id)
    redis.call('HDEL', prefix .. ':msg', id)
    redis.call('HDEL', prefix .. ':reserved:' .. cid, id)
    record_dead(prefix, id, '', body or '', 'the reservation of ' .. cid .. ' for this '
                .. 'message is not in fleet\'s format: ' .. string.sub(value, 1, 200))
end

local function reservation_value(started, redelivered, score, eta, token, queue)
    return (started and '1' or '0') .. '|' .. (redelivered and '1' or '0') .. '|' .. score
        .. '|' .. eta .. '|' .. token .. '|' .. queue
end

-- redis.call(command, key, items...) in slices, as Lua's unpack() has a stack limit;
-- returns the replies (when they are lists, as of HMGET) joined in order. With `prefix`
-- and `wanted`, a key of another type is set aside first (see call_typed).
local function call_each_slice(command, key, items, prefix, wanted)
    local replies = {}
    for first = 1, #items, 1000 do
        local last = math.min(first + 999, #items)
        local reply
        if prefix then
            reply = call_typed(prefix, wanted, command, key, unpack(items, first, last))
        else
            reply = redis.call(command, key, unpack(items, first, last))
        end
        if type(reply) == 'table' then
            for i = 1, #reply do
                replies[#replies + 1] = reply[i]
            end
        end
    end
    return replies
end

-- Split a scheduled member "<score>|<id>" (the score never holds "|", an id may); nil for
-- a member in another format.
local function split_member(member)
    local bar = string.find(member, '|', 1, true)
    if not bar or bar == #member or not tonumber(string.sub(member, 1, bar - 1)) then
        return nil
    end
    return string.sub(member, 1, bar - 1), string.sub(member, bar + 1)
end

-- Take a scheduled member that is not "<score>|<id>" off `delayed` into the dead letters.
local function dead_member(prefix, delayed, queue, member)
    redis.call('ZREM', delayed, member)
    record_dead(prefix, '', queue, member, 'member of ' .. delayed .. ' is not "<score>|<id>" '
                .. '(not written by fleet)')
end

-- Put message `id` on `queue` at `score`: on hold if its eta is still ahead, else ready.
-- Publishes a wakeup only when the ready queue goes from empty to non-empty.
local function enqueue(prefix, queue, id, score, eta, now)
    if eta ~= '' and tonumber(eta) > now then
        call_typed(prefix, 'zset', 'ZADD', prefix .. ':delayed:' .. queue, eta,
                   score .. '|' .. id)
        return
    end
    local ready = prefix .. ':q:' .. queue
    call_typed(prefix, 'zset', 'ZADD', ready, score, id)
    if redis.call('ZCARD', ready) == 1 then
        redis.call('PUBLISH', prefix .. ':wake:' .. queue, '1')
    end
end

-- Return a reserved message to its queue at its original place, marked redelivered.
local function requeue(prefix, id, reservation, now)
    enqueue(prefix, reservation.queue, id, reservation.score, reservation.eta, now)
    call_typed(prefix, 'set', 'SADD', prefix .. ':redelivered', id)
end

-- Forget consumer `cid` and settle everything it holds. Unstarted reservations are
-- requeued; started ones are requeued too when `lose_started` is false (a clean exit),
-- otherwise deleted with their bodies and returned as lost:
-- {requeued count, {cid, id, queue, body, priority, redelivered, ...}}.
local function release_consumer(prefix, cid, now, lose_started)
    local reserved_key = prefix .. ':reserved:' .. cid
    local held = call_typed(prefix, 'hash', 'HGETALL', reserved_key)
    local requeued, lost = 0, {}
    for i = 1, #held, 2 do
        local id, reservation = held[i], parse_reservation(held[i + 1])
        if not reservation then
            dead_reservation(prefix, cid, id, held[i + 1])
        elseif reservation.started and lose_started then
            local body = call_typed(prefix, 'hash', 'HGET', prefix .. ':msg', id)
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
    call_typed(prefix, 'zset', 'ZREM', prefix .. ':consumers', cid)
    return requeued, lost
end

