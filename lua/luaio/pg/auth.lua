-- PostgreSQL authentication (the 'R' messages of the startup): trust,
-- cleartext password, MD5 and SCRAM-SHA-256 (RFC 5802, RFC 7677; without
-- channel binding: the client says "n", so a server needs none). The
-- digests are OpenSSL's (src/digest.c).
local core = require "luaio.core"
local wire = require "luaio.pg.wire"

local sunpack, byte, char, concat = string.unpack, string.byte, string.char, table.concat
local md5_hex, hmac, sha256 = core.md5_hex, core.hmac_sha256, core.sha256
local b64, unb64 = core.base64_encode, core.base64_decode

local M = {}

local function xor(a, b)
  local out = {}
  for i = 1, #a do out[i] = char(byte(a, i) ~ byte(b, i)) end
  return concat(out)
end

local function auth_error(msg, code)
  return core.error("PgError", msg, { code = code or "28000", message = msg, severity = "FATAL" })
end

local function need_password(opts)
  if opts.password == nil then error(auth_error("the server asks for a password and none was given", "28P01"), 0) end
  return opts.password
end

-- SCRAM-SHA-256 over conn's read/send; mechs: the server's list
local function scram(conn, opts, mechs)
  if not mechs:find("SCRAM-SHA-256\0", 1, true) then
    error(auth_error("no SASL mechanism in common (the server offers " .. mechs:gsub("%z", " ") .. ")"), 0)
  end
  local password = need_password(opts)
  local nonce = b64(core.random_bytes(18))
  local first_bare = "n=,r=" .. nonce
  conn:_send(wire.sasl_initial("SCRAM-SHA-256", "n,," .. first_bare))
  local server_first = conn:_auth_step(11)
  local r, s, i = server_first:match("^r=([^,]+),s=([^,]+),i=(%d+)")
  if not r or r:sub(1, #nonce) ~= nonce or not unb64(s) then
    error(core.error("ProtocolError", "PostgreSQL: a SCRAM server-first-message that is not one"), 0)
  end
  local salted = core.pbkdf2_sha256(password, unb64(s), tonumber(i))
  local client_key = hmac(salted, "Client Key")
  local final_bare = "c=biws,r=" .. r
  local auth_message = first_bare .. "," .. server_first .. "," .. final_bare
  local proof = xor(client_key, hmac(sha256(client_key), auth_message))
  conn:_send(wire.sasl_response(final_bare .. ",p=" .. b64(proof)))
  local server_final = conn:_auth_step(12)
  local expected = b64(hmac(hmac(salted, "Server Key"), auth_message))
  if server_final:match("^v=([^,]+)") ~= expected then
    error(core.error("ProtocolError", "PostgreSQL: the server's SCRAM signature is wrong (not the server that knows the password)"), 0)
  end
end

-- one 'R' message body: -> true when authentication is done (AuthenticationOk)
function M.step(conn, opts, body)
  local code = sunpack(">i4", body)
  if code == 0 then return true end
  if code == 3 then
    conn:_send(wire.password(need_password(opts)))
  elseif code == 5 then
    local salt = body:sub(5, 8)
    local inner = md5_hex(need_password(opts) .. opts.user)
    conn:_send(wire.password("md5" .. md5_hex(inner .. salt)))
  elseif code == 10 then
    scram(conn, opts, body:sub(5))
  else
    error(auth_error(("authentication method %d is not supported"):format(code)), 0)
  end
  return false
end

return M
