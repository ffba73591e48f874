/* Prints the Prometheus text of tests/util/metrics_fixture.h's snapshot (with
 * experts and two ranks) for tests/e2e/test_metrics_text.py. */
#include <stdio.h>

#include "util/metrics_fixture.h"

int main(void) {
    gt_metrics_snapshot s = gt_metrics_fixture(true, 2);
    gt_rpc_buf b;
    gt_rpc_buf_init(&b);
    if (gt_metrics_render(&s, &b) != GT_OK) {
        fprintf(stderr, "metrics_dump: %s\n", gt_last_error());
        return 1;
    }
    fwrite(b.data, 1, b.len, stdout);
    gt_rpc_buf_free(&b);
    return 0;
}
