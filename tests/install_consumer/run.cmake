file(REMOVE_RECURSE ${PREFIX} ${BUILD})
foreach(step
    "${CMAKE_COMMAND};--install;${TOP};--prefix;${PREFIX}"
    "${CMAKE_COMMAND};-S;${SRC};-B;${BUILD};-DCMAKE_PREFIX_PATH=${PREFIX};-DCMAKE_BUILD_TYPE=Release"
    "${CMAKE_COMMAND};--build;${BUILD}"
    "${BUILD}/consumer")
  execute_process(COMMAND ${step} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${step}\n${err}")
  endif()
endforeach()
