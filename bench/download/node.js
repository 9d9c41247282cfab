// streamed download: the files of DIR with fs.createReadStream: PORT DIR
const http = require("http"), fs = require("fs"), path = require("path");
const [port, dir] = process.argv.slice(2);
http.createServer((req, res) => {
  const file = path.join(dir, path.basename(req.url));
  fs.stat(file, (err, st) => {
    if (err) { res.writeHead(404); return res.end(); }
    res.writeHead(200, { "Content-Length": st.size, "Content-Type": "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
}).listen(+port, "127.0.0.1");
