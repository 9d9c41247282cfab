-- "No script can crash the host" (API.md §3b): the hostile-user sweep of
-- spec/misuse/sweep.lua, run as a child process. The sweep calls every public
-- function and method with hostile values, wrong selves, after close and in
-- non-yieldable contexts (table.sort, string.gsub, __tostring, an xpcall
-- handler, __gc), then checks the host is healthy and no handle leaked.
-- Exit status: 0 clean, 1 unclear errors / hangs / unhealthy, 3 the host
-- crashed (the sweep names the call that was running).
local support = require "spec.support"

local function run_sweep(extra, limit)
  local bin = support.luaio
  if not bin:find("^/") then
    local p = io.popen("pwd") local cwd = p:read("l") p:close()
    bin = cwd .. "/" .. bin
  end
  local cmd = ("LUAIO_BIN=%s LUAIO_MISUSE_LIMIT=%d %s spec/misuse/sweep.lua %s"):format(
    support.quote(bin), limit, support.quote(bin), extra or "")
  local out, err, code = support.sh(cmd)
  return out, err, code
end

local function summary(out)
  -- the summary and what follows it (crash reports come after it)
  local s = out:match("\n(== misuse sweep summary.*)$") or out
  return s
end

describe("misuse sweep (no script can crash the host)", function()
  local sanitized = os.getenv("LUAIO_SANITIZED") == "1"

  it("survives every public function and method called with hostile values" .. (sanitized and " (--quick under sanitizers)" or ""), function()
    local out, err, code = run_sweep(sanitized and "--quick" or "", sanitized and 900 or 300)
    print("\n" .. summary(out))
    if code ~= 0 then
      -- stderr holds the errors the sweep provokes on purpose (logged
      -- callback failures); show only what looks like a crash report
      local lines = {}
      for l in err:gmatch("[^\n]+") do
        if l:find("Sanitizer") or l:find("runtime error") or l:find("PANIC") or l:find("Segmentation")
           or l:find("Abort") or l:find("^%s+#%d+ 0x") then
          lines[#lines + 1] = l
          if #lines >= 60 then break end
        end
      end
      if #lines > 0 then print("stderr (crash reports):\n" .. table.concat(lines, "\n")) end
    end
    assert.is_nil(out:match("CRASH"), "the host crashed during the sweep")
    assert.are.equal(0, code)
  end)
end)
