// sleepers: 100,000 async functions sleeping 1 s at once.
const rssKib = () => process.memoryUsage().rss / 1024;
const hwmKib = () => Number(require("fs").readFileSync("/proc/self/status", "utf8").match(/VmHWM:\s+(\d+)/)[1]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
(async () => {
  const N = 100000;
  if (global.gc) global.gc();
  const r0 = rssKib();
  const t0 = process.hrtime.bigint();
  const tasks = [];
  for (let i = 0; i < N; i++) tasks.push((async () => { await sleep(1000); })());
  await sleep(500);
  if (global.gc) global.gc();
  const r1 = rssKib();
  await Promise.all(tasks);
  console.log(`metric bytes_per_task ${Math.round((hwmKib() - r0) * 1024 / N)}`);
  console.log(`metric settled_bytes_per_task ${Math.round((r1 - r0) * 1024 / N)}`);
  console.log(`metric over_seconds ${(Number(process.hrtime.bigint() - t0) / 1e9 - 1).toFixed(4)}`);
})();
