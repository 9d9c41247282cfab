// echo server with node's net: PORT
const net = require("net");
net.createServer((s) => {
  s.setNoDelay(true);
  s.on("data", (d) => s.write(d));
  s.on("error", () => {});
}).listen(Number(process.argv[2]), "127.0.0.1", 1024);
