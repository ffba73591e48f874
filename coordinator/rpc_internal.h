/* What the RPC codec's files share and nobody else sees: a decoded message
 * is msgpack-c's unpacked object and the zone that owns it. */
#ifndef GT_RPC_INTERNAL_H
#define GT_RPC_INTERNAL_H

#include <msgpack.h>

#include "coordinator/rpc.h"

struct gt_rpc_msg {
    msgpack_unpacked up; /* up.data: the root object; up.zone owns it */
};

#endif
