-- Course §10 "Context manager asynchrone": `async with` becomes a `<close>`
-- variable; the __close metamethod may wait, like __aexit__.
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

local function use_db()
  local db <close> = Database.connect()
  print("📊 " .. db:query("SELECT * FROM users"))
end                                    -- closed here, even on error

use_db()
print("✅ Done")
