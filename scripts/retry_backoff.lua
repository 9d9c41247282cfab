-- Course §3 "Gestion des erreurs": each API call is retried with
-- exponential backoff (1 s, 2 s, ...); gather with return_exceptions keeps
-- one failure from hiding the others; a summary line per API.
local aio = require "luaio"
math.randomseed(tonumber(os.getenv("LUAIO_SEED")) or os.time())
local SCALE = tonumber(os.getenv("LUAIO_DEMO_SCALE")) or 1   -- shortens the waits in tests

local function risky_task(name, failure_rate)
  print(("🎲 %s started (failure risk: %.0f%%)"):format(name, failure_rate * 100))
  aio.sleep((0.5 + math.random() * 1.5) * SCALE)
  if math.random() < failure_rate then error("Failure of " .. name, 0) end
  print(("✅ %s succeeded"):format(name))
  return "Result of " .. name
end

local function robust_executor(name, failure_rate, max_attempts)
  max_attempts = max_attempts or 3
  for attempt = 1, max_attempts do
    print(("🔄 %s - attempt %d/%d"):format(name, attempt, max_attempts))
    -- pcall plays the part of try/except around the awaited call
    local ok, result = pcall(risky_task, name, failure_rate)
    if ok then return { name = name, result = result, attempts = attempt } end
    if aio.is_error(result, "CancelledError") then error(result, 0) end   -- never swallow a cancellation
    print(("❌ %s - attempt %d failed: %s"):format(name, attempt, result))
    if attempt == max_attempts then return { name = name, error = result, attempts = attempt } end
    aio.sleep(2 ^ (attempt - 1) * SCALE)        -- exponential backoff
  end
end

print("🔧 Robustness test with automatic retry")
local results = aio.gather({
  function() return robust_executor("API_1", 0.2) end,
  function() return robust_executor("API_2", 0.4) end,
  function() return robust_executor("API_3", 0.6) end,
  function() return robust_executor("API_4", 0.1) end,
}, { return_exceptions = true })

print("\n📊 Results:")
for _, r in ipairs(results) do
  if type(r) ~= "table" or not r.name then
    print(("  💥 Unexpected error: %s"):format(tostring(r)))
  elseif r.error then
    print(("  ❌ %s: %s (after %d attempts)"):format(r.name, r.error, r.attempts))
  else
    print(("  ✅ %s: success (attempt %d)"):format(r.name, r.attempts))
  end
end
