# Finds NCCL headers and library (NCCL_ROOT, the CUDA toolkit, the usual prefixes). On
# machines where NCCL ships inside PyTorch's Python environment, point NCCL_ROOT at
# site-packages/nvidia/nccl.
include(${CMAKE_CURRENT_LIST_DIR}/CusegFindLibrary.cmake)
cuseg_find_library(NCCL nccl.h nccl.h NCCL NCCL_PATCH nccl libnccl.so.2)
