-- aio.http (API.md §6): HTTP/1.1 server and client on luaio streams,
-- assembled from http/common.lua (reasons, headers, framing, URLs),
-- http/server.lua (router, server loop, response writer) and
-- http/client.lua (pool, requests, redirects). (A module "luaio.http"
-- rather than http/init.lua: the embedded loader knows modules by the
-- file's path, so http/init.lua would be "luaio.http.init".)
local common = require "luaio.http.common"
local server = require "luaio.http.server"
local client = require "luaio.http.client"

local api = common.api
return {
  reasons = api.reasons,
  headers = api.headers,
  decode_query = api.decode_query,
  escape = api.escape,
  parse_url = api.parse_url,
  app = server.app,
  Session = client.Session,
  request = client.request,
  get = client.get,
  post = client.post,
}
