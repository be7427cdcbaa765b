/* The fast kernels for the target's baseline instruction set: SSE2 on
 * x86-64, NEON on arm64 (kernels_impl.h). */
#if defined(__aarch64__)
#define FV_K_NAME "neon"
#else
#define FV_K_NAME "generic"
#endif
#define FV_K_SUFFIX generic
#define FV_K_VBYTES 16
#include "nn/kernels_impl.h"
