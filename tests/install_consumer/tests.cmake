# ctest: install the library into a scratch prefix, then configure, build and run a tiny
# program against the installed package with find_package(cuseg).
set(_prefix ${CMAKE_BINARY_DIR}/install_test/prefix)
set(_build ${CMAKE_BINARY_DIR}/install_test/build)
add_test(NAME install_consumer
  COMMAND ${CMAKE_COMMAND}
    -DPREFIX=${_prefix} -DBUILD=${_build} -DTOP=${CMAKE_BINARY_DIR}
    -DSRC=${CMAKE_CURRENT_SOURCE_DIR}/install_consumer
    -P ${CMAKE_CURRENT_SOURCE_DIR}/install_consumer/run.cmake)
set_tests_properties(install_consumer PROPERTIES LABELS cpu TIMEOUT 300)
