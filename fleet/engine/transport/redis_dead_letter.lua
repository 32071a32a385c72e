-- dead_letter: record a message in the dead-letter list and ack it.
-- KEYS[1]  the key prefix
-- ARGV[1]  consumer id, ARGV[2] message id, ARGV[3] queue, ARGV[4] body, ARGV[5] reason
-- ARGV[6]  how many dead letters to keep (oldest dropped first)
-- Returns  1 if the message was reserved by the consumer (and so acked), else 0.
local prefix, cid, id = KEYS[1], ARGV[1], ARGV[2]
local entry = cjson.encode({id = id, queue = ARGV[3], body = ARGV[4], reason = ARGV[5],
                            at = clock_now()})
call_typed(prefix, 'list', 'LPUSH', prefix .. ':dead', entry)
redis.call('LTRIM', prefix .. ':dead', 0, tonumber(ARGV[6]) - 1)
if call_typed(prefix, 'hash', 'HDEL', prefix .. ':reserved:' .. cid, id) == 1 then
    call_typed(prefix, 'hash', 'HDEL', prefix .. ':msg', id)
    return 1
end
return 0
