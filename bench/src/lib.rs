//! Load harness for Tollgate: `fake-upstream` (the test suite's fake OpenAI provider as its own
//! process) and `loadgen` (an open-loop, constant-arrival-rate load driver that measures latency from
//! each request's *scheduled* start, so a stalled server cannot hide its queueing: no coordinated
//! omission). `bench/run.sh` runs the scenarios and appends the results to `bench/RESULTS.md`.
