-- Course §11 "Iterator asynchrone": `async for` becomes a generic `for`
-- over aio.generator, whose body may wait between items.
local aio = require "luaio"

local function data_source(max_items)
  return aio.generator(function(yield)
    for i = 1, max_items do
      aio.sleep(0.5)                 -- fetching the data
      yield(("Data #%d"):format(i))
    end
  end)
end

print("📥 Asynchronous data processing:")
local t0 = aio.now()
for item in data_source(3) do
  print(("  🔄 Processing: %s (at %.1fs)"):format(item, aio.now() - t0))
  aio.sleep(0.1)
end
print("✅ Processing finished")
