-- A real redis-server for the specs: started in a temp directory (no
-- persistence, a Unix socket there, optionally a password, an ACL user and
-- TLS with a certificate made for the run), stopped by its PID.
--   local R = require "spec.lib.redis_server"
--   local srv = R.start{ password = "pw", tls = true }
--   srv.port, srv.sock, srv.tls_port, srv.ca, srv:url(), srv:cli(...), srv:stop()
local aio = require "luaio"
local P = require "spec.lib.peers"

local R = {}

R.missing = P.missing("redis-server", "redis-cli")

local Server = {}
Server.__index = Server

local function make_cert(dir)
  local r = aio.exec({ "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-keyout", dir .. "/key.pem", "-out", dir .. "/cert.pem" }, { timeout = 60 })
  assert(r.status == 0, r.stderr)
  return dir .. "/cert.pem", dir .. "/key.pem"
end

local function launch(self)
  local o = self.opts
  local argv = { "redis-server", "--port", tostring(self.port), "--bind", "127.0.0.1", "--save", "",
    "--appendonly", "no", "--dir", self.dir, "--unixsocket", self.sock, "--unixsocketperm", "700",
    "--daemonize", "no", "--logfile", "", "--enable-debug-command", "yes" }
  if o.password then argv[#argv + 1] = "--requirepass"; argv[#argv + 1] = o.password end
  if self.tls_port then
    for _, a in ipairs({ "--tls-port", tostring(self.tls_port), "--tls-cert-file", self.cert, "--tls-key-file",
      self.key, "--tls-ca-cert-file", self.cert, "--tls-auth-clients", "no" }) do argv[#argv + 1] = a end
  end
  for _, a in ipairs(o.args or {}) do argv[#argv + 1] = a end
  self.proc = P.start(argv, { dir = self.dir, name = "redis" .. (self.runs > 0 and self.runs or "") })
  self.runs = self.runs + 1
  self.proc:wait_for("Ready to accept connections", 20)
end

-- start{password=, tls=, args={...}} -> server
function R.start(opts)
  opts = opts or {}
  local self = setmetatable({ opts = opts, dir = P.tmpdir("redis"), runs = 0 }, Server)
  self.sock = self.dir .. "/redis.sock"
  if opts.tls then self.cert, self.key = make_cert(self.dir) self.ca = self.cert end
  local last
  for _ = 1, 3 do                        -- a free port taken meanwhile: try another
    self.port = P.free_port()
    self.tls_port = opts.tls and P.free_port() or nil
    local ok, err = pcall(launch, self)
    if ok then return self end
    last = err
    if self.proc then self.proc:stop() end
  end
  P.rmtree(self.dir)
  error("redis-server did not start: " .. tostring(last))
end

function Server:url(path)
  local auth = self.opts.password and (":" .. self.opts.password .. "@") or ""
  return ("redis://%s127.0.0.1:%d%s"):format(auth, self.port, path or "")
end

-- redis-cli with these arguments -> its stdout (trailing newline removed)
function Server:cli(...)
  local argv = { "redis-cli", "-h", "127.0.0.1", "-p", tostring(self.port) }
  if self.opts.password then argv[#argv + 1] = "--no-auth-warning"; argv[#argv + 1] = "-a"; argv[#argv + 1] = self.opts.password end
  for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
  local r = aio.exec(argv, { timeout = 30 })
  assert(r.status == 0, "redis-cli failed: " .. r.stderr .. r.stdout)
  return (r.stdout:gsub("\n$", ""))
end

-- kill it (SIGKILL: as a crash) and keep the directory for restart()
function Server:kill()
  if self.proc then pcall(self.proc.proc.kill, self.proc.proc, "SIGKILL") self.proc:stop() end
end

-- start again on the same ports
function Server:restart()
  self:kill()
  launch(self)
end

function Server:stop()
  if self.proc then self.proc:stop() end
  P.rmtree(self.dir)
end

return R
