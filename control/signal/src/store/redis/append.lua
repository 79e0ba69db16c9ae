-- Appends one message to the inbox of each recipient, atomically, unless
-- (sender, client id) was stored already.
-- ARGV: prefix, sender, client id, "user"|"room", target, stored message JSON,
--       sender must be a member ("1"|"0"), now (unix ms), retention (ms)
-- Returns {0, deliveries JSON} for a new message, {1, deliveries JSON} for a
-- duplicate, {2, ""} for a room the sender may not post to.
local p = ARGV[1]
local idem = p .. ':idem:' .. ARGV[2] .. '\0' .. ARGV[3]
local prior = redis.call('GET', idem)
if prior then
  return {1, prior}
end
local recipients
if ARGV[4] == 'room' then
  local members = redis.call('SMEMBERS', p .. ':members:' .. ARGV[5])
  local is_member = false
  recipients = {}
  for _, m in ipairs(members) do
    if m == ARGV[2] then
      is_member = true
    else
      recipients[#recipients + 1] = m
    end
  end
  if #members == 0 or (ARGV[7] == '1' and not is_member) then
    return {2, ''}
  end
  table.sort(recipients)
else
  recipients = {ARGV[5]}
end
local out = {}
for _, user in ipairs(recipients) do
  local seq = redis.call('HINCRBY', p .. ':seq', user, 1)
  redis.call('XADD', p .. ':inbox:' .. user, seq .. '-0', 't', ARGV[8], 'm', ARGV[6])
  out[#out + 1] = {user, seq}
end
local encoded = '[]'
if #out > 0 then
  encoded = cjson.encode(out)
end
redis.call('SET', idem, encoded, 'PX', ARGV[9])
if #out > 0 then
  redis.call('PUBLISH', p .. ':notify', encoded)
end
return {0, encoded}
