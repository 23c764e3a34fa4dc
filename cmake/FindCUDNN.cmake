# Finds cuDNN headers and library (CUDNN_ROOT, the CUDA toolkit, the usual prefixes). On
# machines where cuDNN ships inside PyTorch's Python environment, point CUDNN_ROOT at
# site-packages/nvidia/cudnn.
include(${CMAKE_CURRENT_LIST_DIR}/CusegFindLibrary.cmake)
cuseg_find_library(CUDNN cudnn.h cudnn_version.h CUDNN CUDNN_PATCHLEVEL cudnn libcudnn.so.9)
