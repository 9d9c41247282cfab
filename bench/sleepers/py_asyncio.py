# sleepers: 100,000 tasks sleeping 1 s at once.  --uvloop selects uvloop.
import asyncio, gc, sys, time

def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])

def rss_kib():
    return status_kib("VmRSS")

async def main(n):
    gc.collect()
    r0 = rss_kib()
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(asyncio.sleep(1)) for _ in range(n)]
    await asyncio.sleep(0.5)
    gc.collect()
    r1 = rss_kib()
    await asyncio.gather(*tasks)
    print("metric bytes_per_task %.0f" % ((status_kib("VmHWM") - r0) * 1024 / n))
    print("metric settled_bytes_per_task %.0f" % ((r1 - r0) * 1024 / n))
    print("metric over_seconds %.4f" % (time.perf_counter() - t0 - 1))

if "--uvloop" in sys.argv:
    import uvloop
    uvloop.install()
asyncio.run(main(100000))
