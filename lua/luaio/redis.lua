-- aio.redis (API.md §14): a Redis client on luaio streams, assembled from
-- redis/config.lua (URLs and options), redis/client.lua (a connection:
-- commands, pipelines, sharing by many tasks), redis/pubsub.lua
-- (subscriptions) and redis/pool.lua. Replies are decoded natively
-- (resp.c, stream:_read_resp). Loaded on first use of aio.redis.
local core = require "luaio.core"
local config = require "luaio.redis.config"
local client = require "luaio.redis.client"
local pool = require "luaio.redis.pool"
require "luaio.redis.pubsub"

local M = {}

-- aio.redis.connect(url_or_opts) ⏸ -> client
function M.connect(url_or_opts)
  core.need_task("aio.redis.connect")
  return client.connect(config.settings(url_or_opts, 1))
end

-- aio.redis.pool(url_or_opts) -> pool (connections open on demand)
function M.pool(url_or_opts)
  return pool.new(config.settings(url_or_opts, 1))
end

return M
