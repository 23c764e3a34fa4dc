# The CPU GEMM behind the reference conv3d (kernels/conv3d_cpu.cpp calls cblas_sgemm).
#
# OpenBLAS counts as found only with BOTH its library for linking (libopenblas.so, the dev
# symlink: a runtime-only libopenblas.so.0 cannot be linked by name) AND a cblas.h to compile
# against. Preferred: the OpenMP build (the CPU kernels use OpenMP too, and the pthread
# build's spinning threads fight OpenMP's for the cores: seen 17x slower small-net steps on 2
# cores). Debian installs both variants side by side; the loader would pick whichever the
# alternatives system points at, so the chosen directory also goes into the runpath.
#
# Otherwise, with CUSEG_REFBLAS_FALLBACK=ON (the GPU check kit, whose machine may have no
# OpenBLAS headers), the plain reference cblas_sgemm of scripts/device/refblas is built in;
# without it configuration stops with what was missing.
#
# Sets: CUSEG_BLAS_KIND (openblas | refblas), BLAS_LIBRARIES, CUSEG_CBLAS_INCLUDE_DIR,
# CUSEG_OPENBLAS_DIR (runpath entry, empty for refblas). Cache entries hold only what was
# found on the system, so a later configure after installing OpenBLAS picks it up.
option(CUSEG_REFBLAS_FALLBACK
       "Without OpenBLAS (library + cblas.h), build the reference sgemm of scripts/device/refblas" OFF)

find_library(CUSEG_OPENBLAS NAMES openblas
             PATHS /usr/lib/x86_64-linux-gnu/openblas-openmp /usr/lib/aarch64-linux-gnu/openblas-openmp
                   /usr/lib64/openblas-openmp
             NO_DEFAULT_PATH)
set(_cuseg_blas_lib "")
if(CUSEG_OPENBLAS)
  set(_cuseg_blas_lib ${CUSEG_OPENBLAS})
else()
  set(BLA_VENDOR OpenBLAS)
  find_package(BLAS QUIET)
  if(BLAS_FOUND)
    set(_cuseg_blas_lib ${BLAS_LIBRARIES})
  endif()
endif()
find_path(CBLAS_INCLUDE_DIR NAMES cblas.h
          PATH_SUFFIXES openblas-openmp openblas openblas-pthread
          PATHS /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu /usr/include)

if(_cuseg_blas_lib AND CBLAS_INCLUDE_DIR)
  set(CUSEG_BLAS_KIND openblas)
  set(CUSEG_CBLAS_INCLUDE_DIR ${CBLAS_INCLUDE_DIR})
  set(BLAS_LIBRARIES ${_cuseg_blas_lib})
  if(CUSEG_OPENBLAS)
    get_filename_component(CUSEG_OPENBLAS_DIR ${CUSEG_OPENBLAS} DIRECTORY)
  else()
    set(CUSEG_OPENBLAS_DIR "")
    message(WARNING "OpenMP build of OpenBLAS not found: using ${BLAS_LIBRARIES}")
  endif()
else()
  set(_cuseg_blas_missing "")
  if(NOT _cuseg_blas_lib)
    string(APPEND _cuseg_blas_missing " the library libopenblas.so (a runtime-only libopenblas.so.0 cannot be linked);")
  endif()
  if(NOT CBLAS_INCLUDE_DIR)
    string(APPEND _cuseg_blas_missing " the header cblas.h;")
  endif()
  if(NOT CUSEG_REFBLAS_FALLBACK)
    message(FATAL_ERROR "OpenBLAS not usable, missing:${_cuseg_blas_missing} install "
                        "libopenblas-openmp-dev (scripts/setup.sh), or configure with "
                        "-DCUSEG_REFBLAS_FALLBACK=ON for the slow reference sgemm (GPU check kit)")
  endif()
  message(STATUS "cuseg: OpenBLAS not usable (missing:${_cuseg_blas_missing}): building the "
                 "reference cblas_sgemm of scripts/device/refblas")
  set(CUSEG_BLAS_KIND refblas)
  if(NOT TARGET cuseg_refblas)
    add_subdirectory(${PROJECT_SOURCE_DIR}/scripts/device/refblas ${PROJECT_BINARY_DIR}/refblas)
  endif()
  set(BLAS_LIBRARIES cuseg_refblas)
  set(CUSEG_CBLAS_INCLUDE_DIR ${PROJECT_SOURCE_DIR}/scripts/device/refblas)
  set(CUSEG_OPENBLAS_DIR "")
endif()
message(STATUS "cuseg: CPU GEMM ${CUSEG_BLAS_KIND} (${BLAS_LIBRARIES}; cblas.h in ${CUSEG_CBLAS_INCLUDE_DIR})")
