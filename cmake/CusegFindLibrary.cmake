# cuseg_find_library(NAME HEADER VERSION_HEADER MACRO_PREFIX PATCH_MACRO LIBNAMES...)
# Shared body of FindCUDNN.cmake and FindNCCL.cmake: looks in ${NAME}_ROOT (variable or
# environment), the CUDA toolkit and the usual prefixes for HEADER and one of LIBNAMES, reads
# <MACRO_PREFIX>_MAJOR / _MINOR / <PATCH_MACRO> from VERSION_HEADER, and sets NAME_FOUND,
# NAME_INCLUDE_DIR, NAME_LIBRARY and NAME_VERSION as find_package expects. On machines where
# the library ships inside PyTorch's Python environment, point NAME_ROOT at
# site-packages/nvidia/<library>.
macro(cuseg_find_library NAME HEADER VERSION_HEADER MACRO_PREFIX PATCH_MACRO)
  set(_hints ${${NAME}_ROOT} $ENV{${NAME}_ROOT} ${CUDAToolkit_LIBRARY_ROOT}
             ${CUDAToolkit_INCLUDE_DIRS}/..)
  find_path(${NAME}_INCLUDE_DIR ${HEADER} HINTS ${_hints} PATH_SUFFIXES include)
  find_library(${NAME}_LIBRARY NAMES ${ARGN} HINTS ${_hints}
               PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu)
  if(${NAME}_INCLUDE_DIR AND EXISTS "${${NAME}_INCLUDE_DIR}/${VERSION_HEADER}")
    file(STRINGS "${${NAME}_INCLUDE_DIR}/${VERSION_HEADER}" _v
         REGEX "#define ${MACRO_PREFIX}_(MAJOR|MINOR) |#define ${PATCH_MACRO} ")
    string(REGEX REPLACE ".*${MACRO_PREFIX}_MAJOR ([0-9]+).*" "\\1" _maj "${_v}")
    string(REGEX REPLACE ".*${MACRO_PREFIX}_MINOR ([0-9]+).*" "\\1" _min "${_v}")
    string(REGEX REPLACE ".*${PATCH_MACRO} ([0-9]+).*" "\\1" _pat "${_v}")
    set(${NAME}_VERSION "${_maj}.${_min}.${_pat}")
  endif()
  include(FindPackageHandleStandardArgs)
  find_package_handle_standard_args(${NAME} REQUIRED_VARS ${NAME}_INCLUDE_DIR ${NAME}_LIBRARY
                                    VERSION_VAR ${NAME}_VERSION)
  mark_as_advanced(${NAME}_INCLUDE_DIR ${NAME}_LIBRARY)
endmacro()
