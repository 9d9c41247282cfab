# libFuzzer targets (clang): cmake -DLUAIO_FUZZ=ON -DCMAKE_C_COMPILER=clang.
# Each harness #includes the source file it tests (to reach its static
# functions) and links the rest of the core.
set(LUAIO_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
foreach(pair http_head:http_parse chunk_size:http_parse reader:stream copier:thread tls_glue:tls)
  string(REPLACE ":" ";" parts ${pair})
  list(GET parts 0 name)
  list(GET parts 1 tested)
  set(srcs ${LUAIO_CORE_SOURCES})
  list(REMOVE_ITEM srcs ${CMAKE_SOURCE_DIR}/src/${tested}.c)
  add_executable(fuzz_${name} fuzz/${name}.c ${srcs} ${CMAKE_BINARY_DIR}/luaio_lua_sources.c)
  target_include_directories(fuzz_${name} PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src ${LUA_INCLUDE_DIRS})
  target_compile_options(fuzz_${name} PRIVATE ${LUAIO_FUZZ_FLAGS})
  target_link_options(fuzz_${name} PRIVATE ${LUAIO_FUZZ_FLAGS})
  target_link_libraries(fuzz_${name} PRIVATE PkgConfig::LUA PkgConfig::UV PkgConfig::SSL m)
endforeach()
