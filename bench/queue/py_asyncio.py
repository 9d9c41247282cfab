# queue: 1,000,000 items through asyncio.Queue(100), 1 producer, 4 consumers.
import asyncio, sys, time

async def consumer(q):
    while await q.get() is not None:
        pass

async def main(n):
    q = asyncio.Queue(100)
    t0 = time.perf_counter()
    consumers = [asyncio.create_task(consumer(q)) for _ in range(4)]
    for i in range(n):
        await q.put(i)
    for _ in range(4):
        await q.put(None)
    await asyncio.gather(*consumers)
    print("metric items_per_second %.0f" % (n / (time.perf_counter() - t0)))

if "--uvloop" in sys.argv:
    import uvloop
    uvloop.install()
asyncio.run(main(1000000))
