# Debian's ITK 5.2 ships itk_compiler_detection.h generated for GCC only: any other compiler
# stops at "#error Unsupported compiler". The sanitizer/fuzz build (clang, CUSEG_SANITIZE) needs
# ITK's headers in the one file that includes them (data/image_io.cpp), so at configure time this
# derives, in the build tree and from the installed headers themselves, a detection header that
# also knows Clang: its Clang feature table is the one CMake generated for VXL (shipped by the
# same package, compilers/VXL_COMPILER_INFO_Clang_CXX.h) with the VXL_ prefix renamed ITK_.
# Nothing is copied into the repository; with a GCC build, or an ITK that supports clang, this
# does nothing.
function(cuseg_itk_clang_compat target)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    return()
  endif()
  find_file(_det itk_compiler_detection.h PATHS ${ITK_INCLUDE_DIRS} NO_DEFAULT_PATH)
  find_file(_vxl_clang compilers/VXL_COMPILER_INFO_Clang_CXX.h PATHS ${ITK_INCLUDE_DIRS}
            NO_DEFAULT_PATH)
  if(NOT _det)
    return()
  endif()
  file(READ ${_det} _text)
  if(NOT _text MATCHES "error Unsupported compiler" OR _text MATCHES "ITK_COMPILER_INFO_Clang")
    return()
  endif()
  if(NOT _vxl_clang)
    message(FATAL_ERROR "ITK's headers support GCC only and no Clang feature table was found: "
                        "build the sanitizers with GCC or an ITK that supports clang")
  endif()
  set(_dir ${PROJECT_BINARY_DIR}/itk_clang_compat)
  string(REPLACE "#  if ITK_COMPILER_IS_GNU\n\n#    include \"compilers/ITK_COMPILER_INFO_GNU_CXX.h\"\n"
                 "#  if ITK_COMPILER_IS_GNU\n\n#    include \"compilers/ITK_COMPILER_INFO_GNU_CXX.h\"\n#  elif ITK_COMPILER_IS_Clang\n#    include \"compilers/ITK_COMPILER_INFO_Clang_CXX.h\"\n"
                 _text "${_text}")
  if(NOT _text MATCHES "ITK_COMPILER_INFO_Clang")
    message(FATAL_ERROR "${_det}: unexpected layout, cannot add Clang to it")
  endif()
  file(WRITE ${_dir}/itk_compiler_detection.h "${_text}")
  file(READ ${_vxl_clang} _clang)
  string(REPLACE "VXL_" "ITK_" _clang "${_clang}")
  string(REPLACE "vcl_compiler_detection.h" "itk_compiler_detection.h" _clang "${_clang}")
  file(WRITE ${_dir}/compilers/ITK_COMPILER_INFO_Clang_CXX.h "${_clang}")
  # ITK's headers include the original with quotes (found next to them first), so the derived
  # header is included ahead of everything; its include guard then skips the original.
  target_compile_options(${target} PRIVATE "SHELL:-include ${_dir}/itk_compiler_detection.h")
  message(STATUS "cuseg: ITK headers made usable with clang (${_dir})")
endfunction()
