-- lua-http is packaged by Debian 12 for Lua 5.1-5.3 only; its modules (and
-- fifo, binaryheap, lpeg_patterns, basexx) are plain Lua that runs on 5.4,
-- next to the 5.4 builds of cqueues, luaossl and lpeg: look there too.
for _, v in ipairs { "5.3", "5.2", "5.1" } do
  package.path = package.path .. ";/usr/share/lua/" .. v .. "/?.lua;/usr/share/lua/" .. v .. "/?/init.lua"
end
