-- lease: take or renew a lease, or give it up.
-- KEYS[1]  the lease key (<p>:lease:<name>)
-- KEYS[2]  the key prefix
-- ARGV[1]  "acquire" or "release"
-- ARGV[2]  owner
-- ARGV[3]  ttl in milliseconds (acquire only)
-- Returns  1 if `owner` holds the lease afterwards (acquire) or gave it up (release), else 0.
--
-- The value is "<expires>|<owner>", `expires` in seconds since the epoch by the clock in
-- force (see redis_lib.lua), and a lease whose `expires` has passed is free. With the
-- server's clock the key also expires (PX) when the lease does, so a lease nobody renews or
-- releases leaves nothing behind. A value without "<expires>|" (written by an older fleet,
-- which relied on PX alone) is held by that owner until its key expires; one without an
-- expiry either, or a key of another type, was not written by fleet and holds nothing.
local function holder_of(value, now)
    if not value then
        return nil
    end
    local expires, owner = string.match(value, '^(%d+%.?%d*)|(.*)$')
    if not expires then
        if redis.call('PTTL', KEYS[1]) < 0 then
            return nil  -- no expiry either: not written by fleet, it holds nothing
        end
        return value
    end
    if tonumber(expires) > now then
        return owner
    end
    return nil
end

local now = clock_now()
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then  -- not a string: not written by fleet (see set_aside)
    set_aside(KEYS[2], KEYS[1], 'was not a lease')
    value = false
end
local holder = holder_of(value, now)
if ARGV[1] == 'acquire' then
    if holder and holder ~= ARGV[2] then
        return 0
    end
    local value = string.format('%.17g', now + tonumber(ARGV[3]) / 1000) .. '|' .. ARGV[2]
    if server_clock() then
        redis.call('SET', KEYS[1], value, 'PX', ARGV[3])
    else
        redis.call('SET', KEYS[1], value)
    end
    return 1
end
if holder == ARGV[2] then
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
