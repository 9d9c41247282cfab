# spawn: 100,000 tasks x 10 sleep(0), gathered.  --uvloop selects uvloop.
import asyncio, sys, time

async def worker():
    for _ in range(10):
        await asyncio.sleep(0)

async def main(n):
    t0 = time.perf_counter()
    await asyncio.gather(*[asyncio.create_task(worker()) for _ in range(n)])
    print("metric seconds %.4f" % (time.perf_counter() - t0))

if "--uvloop" in sys.argv:
    import uvloop
    uvloop.install()
asyncio.run(main(100000))
