-- Threads, processes, files, signals (API.md §7): the native work is in
-- thread.c, process.c, fs.c and signal.c; this file installs the names.
return function(aio, core)
  aio.to_thread = core.to_thread
  aio.exec = core.exec
  aio.spawn_process = core.spawn_process
  aio.fs = core.fs
  aio.on_signal = core.on_signal
  aio.wait_signal = core.wait_signal
end
