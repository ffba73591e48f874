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

/* The block layout of t's type (plan_tensor.c); GT_ERR_UNSUPPORTED with a
 * sentence for a type Gantry does not know. */
gt_status gt__plan_dtype_of(const gt_tensor_info *t, const gt_dtype_info **out);

#endif
