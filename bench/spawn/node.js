// spawn: 100,000 tasks x 10 "sleep(0)" (a macrotask turn: setImmediate), gathered.
const sleep0 = () => new Promise((resolve) => setImmediate(resolve));
async function worker() { for (let i = 0; i < 10; i++) await sleep0(); }
(async () => {
  const t0 = process.hrtime.bigint();
  const tasks = [];
  for (let i = 0; i < 100000; i++) tasks.push(worker());
  await Promise.all(tasks);
  console.log(`metric seconds ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(4)}`);
})();
