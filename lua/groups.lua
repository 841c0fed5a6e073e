-- groups.lua: reads one consumer group's XINFO GROUPS fields, shared by snapshot.lua and
-- advance.lua (package lua joins this fragment in front of each; it is not a script of its
-- own).
--
-- group_info(stream, name): the fields of group name of stream (name, pending,
-- last-delivered-id, ...) as a table; nil when the stream or the group does not exist.
local function group_info(stream, name)
  local groups = redis.pcall('XINFO', 'GROUPS', stream) -- an error when the stream is absent
  if type(groups) ~= 'table' or groups.err then
    return nil
  end
  for _, g in ipairs(groups) do
    local f = {}
    for i = 1, #g, 2 do
      f[g[i]] = g[i + 1]
    end
    if f['name'] == name then
      return f
    end
  end
  return nil
end

