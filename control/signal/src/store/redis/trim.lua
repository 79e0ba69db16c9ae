-- Removes up to 1000 of a user's inbox entries older than a cutoff.
-- ARGV: prefix, user, cutoff (unix ms). Returns the number removed.
local key = ARGV[1] .. ':inbox:' .. ARGV[2]
local cutoff = tonumber(ARGV[3])
local old = {}
for _, entry in ipairs(redis.call('XRANGE', key, '-', '+', 'COUNT', 1000)) do
  local fields = entry[2]
  local sent_at = nil
  for i = 1, #fields, 2 do
    if fields[i] == 't' then sent_at = tonumber(fields[i + 1]) end
  end
  if sent_at == nil or sent_at >= cutoff then break end
  old[#old + 1] = entry[1]
end
if #old > 0 then
  redis.call('XDEL', key, unpack(old))
end
return #old
