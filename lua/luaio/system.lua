-- Threads, processes, files, signals (API.md §7): the native work is in
-- thread.c, process.c, fs.c and signal.c; this file installs the names.
return function(aio, core)
  aio.to_thread = core.to_thread
  aio.exec = core.exec
  aio.spawn_process = core.spawn_process
  aio.fs = core.fs
  -- fs.exists(path) ⏸ -> boolean: false only for a path that is not there
  -- (ENOENT, ENOTDIR); other failures (EACCES, ...) still raise
  local stat, check_type, arg_error, need_task = core.fs.stat, core.check_type, core.arg_error, core.need_task
  function aio.fs.exists(path)
    need_task("aio.fs.exists")
    check_type(path, 1, "string")
    if path == "" or path:find("\0", 1, true) then arg_error(1, "invalid path") end
    local ok, err = pcall(stat, path)
    if ok then return true end
    if core.is_error(err, "OSError") and (err.code == "ENOENT" or err.code == "ENOTDIR") then return false end
    error(err, 2)
  end
  aio.on_signal = core.on_signal
  aio.wait_signal = core.wait_signal
end
