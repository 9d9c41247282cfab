# libFuzzer targets (clang): cmake -DLUAIO_FUZZ=ON -DCMAKE_C_COMPILER=clang.
# Each harness reaches the unit it tests through its internal header
# (readbuf.h, http_head.h, value_copy.h, tls.h, ws_frame.h, ...) and links the core.
set(LUAIO_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
foreach(name http_head chunk_size reader copier tls_glue json ws_frame resp pg_wire)
  add_executable(fuzz_${name} fuzz/${name}.c ${LUAIO_CORE_SOURCES} ${CMAKE_BINARY_DIR}/luaio_lua_sources.c)
  target_include_directories(fuzz_${name} PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src ${LUA_INCLUDE_DIRS})
  target_compile_options(fuzz_${name} PRIVATE ${LUAIO_FUZZ_FLAGS})
  target_link_options(fuzz_${name} PRIVATE ${LUAIO_FUZZ_FLAGS})
  target_link_libraries(fuzz_${name} PRIVATE PkgConfig::LUA PkgConfig::UV PkgConfig::SSL PkgConfig::ZLIB m)
endforeach()
