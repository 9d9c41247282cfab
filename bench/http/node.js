// hello-world HTTP server on node's http: PORT
const http = require("http");
http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain" });
  res.end("Hello, World!");
}).listen(Number(process.argv[2]), "127.0.0.1", 1024);
