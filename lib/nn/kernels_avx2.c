/* The fast kernels for AVX2 + FMA (kernels_impl.h; CMakeLists.txt adds
 * -mavx2 -mfma for this file). x86-64 only. */
#if defined(__x86_64__)
#define FV_K_NAME "avx2"
#define FV_K_SUFFIX avx2
#define FV_K_VBYTES 32
#include "nn/kernels_impl.h"
#endif
