-- PostgreSQL client benchmark (luaio side; asyncpg.py is the peer):
-- SELECT $1::int x 20,000 on one connection, the same spread over 10
-- connections (one task each), and fetching 100,000 rows x 5 columns
-- (int, text, float, bool, timestamp). Prints `metric NAME VALUE` lines.
-- usage: luaio bench/pg/luaio.lua URL
local aio = require "luaio"
local url = assert(arg[1], "usage: luaio bench/pg/luaio.lua URL")
local N, CONNS, ROWS = 20000, 10, 100000

local function best(times, fn)
  local b = math.huge
  for _ = 1, times do
    local t0 = aio.now()
    fn()
    b = math.min(b, aio.now() - t0)
  end
  return b
end

aio.run(function()
  local c = aio.pg.connect(url)
  c:execute(([[CREATE TABLE IF NOT EXISTS bench_rows AS SELECT g AS i, 'row number ' || g AS t,
    g * 1.25::float8 AS f, g %% 2 = 0 AS b, timestamp '2024-01-01' + g * interval '1 second' AS ts
    FROM generate_series(1, %d) g]]):format(ROWS))
  c:query("SELECT $1::int", 0)
  local t = best(3, function()
    for i = 1, N do assert(c:query("SELECT $1::int AS v", i)[1].v == i) end
  end)
  print(("metric select_seq_per_second %.1f"):format(N / t))

  local conns = { c }
  for k = 2, CONNS do conns[k] = aio.pg.connect(url) end
  for k = 1, CONNS do conns[k]:query("SELECT $1::int AS v", 0) end
  t = best(3, function()
    local jobs = {}
    for k = 1, CONNS do
      jobs[k] = function()
        local ck = conns[k]
        for i = 1, N // CONNS do assert(ck:query("SELECT $1::int AS v", i)[1].v == i) end
      end
    end
    aio.gather(jobs)
  end)
  print(("metric select_10conn_per_second %.1f"):format(N / t))

  c:query("SELECT i, t, f, b, ts FROM bench_rows")
  t = best(5, function()
    local rows = c:query("SELECT i, t, f, b, ts FROM bench_rows")
    assert(#rows == ROWS and rows[ROWS].i == ROWS)
  end)
  print(("metric fetch_rows_per_second %.1f"):format(ROWS / t))
  for k = 1, CONNS do conns[k]:close() end
end)
