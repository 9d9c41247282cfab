# PostgreSQL client benchmark, the asyncpg side (bench/pg/luaio.lua's peer):
# the same three measurements, the way asyncpg's users write them.
# usage: python3 bench/pg/py_asyncpg.py URL [--uvloop]
import asyncio, sys, time
import asyncpg

N, CONNS, ROWS = 20000, 10, 100000

async def best(times, fn):
    b = float("inf")
    for _ in range(times):
        t0 = time.perf_counter()
        await fn()
        b = min(b, time.perf_counter() - t0)
    return b

async def main(url):
    c = await asyncpg.connect(url)
    await c.execute(f"""CREATE TABLE IF NOT EXISTS bench_rows AS SELECT g AS i, 'row number ' || g AS t,
      g * 1.25::float8 AS f, g % 2 = 0 AS b, timestamp '2024-01-01' + g * interval '1 second' AS ts
      FROM generate_series(1, {ROWS}) g""")
    await c.fetch("SELECT $1::int", 0)

    async def seq():
        for i in range(1, N + 1):
            assert (await c.fetch("SELECT $1::int AS v", i))[0]["v"] == i
    t = await best(3, seq)
    print(f"metric select_seq_per_second {N / t:.1f}")

    conns = [c] + [await asyncpg.connect(url) for _ in range(CONNS - 1)]
    for ck in conns: await ck.fetch("SELECT $1::int AS v", 0)
    async def one(ck):
        for i in range(1, N // CONNS + 1):
            assert (await ck.fetch("SELECT $1::int AS v", i))[0]["v"] == i
    async def conc():
        await asyncio.gather(*(one(ck) for ck in conns))
    t = await best(3, conc)
    print(f"metric select_10conn_per_second {N / t:.1f}")

    await c.fetch("SELECT i, t, f, b, ts FROM bench_rows")
    async def fetch():
        rows = await c.fetch("SELECT i, t, f, b, ts FROM bench_rows")
        assert len(rows) == ROWS and rows[-1]["i"] == ROWS
    t = await best(5, fetch)
    print(f"metric fetch_rows_per_second {ROWS / t:.1f}")
    for ck in conns: await ck.close()

if "--uvloop" in sys.argv:
    import uvloop
    uvloop.install()
asyncio.run(main(sys.argv[1]))
