/* coordinator/metrics.c: a snapshot with known numbers renders to exact
 * Prometheus text lines (HELP/TYPE, _total counters, cumulative buckets up
 * to +Inf, _sum, _count, labels); the expert and rank blocks appear only
 * when present (and the draft model's counters only with one);
 * inconsistent histograms are refused with a sentence; the
 * buffer keeps what it held before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/metrics_fixture.h"

static char *render(const gt_metrics_snapshot *s, gt_rpc_buf *b) {
    gt_rpc_buf_init(b);
    gt_status st = gt_metrics_render(s, b);
    if (st != GT_OK) fail_msg("render: %s", gt_last_error());
    char *t = test_malloc(b->len + 1);
    memcpy(t, b->data, b->len);
    t[b->len] = '\0';
    return t;
}

/* The whole line `line` (with its newline) is in text. */
static void has_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n') return;
    fail_msg("missing line: %s", line);
}

static void lacks(const char *text, const char *word) {
    if (strstr(text, word)) fail_msg("unexpected '%s' in the text", word);
}

static void test_exact_lines(void **state) {
    (void)state;
    gt_metrics_snapshot s = gt_metrics_fixture(true, 2);
    s.spec_method_steps[0] = 2; /* speculation by proposer: lookup, draft */
    s.spec_method_drafted[1] = 12;
    s.spec_method_accepted[1] = 9;
    s.has_draft = true;
    s.spec_draft_forwards = 30;
    s.spec_draft_seconds = 0.5;
    gt_rpc_buf b;
    char *t = render(&s, &b);
    has_line(t, "# TYPE gantry_spec_method_verify_steps_total counter");
    has_line(t, "gantry_spec_method_verify_steps_total{method=\"lookup\"} 2");
    has_line(t, "gantry_spec_method_verify_steps_total{method=\"draft\"} 0");
    has_line(t, "gantry_spec_method_draft_tokens_total{method=\"draft\"} 12");
    has_line(t, "gantry_spec_method_accepted_tokens_total{method=\"draft\"} 9");
    has_line(t, "gantry_spec_method_accepted_tokens_total{method=\"lookup\"} 0");
    has_line(t, "gantry_spec_draft_forwards_total 30");
    has_line(t, "gantry_spec_draft_seconds_total 0.5");
    has_line(t, "# HELP gantry_requests_submitted_total Generate requests admitted to the scheduler's queue.");
    has_line(t, "# TYPE gantry_requests_submitted_total counter");
    has_line(t, "gantry_requests_submitted_total 7");
    has_line(t, "# TYPE gantry_requests_finished_total counter");
    has_line(t, "gantry_requests_finished_total{reason=\"stop\"} 3");
    has_line(t, "gantry_requests_finished_total{reason=\"length\"} 1");
    has_line(t, "gantry_requests_finished_total{reason=\"cancelled\"} 1");
    has_line(t, "gantry_requests_finished_total{reason=\"shutdown\"} 0");
    has_line(t, "gantry_requests_refused_total 2");
    has_line(t, "gantry_requests_preempted_total 1");
    has_line(t, "gantry_prompt_tokens_total 200");
    has_line(t, "gantry_generation_tokens_total 51");
    has_line(t, "gantry_prompt_cached_tokens_total 50");
    /* cumulative buckets: queue counts 3,1,0 and 1 above 2.5 s */
    has_line(t, "# TYPE gantry_queue_time_seconds histogram");
    has_line(t, "gantry_queue_time_seconds_bucket{le=\"0.005\"} 3");
    has_line(t, "gantry_queue_time_seconds_bucket{le=\"0.1\"} 4");
    has_line(t, "gantry_queue_time_seconds_bucket{le=\"2.5\"} 4");
    has_line(t, "gantry_queue_time_seconds_bucket{le=\"+Inf\"} 5");
    has_line(t, "gantry_queue_time_seconds_sum 3.25");
    has_line(t, "gantry_queue_time_seconds_count 5");
    has_line(t, "gantry_time_to_first_token_seconds_bucket{le=\"2.5\"} 4");
    has_line(t, "gantry_inter_token_latency_seconds_bucket{le=\"0.1\"} 47");
    has_line(t, "gantry_inter_token_latency_seconds_sum 0.25");
    has_line(t, "gantry_e2e_request_latency_seconds_bucket{le=\"0.1\"} 0");
    has_line(t, "gantry_e2e_request_latency_seconds_bucket{le=\"+Inf\"} 4");
    has_line(t, "gantry_e2e_request_latency_seconds_sum 9");
    has_line(t, "# TYPE gantry_requests_waiting gauge");
    has_line(t, "gantry_requests_waiting 1");
    has_line(t, "gantry_requests_running 2");
    has_line(t, "gantry_kv_blocks{state=\"used\"} 10");
    has_line(t, "gantry_kv_blocks{state=\"free\"} 50");
    has_line(t, "gantry_kv_blocks{state=\"cached\"} 4");
    has_line(t, "gantry_kv_blocks{state=\"host\"} 3");
    has_line(t, "gantry_kv_pool_blocks 64");
    has_line(t, "gantry_kv_block_size_tokens 16");
    has_line(t, "gantry_kv_host_transfer_bytes_total{direction=\"to_host\"} 4096");
    has_line(t, "gantry_kv_host_transfer_bytes_total{direction=\"from_host\"} 2048");
    has_line(t, "gantry_prefix_cache_hit_ratio 0.25");
    has_line(t, "gantry_expert_cache_hits_total 90");
    has_line(t, "gantry_expert_cache_misses_total 10");
    has_line(t, "gantry_expert_cache_copied_bytes_total 123456789");
    has_line(t, "gantry_expert_cache_prefetch_useful_total 5");
    has_line(t, "gantry_expert_cache_wait_seconds_total 0.125");
    has_line(t, "gantry_rank_collective_seconds_total{rank=\"0\"} 0.75");
    has_line(t, "gantry_rank_collective_seconds_total{rank=\"1\"} 1.5");
    has_line(t, "gantry_rank_sent_bytes_total{rank=\"0\"} 1048576");
    has_line(t, "gantry_rank_a2a_bytes_total{rank=\"1\"} 1024");
    has_line(t, "gantry_rank_busy_seconds_total{rank=\"1\"} 12.25");
    assert_int_equal(t[strlen(t) - 1], '\n');
    test_free(t);
    gt_rpc_buf_free(&b);
}

static void test_dense_single_rank(void **state) {
    (void)state;
    gt_metrics_snapshot s = gt_metrics_fixture(false, 0);
    s.prompt_tokens = 0;
    s.cached_tokens = 0;
    gt_rpc_buf b;
    char *t = render(&s, &b);
    lacks(t, "expert_cache");
    lacks(t, "rank=");
    lacks(t, "spec_draft_forwards"); /* no draft model */
    has_line(t, "gantry_prefix_cache_hit_ratio 0");
    test_free(t);
    gt_rpc_buf_free(&b);
}

static void test_appends(void **state) {
    (void)state;
    gt_metrics_snapshot s = gt_metrics_fixture(true, 2);
    gt_rpc_buf one, two;
    gt_rpc_buf_init(&one);
    gt_rpc_buf_init(&two);
    assert_int_equal(gt_metrics_render(&s, &one), GT_OK);
    assert_int_equal(gt_metrics_render(&s, &two), GT_OK);
    assert_int_equal(gt_metrics_render(&s, &two), GT_OK);
    assert_int_equal(two.len, 2 * one.len);
    assert_memory_equal(two.data + one.len, one.data, one.len);
    gt_rpc_buf_free(&one);
    gt_rpc_buf_free(&two);
}

static void test_refuses(void **state) {
    (void)state;
    gt_rpc_buf b;
    gt_rpc_buf_init(&b);
    gt_metrics_snapshot s = gt_metrics_fixture(true, 2);
    s.ttft.count = 5; /* its buckets hold 4 */
    assert_int_equal(gt_metrics_render(&s, &b), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "time_to_first_token_seconds"));
    assert_non_null(strstr(gt_last_error(), "hold 4"));
    assert_int_equal(b.len, 0);
    s = gt_metrics_fixture(true, 2);
    static const double bad[3] = {0.005, 0.005, 1};
    s.itl.bounds = bad;
    assert_int_equal(gt_metrics_render(&s, &b), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "does not exceed"));
    s = gt_metrics_fixture(true, 2);
    s.ranks = NULL;
    assert_int_equal(gt_metrics_render(&s, &b), GT_ERR_INVALID_ARG);
    assert_int_equal(b.len, 0);
    gt_rpc_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_lines),
        cmocka_unit_test(test_dense_single_rank),
        cmocka_unit_test(test_appends),
        cmocka_unit_test(test_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
