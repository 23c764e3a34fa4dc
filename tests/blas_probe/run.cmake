# ctest `blas_probe`: the OpenBLAS probe (cmake/CusegBlas.cmake) against fake systems.
#   -DSRC=<repo> -DWORK=<scratch folder>
# 1. libopenblas.so.0 only (a runtime package, no dev symlink, no cblas.h), fallback ON:
#    must choose refblas.  2. same, fallback OFF: configuration must fail naming what is
#    missing.  3. the dev symlink + cblas.h: must choose OpenBLAS.  4. the library without
#    cblas.h, fallback ON: refblas.
set(_probe ${SRC}/tests/blas_probe)
file(REMOVE_RECURSE ${WORK})

function(fake_root name)
  set(r ${WORK}/${name}/root)
  foreach(f ${ARGN})
    get_filename_component(d ${r}/${f} DIRECTORY)
    file(MAKE_DIRECTORY ${d})
    file(WRITE ${r}/${f} "")
  endforeach()
  file(MAKE_DIRECTORY ${r})
endfunction()

# Each configuration in a fresh build folder (no cache carried over).
function(configure name fallback out_rc out_kind out_log)
  set(r ${WORK}/${name}/root)
  set(b ${WORK}/${name}/build-${fallback})
  execute_process(
    COMMAND ${CMAKE_COMMAND} -S ${_probe} -B ${b} -DCUSEG_SOURCE_DIR=${SRC}
            -DCUSEG_REFBLAS_FALLBACK=${fallback} -DCMAKE_FIND_ROOT_PATH=${r}
            -DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY -DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY
            -DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=ONLY -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE e)
  set(kind "")
  if(EXISTS ${b}/blas.txt)
    file(READ ${b}/blas.txt kind)
  endif()
  set(${out_rc} ${rc} PARENT_SCOPE)
  set(${out_kind} "${kind}" PARENT_SCOPE)
  set(${out_log} "${o}${e}" PARENT_SCOPE)
endfunction()

set(so0 usr/lib/x86_64-linux-gnu/libopenblas.so.0
        usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0)

fake_root(runtime_only ${so0})
configure(runtime_only ON rc kind log)
if(NOT rc EQUAL 0 OR NOT kind MATCHES "^refblas;cuseg_refblas;")
  message(FATAL_ERROR "runtime-only libopenblas.so.0 with fallback: rc ${rc}, chose '${kind}'\n${log}")
endif()

configure(runtime_only OFF rc kind log)
if(rc EQUAL 0 OR NOT log MATCHES "libopenblas.so" OR NOT log MATCHES "cblas.h")
  message(FATAL_ERROR "runtime-only libopenblas.so.0 without fallback must fail clearly: rc ${rc}\n${log}")
endif()

fake_root(dev ${so0} usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so
          usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h)
configure(dev OFF rc kind log)
if(NOT rc EQUAL 0 OR NOT kind MATCHES "^openblas;.*openblas-openmp/libopenblas.so;.*openblas-openmp$")
  message(FATAL_ERROR "OpenBLAS dev files present: rc ${rc}, chose '${kind}'\n${log}")
endif()

fake_root(no_header usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so)
configure(no_header ON rc kind log)
if(NOT rc EQUAL 0 OR NOT kind MATCHES "^refblas;")
  message(FATAL_ERROR "library without cblas.h: rc ${rc}, chose '${kind}'\n${log}")
endif()
message(STATUS "blas_probe: runtime-only -> refblas, no fallback -> clear error, dev files -> OpenBLAS, no header -> refblas")
