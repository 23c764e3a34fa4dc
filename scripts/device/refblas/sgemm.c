/* Reference cblas_sgemm (see cblas.h): C = alpha * op(A) op(B) + beta * C. Column-major calls
 * are mapped to row-major ones (C^T = op(B)^T op(A)^T). Rows of C in parallel (OpenMP); each
 * C element accumulates in float over p = 0..k-1 in order. */
#include "cblas.h"

static void sgemm_rm(int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda,
                     const float* b, int ldb, float beta, float* c, int ldc) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < m; ++i) {
    float* ci = c + (long)i * ldc;
    for (int j = 0; j < n; ++j) ci[j] = beta == 0.f ? 0.f : beta * ci[j];
    for (int p = 0; p < k; ++p) {
      const float av = alpha * (ta ? a[(long)p * lda + i] : a[(long)i * lda + p]);
      if (av == 0.f) continue;
      if (!tb) {
        const float* bp = b + (long)p * ldb;
        for (int j = 0; j < n; ++j) ci[j] += av * bp[j];
      } else {
        for (int j = 0; j < n; ++j) ci[j] += av * b[(long)j * ldb + p];
      }
    }
  }
}

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n,
                 int k, float alpha, const float* a, int lda, const float* b, int ldb, float beta, float* c,
                 int ldc) {
  const int at = ta != CblasNoTrans, bt = tb != CblasNoTrans;
  if (order == CblasRowMajor)
    sgemm_rm(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else /* column-major C (m x n) = row-major C^T (n x m) = op(B)^T op(A)^T */
    sgemm_rm(bt, at, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc);
}
