# C tests, the embedding example, pkg-config and install rules.
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

configure_file(${CMAKE_SOURCE_DIR}/luaio.pc.in ${CMAKE_BINARY_DIR}/luaio.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/luaio.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
