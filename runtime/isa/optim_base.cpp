// The optimizer's element loop at the build's baseline instruction set; see optim_kernel.h.
#define DDPM_OPTIM_ISA optim_base
#include "optim_kernel.h"
