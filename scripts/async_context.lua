-- Course §10 "Context manager asynchrone": `async with` becomes a `<close>`
-- variable; the __close metamethod may wait, like __aexit__.
--
--   luaio scripts/async_context.lua             -- a simulated database (sleeps)
--   luaio scripts/async_context.lua --pg URL    -- a real one: PostgreSQL at URL
--                                                  (postgresql://user:pw@host:port/db)
local aio = require "luaio"

local Database = {}
Database.__index = Database
Database.__close = function(db)        -- __aexit__
  print("🔌 Closing the database connection")
  aio.sleep(0.1)
  db.open = false
end

function Database.connect()            -- __aenter__
  print("🔌 Connecting to the database")
  aio.sleep(0.1)
  return setmetatable({ open = true }, Database)
end

function Database:query(sql)
  aio.sleep(0.2)
  return "Result of: " .. sql
end

-- the same sequence on PostgreSQL: aio.pg's connection is itself a
-- `<close>` value (its __close sends Terminate and closes the socket)
local PgDatabase = {}
PgDatabase.__index = PgDatabase
PgDatabase.__close = function(db)
  print("🔌 Closing the database connection")
  db.conn:close()
  db.open = false
end

function PgDatabase.connect(url)
  print("🔌 Connecting to the database")
  return setmetatable({ conn = aio.pg.connect(url), open = true }, PgDatabase)
end

function PgDatabase:query(sql)
  local rows = self.conn:query(sql)
  return ("Result of: %s (%d rows; first: %s)"):format(sql, #rows, rows[1] and rows[1][rows.columns[1]])
end

local pg_url = arg[1] == "--pg" and arg[2]
if arg[1] == "--pg" and not pg_url then
  io.stderr:write("usage: luaio scripts/async_context.lua [--pg postgresql://user:password@host:port/db]\n")
  os.exit(2)
end

local function use_db()
  local db <close> = pg_url and PgDatabase.connect(pg_url) or Database.connect()
  local sql = pg_url and "SELECT current_user AS who, version() AS version" or "SELECT * FROM users"
  print("📊 " .. db:query(sql))
end                                    -- closed here, even on error

use_db()
print("✅ Done")
