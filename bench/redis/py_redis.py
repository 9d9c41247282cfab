# redis: GET/SET against a local redis-server, redis-py's asyncio client
# (redis.asyncio; the hiredis parser when python3-hiredis is installed).
#   python3 bench/redis/py_redis.py PORT seq|concurrent|pipelined
# The same workloads as bench/redis/luaio.lua. Prints "metric ops_per_second N".
import asyncio, sys, time
import redis.asyncio as redis

VALUE = b"x" * 64

async def seq(c, n, prefix):
    for i in range(1, n // 2 + 1):
        k = prefix + str(i % 100)
        await c.set(k, VALUE)
        await c.get(k)

async def concurrent(c, tasks, n):
    await asyncio.gather(*(seq(c, n // tasks, "t%d:" % t) for t in range(1, tasks + 1)))

async def pipelined(c, n, depth):
    for _ in range(n // depth):
        p = c.pipeline(transaction=False)
        for i in range(1, depth // 2 + 1):
            p.set("p%d" % i, VALUE)
            p.get("p%d" % i)
        await p.execute()

async def timed(n, coro):
    t0 = time.perf_counter()
    await coro
    return n / (time.perf_counter() - t0)

async def main(port, mode):
    c = redis.Redis(host="127.0.0.1", port=port, max_connections=50 if mode == "concurrent" else None)
    if mode == "seq":
        await seq(c, 2000, "w")
        r = await timed(20000, seq(c, 20000, "k"))
    elif mode == "concurrent":
        await concurrent(c, 50, 10000)
        r = await timed(100000, concurrent(c, 50, 100000))
    else:
        await pipelined(c, 10000, 100)
        r = await timed(200000, pipelined(c, 200000, 100))
    print("metric ops_per_second %.0f" % r)
    await c.close()

asyncio.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "seq"))
