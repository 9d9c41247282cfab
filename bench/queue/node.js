// queue: 1,000,000 items through a bounded async queue of 100, 1 producer, 4 consumers.
class Queue {
  constructor(max) { this.max = max; this.items = []; this.head = 0; this.getters = []; this.putters = []; }
  size() { return this.items.length - this.head; }
  async put(x) {
    while (this.size() >= this.max) await new Promise((r) => this.putters.push(r));
    this.items.push(x);
    const g = this.getters.shift(); if (g) g();
  }
  async get() {
    while (this.size() === 0) await new Promise((r) => this.getters.push(r));
    const x = this.items[this.head++];
    if (this.head > 1024) { this.items = this.items.slice(this.head); this.head = 0; }
    const p = this.putters.shift(); if (p) p();
    return x;
  }
}
(async () => {
  const N = 1000000, q = new Queue(100);
  const t0 = process.hrtime.bigint();
  const consumers = [];
  for (let i = 0; i < 4; i++) consumers.push((async () => { while ((await q.get()) !== null); })());
  for (let i = 0; i < N; i++) await q.put(i);
  for (let i = 0; i < 4; i++) await q.put(null);
  await Promise.all(consumers);
  console.log(`metric items_per_second ${Math.round(N / (Number(process.hrtime.bigint() - t0) / 1e9))}`);
})();
