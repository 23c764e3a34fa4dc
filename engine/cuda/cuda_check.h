// CUDNN_CHECK on the generic check of core/cuda_check.h (which also gives
// CUDA_CHECK, CUDA_CHECK_PRINT and CUSEG_LAUNCH_CHECK).
#pragma once
#include <cudnn.h>

#include "cuseg/core/cuda_check.h"

#define CUDNN_CHECK(expr) CUSEG_GPU_CHECK_(expr, CUDNN_STATUS_SUCCESS, cudnnGetErrorString)
