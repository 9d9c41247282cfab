// hello-world HTTPS server on node's https: PORT CERT KEY
const https = require("https");
const fs = require("fs");
const [port, cert, key] = process.argv.slice(2);
https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain" });
  res.end("Hello, World!");
}).listen(Number(port), "127.0.0.1", 1024);
