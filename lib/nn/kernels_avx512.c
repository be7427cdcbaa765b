/* The fast kernels for AVX-512F + FMA (kernels_impl.h; CMakeLists.txt adds
 * -mavx512f -mfma for this file). x86-64 only; chosen only on CPUs that
 * report avx512f. */
#if defined(__x86_64__)
#define FV_K_NAME "avx512"
#define FV_K_SUFFIX avx512
#define FV_K_VBYTES 64
#include "nn/kernels_impl.h"
#endif
