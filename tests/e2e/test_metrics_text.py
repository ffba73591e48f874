#!/usr/bin/env python3
"""The Prometheus text of a fixed snapshot (tests/util/metrics_dump.c, the
numbers of tests/util/metrics_fixture.h) parsed by Debian's
python3-prometheus-client: every family has its type, names carry the
gantry_ prefix, counters end in _total, histogram buckets are cumulative and
end in +Inf equal to _count, and the values are the fixture's."""
import os
import subprocess
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("skip: python3-prometheus-client is not installed")
    sys.exit(77)

dump = os.environ.get("GANTRY_METRICS_DUMP")
if not dump or not os.path.exists(dump):
    print("skip: GANTRY_METRICS_DUMP is not set (run through ctest)")
    sys.exit(77)

text = subprocess.run([dump], check=True, capture_output=True, text=True).stdout
fams = {f.name: f for f in text_string_to_metric_families(text)}


def value(name, **labels):
    for f in fams.values():
        for s in f.samples:
            if s.name == name and s.labels == labels:
                return s.value
    raise AssertionError(f"no sample {name} {labels}")


# the parser drops _total from a counter family's name
types = {
    "gantry_requests_submitted": "counter", "gantry_requests_finished": "counter",
    "gantry_requests_refused": "counter", "gantry_prompt_tokens": "counter",
    "gantry_generation_tokens": "counter", "gantry_prompt_cached_tokens": "counter",
    "gantry_queue_time_seconds": "histogram", "gantry_time_to_first_token_seconds": "histogram",
    "gantry_inter_token_latency_seconds": "histogram", "gantry_e2e_request_latency_seconds": "histogram",
    "gantry_requests_waiting": "gauge", "gantry_requests_running": "gauge", "gantry_kv_blocks": "gauge",
    "gantry_kv_host_transfer_bytes": "counter", "gantry_prefix_cache_hit_ratio": "gauge",
    "gantry_expert_cache_hits": "counter", "gantry_expert_cache_misses": "counter",
    "gantry_expert_cache_copied_bytes": "counter", "gantry_rank_collective_seconds": "counter",
    "gantry_rank_sent_bytes": "counter",
}
for name, t in types.items():
    assert name in fams, f"family {name} missing; have {sorted(fams)}"
    assert fams[name].type == t, f"{name}: type {fams[name].type}, want {t}"
for f in fams.values():
    assert f.name.startswith("gantry_"), f.name
    assert f.documentation, f"{f.name} has no HELP"
    for s in f.samples:
        if f.type == "counter":
            assert s.name.endswith("_total") or s.name.endswith("_created"), s.name

# histograms: cumulative, +Inf last and equal to _count
want_counts = {"gantry_queue_time_seconds": (5, 3.25), "gantry_time_to_first_token_seconds": (4, 1.5),
               "gantry_inter_token_latency_seconds": (47, 0.25), "gantry_e2e_request_latency_seconds": (4, 9.0)}
for name, (count, total) in want_counts.items():
    f = fams[name]
    buckets = [(s.labels["le"], s.value) for s in f.samples if s.name == name + "_bucket"]
    les = [float(le) for le, _ in buckets]
    assert les == sorted(les) and les[-1] == float("inf"), f"{name}: bounds {les}"
    vals = [v for _, v in buckets]
    assert all(a <= b for a, b in zip(vals, vals[1:])), f"{name}: buckets not cumulative {vals}"
    assert vals[-1] == count == value(name + "_count"), f"{name}: +Inf {vals[-1]}, want {count}"
    assert value(name + "_sum") == total
assert [s.value for s in fams["gantry_queue_time_seconds"].samples if s.name.endswith("_bucket")] == [3, 4, 4, 5]

assert value("gantry_requests_submitted_total") == 7
assert value("gantry_requests_finished_total", reason="stop") == 3
assert value("gantry_requests_finished_total", reason="cancelled") == 1
assert value("gantry_generation_tokens_total") == 51
assert value("gantry_kv_blocks", state="used") == 10
assert value("gantry_kv_blocks", state="host") == 3
assert value("gantry_prefix_cache_hit_ratio") == 0.25
assert value("gantry_expert_cache_copied_bytes_total") == 123456789
assert value("gantry_rank_collective_seconds_total", rank="1") == 1.5
assert value("gantry_rank_sent_bytes_total", rank="0") == 1048576
print(f"ok: {len(fams)} families parsed")
