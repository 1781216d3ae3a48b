// The optimizer's element loop at x86-64-v4 (compiled with -march=x86-64-v4); see optim_kernel.h.
#define DDPM_OPTIM_ISA optim_v4
#include "optim_kernel.h"
