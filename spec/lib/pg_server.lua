-- A PostgreSQL 15 server for the specs: initdb in a temp dir owned by the
-- user postgres (CI runs as root: every server command goes through
-- `runuser -u postgres --`), the postmaster run in the foreground with its
-- log in the dir, listening on 127.0.0.1:<free port> and a Unix socket in
-- the dir, TLS with a certificate made for this run (CN and SAN localhost:
-- not 127.0.0.1, so verify-full to 127.0.0.1 fails). Stopped by its PID (postmaster.pid): SIGINT (fast
-- shutdown), wait, SIGKILL. pg_hba.conf is rewritten and reloaded (SIGHUP)
-- by the tests that need another one.
local aio = require "luaio"
local P = require "spec.lib.peers"

local S = {}
S.BIN = "/usr/lib/postgresql/15/bin"

-- why a server cannot run here (nil when it can)
function S.missing()
  if not P.read(S.BIN .. "/postgres") and not io.open(S.BIN .. "/postgres") then return "PostgreSQL 15 is not installed" end
  if aio.exec({ "id", "postgres" }).status ~= 0 then return "no user postgres" end
  return P.missing("runuser", "openssl", "psql")
end

local function as_postgres(argv, opts)
  local cmd = { "runuser", "-u", "postgres", "--" }
  for _, a in ipairs(argv) do cmd[#cmd + 1] = a end
  local r = aio.exec(cmd, opts or { timeout = 120 })
  if r.status ~= 0 then error(table.concat(argv, " ") .. " failed:\n" .. r.stdout .. r.stderr, 2) end
  return r
end

S.DEFAULT_HBA = [[
local all all trust
host all postgres 127.0.0.1/32 trust
host all u_trust 127.0.0.1/32 trust
host all u_pw 127.0.0.1/32 password
host all u_md5 127.0.0.1/32 md5
host all u_scram 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
]]

local Server = {}
Server.__index = Server

local function make_cert(dir)
  local r = aio.exec({ "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    "-keyout", dir .. "/server.key", "-out", dir .. "/server.crt", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost" }, { timeout = 60 })
  assert(r.status == 0, r.stderr)
  aio.exec({ "chown", "postgres:postgres", dir .. "/server.key", dir .. "/server.crt" })
  aio.exec({ "chmod", "600", dir .. "/server.key" })
end

-- S.start() -> server {dir, data, sock, port, url(user, db), psql(sql), hba(text), stop(), ...};
-- a failed start leaves nothing running
local function setup(self)
  local dir = P.tmpdir("pg")
  self.dir, self.data, self.sock = dir, dir .. "/data", dir .. "/sock"
  aio.exec({ "mkdir", "-p", self.sock })
  aio.exec({ "chown", "-R", "postgres:postgres", dir })
  aio.exec({ "chmod", "755", dir })
  as_postgres({ S.BIN .. "/initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
    "--no-sync", "--locale=C" })
  make_cert(dir)
  self.port = P.free_port()
  local conf = P.read(self.data .. "/postgresql.conf") .. ([[
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
ssl = on
ssl_cert_file = '%s/server.crt'
ssl_key_file = '%s/server.key'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 60
logging_collector = off
log_min_messages = info
]]):format(self.port, self.sock, dir, dir)
  P.write(self.data .. "/postgresql.conf", conf)
  P.write(self.data .. "/pg_hba.conf", S.DEFAULT_HBA)
  self:launch()
  self:psql([[
CREATE ROLE u_trust LOGIN;
CREATE ROLE u_pw LOGIN PASSWORD 'pw secret';
CREATE ROLE u_scram LOGIN PASSWORD 'scr@m:pässword/?';
SET password_encryption = 'md5';
CREATE ROLE u_md5 LOGIN PASSWORD 'md5 secret';
]])
  self:psql("CREATE DATABASE luaio_test")
  self:psql("GRANT ALL ON SCHEMA public TO PUBLIC", "luaio_test")
end

function S.start()
  local self = setmetatable({}, Server)
  local ok, err = pcall(setup, self)
  if not ok then
    self:stop()
    error(err, 0)
  end
  return self
end

-- run the postmaster (again, after stop or a crash), wait until it takes connections
function Server:launch()
  self.proc = P.start({ "runuser", "-u", "postgres", "--", S.BIN .. "/postgres", "-D", self.data },
    { dir = self.dir, name = "postgres" })
  local deadline = aio.now() + 60
  while true do
    local r = aio.exec({ "runuser", "-u", "postgres", "--", S.BIN .. "/pg_isready", "-h", self.sock, "-p",
      tostring(self.port) })
    if r.status == 0 then break end
    if self.proc.proc.returncode ~= nil then error("postgres exited:\n" .. self.proc:output():sub(-3000)) end
    if aio.now() > deadline then error("postgres did not start:\n" .. self.proc:output():sub(-3000)) end
    aio.sleep(0.05)
  end
  self.pid = tonumber((P.read(self.data .. "/postmaster.pid") or ""):match("^(%d+)"))
end

function Server:url(user, db, extra)
  local u = ("postgresql://%s@127.0.0.1:%d/%s"):format(user or "postgres", self.port, db or "luaio_test")
  if extra then u = u .. "?" .. extra end
  return u
end

-- psql as postgres over the Unix socket -> stdout (unaligned, tuples only)
function Server:psql(sql, db)
  return as_postgres({ "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-h", self.sock, "-p", tostring(self.port),
    "-U", "postgres", "-d", db or "postgres", "-c", sql }).stdout
end

-- replace pg_hba.conf and reload it (SIGHUP), waiting until the log says so
function Server:hba(text)
  P.write(self.data .. "/pg_hba.conf", text)
  local function count()
    local _, n = self.proc:output():gsub("reloading configuration files", "")
    return n
  end
  local before = count()
  aio.exec({ "kill", "-HUP", tostring(self.pid) })
  local deadline = aio.now() + 20
  while count() == before do
    if aio.now() > deadline then error("postgres did not reload") end
    aio.sleep(0.02)
  end
end

-- SIGINT (fast shutdown), wait, SIGKILL; the server can be launched again
function Server:halt()
  if not self.proc then return end
  if self.pid then aio.exec({ "kill", "-INT", tostring(self.pid) }) end
  if not self.proc:wait(20) and self.pid then aio.exec({ "kill", "-KILL", tostring(self.pid) }) end
  self.proc:stop(5)
  self.proc = nil
end

function Server:stop()
  self:halt()
  P.rmtree(self.dir)
end

return S
