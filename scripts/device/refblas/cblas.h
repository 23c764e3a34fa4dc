/* Minimal CBLAS interface for the GPU check kit: only what the CPU reference conv3d uses
 * (cblas_sgemm). Built into cuseg ONLY when OpenBLAS (library + cblas.h) is not usable and
 * CUSEG_REFBLAS_FALLBACK=ON (cmake/CusegBlas.cmake), as on a GPU machine without OpenBLAS
 * headers; there the CPU path is the parity oracle on small shapes, so a plain, correct
 * loop is enough. Enum values are the standard CBLAS ones. */
#ifndef CUSEG_REFBLAS_CBLAS_H
#define CUSEG_REFBLAS_CBLAS_H
#ifdef __cplusplus
extern "C" {
#endif
typedef enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 } CBLAS_ORDER;
typedef enum CBLAS_TRANSPOSE {
  CblasNoTrans = 111,
  CblasTrans = 112,
  CblasConjTrans = 113
} CBLAS_TRANSPOSE;
void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m,
                 int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
                 float beta, float* c, int ldc);
#ifdef __cplusplus
}
#endif
#endif
