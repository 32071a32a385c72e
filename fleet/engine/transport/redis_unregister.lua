-- unregister: a consumer's clean exit; everything it still holds is requeued.
-- KEYS[1]  the key prefix
-- ARGV[1]  consumer id
-- Returns  how many messages were requeued.
local requeued = release_consumer(KEYS[1], ARGV[1], clock_now(), false)
return requeued
