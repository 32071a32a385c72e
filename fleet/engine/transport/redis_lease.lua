-- lease: take or renew a lease, or give it up.
-- KEYS[1]  the lease key (<p>:lease:<name>)
-- ARGV[1]  "acquire" or "release"
-- ARGV[2]  owner
-- ARGV[3]  ttl in milliseconds (acquire only)
-- Returns  1 if `owner` holds the lease afterwards (acquire) or gave it up (release), else 0.
local holder = redis.call('GET', KEYS[1])
if ARGV[1] == 'acquire' then
    if holder and holder ~= ARGV[2] then
        return 0
    end
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
    return 1
end
if holder == ARGV[2] then
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
