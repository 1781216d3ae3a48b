// The optimizer's element loop at x86-64-v3 (compiled with -march=x86-64-v3); see optim_kernel.h.
#define DDPM_OPTIM_ISA optim_v3
#include "optim_kernel.h"
