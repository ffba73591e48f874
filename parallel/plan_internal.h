/* Helpers shared by the plan's files (plan.c, plan_tensor.c, plan_split.c);
 * not part of the plan's interface. */
#ifndef GT_PLAN_INTERNAL_H
#define GT_PLAN_INTERNAL_H

#include <stdbool.h>

#include "parallel/plan.h"

/* True when the tensor named `name` ("blk.N.ffn_down.weight") is row-parallel
 * along an MLP dimension, that is sliced inside its rows, where a quantized
 * block cannot be cut; *d is then that dimension. */
bool gt__plan_tensor_cuts_ff(const char *name, gt_ff_dim *d);

#endif
