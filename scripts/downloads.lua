-- Course §2 "Gestion des tâches": four simulated downloads run as concurrent
-- tasks; their progress lines interleave, and gather collects the results
-- in the order the tasks were created.
local aio = require "luaio"
math.randomseed(tonumber(os.getenv("LUAIO_SEED")) or os.time())

local function download(name, size_mb)
  print(("📥 Start download: %s (%dMB)"):format(name, size_mb))
  for progress = 0, 100, 20 do
    aio.sleep(0.1 + math.random() * 0.2)       -- asyncio.sleep(random.uniform(0.1, 0.3))
    print(("📊 %s: %d%%"):format(name, progress))
  end
  print(("✅ %s downloaded!"):format(name))
  return { name = name, size = size_mb, status = "success" }
end

local files = { { "video.mp4", 50 }, { "document.pdf", 10 }, { "archive.zip", 30 }, { "image.jpg", 5 } }

print("🌐 Starting concurrent downloads")
local tasks = {}
for i, f in ipairs(files) do tasks[i] = aio.spawn(download, f[1], f[2]) end   -- create_task
local results = aio.gather(tasks)

print("\n🎉 All downloads finished!")
for _, r in ipairs(results) do print(("  ✅ %s: %s"):format(r.name, r.status)) end
