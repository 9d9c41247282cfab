-- Threads, processes, files, signals (API.md §7): the native work is in
-- thread.c, process.c, fs.c and signal.c; this file names it and adds
-- fs.exists.
local core = require "luaio.core"
local check_type = require("luaio.check").check_type

local arg_error, need_task, is_error = core.arg_error, core.need_task, core.is_error
local fs, stat = core.fs, core.fs.stat
local pcall, error = pcall, error

-- fs.exists(path) ⏸ -> boolean: false only for a path that is not there
-- (ENOENT, ENOTDIR); other failures (EACCES, ...) still raise
function fs.exists(path)
  need_task("aio.fs.exists")
  check_type(path, 1, "string")
  if path == "" or path:find("\0", 1, true) then arg_error(1, "invalid path") end
  local ok, err = pcall(stat, path)
  if ok then return true end
  if is_error(err, "OSError") and (err.code == "ENOENT" or err.code == "ENOTDIR") then return false end
  error(err, 2)
end

return {
  to_thread = core.to_thread,
  exec = core.exec,
  spawn_process = core.spawn_process,
  fs = fs,
  on_signal = core.on_signal,
  wait_signal = core.wait_signal,
}
