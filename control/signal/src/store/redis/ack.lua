-- Records that a user processed its inbox up to a sequence, never moving back
-- nor past the last sequence assigned, and removes the acknowledged entries.
-- ARGV: prefix, user, sequence. Returns the last acknowledged sequence.
local p, user = ARGV[1], ARGV[2]
local last = tonumber(redis.call('HGET', p .. ':seq', user) or '0')
local acked = tonumber(redis.call('HGET', p .. ':acked', user) or '0')
local want = math.min(tonumber(ARGV[3]), last)
if want > acked then
  acked = want
  redis.call('HSET', p .. ':acked', user, acked)
  redis.call('XTRIM', p .. ':inbox:' .. user, 'MINID', (acked + 1) .. '-0')
end
return acked
