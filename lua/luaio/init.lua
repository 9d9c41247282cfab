-- luaio: the `aio` facade, assembled from the Lua half's modules. Each
-- module requires what it uses and returns its own public names; this file
-- only puts them together (and installs the globals luaio replaces).
--
-- The native core (the C files under src/) is the module "luaio.core"
-- (module.c registers it before loading this file); what each core function
-- does, and which Lua hooks C calls by name (hooks.lua), is the seam index at
-- the top of src/module.c.
local core = require "luaio.core"
local aio = {}

local function install(names)
  for k, v in pairs(names) do aio[k] = v end
end

for _, name in ipairs { "run", "spawn", "sleep", "now", "current_task", "all_tasks",
                        "stats", "set_debug", "is_error", "version" } do
  aio[name] = core[name]
end
install(require "luaio.errors")            -- new_error, raise
aio.json = require "luaio.json"
install(require "luaio.combinators")       -- gather, wait_for, timeout, wait, ..., _is_task
install(require "luaio.sync")              -- Lock, Semaphore, BoundedSemaphore, Event, Condition
install(require "luaio.queue")             -- Queue, LifoQueue, PriorityQueue

local resources = require "luaio.resources"
aio._track, aio._untrack = resources.track, resources.untrack

-- the subsystems' Lua halves (a build may leave one out)
for _, name in ipairs { "streams", "system" } do
  if package.preload["luaio." .. name] then install(require("luaio." .. name)) end
end
-- These load on first use: most programs need few of them, and every host
-- (an embedder may make many) would parse them all at start. A name maps to
-- a module (the value is the module) or to {module, field}.
local on_first_use = { http = "luaio.http", websocket = "luaio.websocket",
                       redis = "luaio.redis", pg = "luaio.pg",
                       repl = { "luaio.repl", "repl" }, pretty = { "luaio.pretty", "pretty" },
                       monitor = { "luaio.monitor", "monitor" } }   -- (LUAIO_MONITOR: main.c)
setmetatable(aio, { __index = function(t, k)
  local what = on_first_use[k]
  local name, field = what, nil
  if type(what) == "table" then name, field = what[1], what[2] end
  if name and package.preload[name] then
    local m = require(name)
    if field then m = m[field] end
    rawset(t, k, m)
    return m
  end
end })

aio.worker = require("luaio.worker").info  -- (and hooks.worker_stop)
require "luaio.hooks"                      -- the hooks C calls by name

local globals = require "luaio.globals"
_G.require = globals.require               -- a require that may wait
os.exit = globals.exit                     -- no state close under a running loop

package.loaded.luaio = aio
return aio
