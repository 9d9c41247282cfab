-- aio.http (API.md §6, §6b): HTTP/1.1 server and client on luaio streams,
-- assembled from http/common.lua (reasons, headers, URLs), http/body.lua
-- (bodies read in pieces), http/router.lua, http/request.lua,
-- http/response.lua and http/server.lua (the server), http/files.lua
-- (files from disk), http/form.lua and http/cookies.lua (forms, cookies)
-- and http/client.lua (pool, requests, redirects). (A module "luaio.http"
-- rather than http/init.lua: the embedded loader knows modules by the
-- file's path, so http/init.lua would be "luaio.http.init".)
local common = require "luaio.http.common"
local server = require "luaio.http.server"
local client = require "luaio.http.client"

local api = common.api
local http = {
  reasons = api.reasons,
  headers = api.headers,
  decode_query = api.decode_query,
  encode_query = api.encode_query,
  escape = api.escape,
  parse_url = api.parse_url,
  url_join = api.url_join,
  app = server.app,
  abort = server.abort,
  Session = client.Session,
  request = client.request,
}
for _, m in ipairs { "get", "post", "put", "patch", "delete", "head" } do http[m] = client[m] end
-- aio.http.file: files.lua loads on first use
http.file = function(...) return require("luaio.http.files").file(...) end
return http
