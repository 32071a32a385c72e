-- purge: delete up to a batch of a queue's ready and scheduled messages with their bodies.
-- KEYS[1]  the key prefix
-- ARGV[1]  queue name
-- ARGV[2]  batch size
-- Returns  how many messages were deleted (call again until it returns 0).
-- Reserved messages are not touched: they are in no queue's sorted sets.
local prefix, queue, batch = KEYS[1], ARGV[1], tonumber(ARGV[2])
local ready_key, delayed_key = prefix .. ':q:' .. queue, prefix .. ':delayed:' .. queue
local ids = call_typed(prefix, 'zset', 'ZRANGE', ready_key, 0, batch - 1)
if #ids > 0 then
    call_each_slice('ZREM', ready_key, ids)
end
local members = call_typed(prefix, 'zset', 'ZRANGE', delayed_key, 0, batch - 1)
if #members > 0 then
    call_each_slice('ZREM', delayed_key, members)
end
local deleted = #ids + #members
for _, member in ipairs(members) do
    local _, id = split_member(member)
    ids[#ids + 1] = id  -- (none for a member fleet did not write: it is simply deleted)
end
if #ids > 0 then
    call_each_slice('HDEL', prefix .. ':msg', ids, prefix, 'hash')
    call_each_slice('SREM', prefix .. ':redelivered', ids, prefix, 'set')
end
return deleted
