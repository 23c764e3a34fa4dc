// CUSEG_HD marks small inline functions that both the host compiler and nvcc compile (index
// maths shared by a CPU twin and its CUDA kernel, counter-based random numbers). Outside nvcc
// it is plain `inline`.
#pragma once

#if defined(__CUDACC__)
#define CUSEG_HD __host__ __device__ __forceinline__
#else
#define CUSEG_HD inline
#endif
