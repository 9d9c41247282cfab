# C tests, the embedding example, pkg-config and install rules, the manual
# page, the rockspec.
add_executable(embed examples/embed.c)
target_link_libraries(embed PRIVATE luaio_static)
set_target_properties(embed PROPERTIES ENABLE_EXPORTS ON)
add_test(NAME embed_example COMMAND embed ${CMAKE_SOURCE_DIR}/examples/embed.lua
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(embed_example PROPERTIES PASS_REGULAR_EXPRESSION "compute=[0-9]+, slept, echo=ping" TIMEOUT 60)

add_executable(test_host tests/c/test_host.c)
target_link_libraries(test_host PRIVATE luaio_static)
set_target_properties(test_host PROPERTIES ENABLE_EXPORTS ON)
add_test(NAME c_host_lifecycle COMMAND test_host lifecycle)
add_test(NAME c_native_waits COMMAND test_host waits)

add_executable(test_alloc tests/c/test_alloc.c)   # the arena of luaio's Lua states (src/alloc.c)
target_link_libraries(test_alloc PRIVATE luaio_static)
target_include_directories(test_alloc PRIVATE ${CMAKE_SOURCE_DIR}/src)
set_target_properties(test_alloc PROPERTIES ENABLE_EXPORTS ON)
add_test(NAME c_alloc COMMAND test_alloc)
set_tests_properties(c_alloc PROPERTIES PASS_REGULAR_EXPRESSION " 0 failures" TIMEOUT 300)

find_program(VALGRIND valgrind)
if(VALGRIND AND NOT LUAIO_SANITIZE)
  add_test(NAME c_lifecycle_valgrind
           COMMAND ${VALGRIND} --quiet --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=3
                   $<TARGET_FILE:test_host>)
  set_tests_properties(c_lifecycle_valgrind PROPERTIES TIMEOUT 300)
endif()

# an outside project: cmake --install, then pkg-config --cflags --libs luaio
if(NOT LUAIO_SANITIZE)   # a sanitized libluaio.a needs the sanitizer runtimes: not for outsiders
  add_test(NAME install_pkgconfig COMMAND sh ${CMAKE_SOURCE_DIR}/tests/c/install_check.sh
           ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR})
  set_tests_properties(install_pkgconfig PROPERTIES PASS_REGULAR_EXPRESSION "echo=ping" TIMEOUT 120)
endif()

# luaio.pc: the prefix is ${pcfiledir} climbed up as many levels as the
# pkgconfig directory is deep below it (an absolute libdir stays absolute)
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(LUAIO_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(LUAIO_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  set(LUAIO_PC_PREFIX "\${pcfiledir}")
  string(REPLACE "/" ";" _luaio_pc_parts "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
  foreach(_part ${_luaio_pc_parts})
    if(NOT _part STREQUAL "" AND NOT _part STREQUAL ".")
      string(APPEND LUAIO_PC_PREFIX "/..")
    endif()
  endforeach()
  set(LUAIO_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(LUAIO_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(LUAIO_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${CMAKE_SOURCE_DIR}/luaio.pc.in ${CMAKE_BINARY_DIR}/luaio.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/luaio.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# the manual page
install(FILES ${CMAKE_SOURCE_DIR}/docs/luaio.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
find_program(MAN_RENDERER NAMES man groff mandoc)
if(MAN_RENDERER)
  add_test(NAME man_page COMMAND sh ${CMAKE_SOURCE_DIR}/tests/man_check.sh ${CMAKE_SOURCE_DIR}/docs/luaio.1)
  set_tests_properties(man_page PROPERTIES PASS_REGULAR_EXPRESSION "man page ok" TIMEOUT 60)
endif()

# luarocks make into a scratch tree, then require "luaio" from stock lua5.4
add_test(NAME luarocks_make COMMAND sh ${CMAKE_SOURCE_DIR}/tests/rock_check.sh ${CMAKE_SOURCE_DIR})
set_tests_properties(luarocks_make PROPERTIES PASS_REGULAR_EXPRESSION "rock ok" SKIP_REGULAR_EXPRESSION "SKIPPED:" TIMEOUT 900)
