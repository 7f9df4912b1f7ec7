//! The provider conformance suite: every case of `tollgate_tests::conformance::Case` for every
//! provider kind, through the real gateway binary (`cargo build --bin tollgate` first) against one
//! fake upstream that speaks each provider's real wire format. Each test asserts both directions: the
//! upstream request the gateway built (read back into a canonical view) and the exact OpenAI-shaped
//! answer, stream, error, retry and fallback behaviour. `<kind>::requests_conform_to_the_spec`
//! validates every upstream body of the kind against the provider's spec (needs the Python venv of
//! `scripts/test.sh` and `../shared/specs`; skips without them, fails under `CI=true`).
//!
//! A kind that cannot do a case says so in its `Wire::unsupported`; the test then checks the gateway
//! refuses it with a 400, or prints `unsupported: <kind> <case>: <why>` (`--nocapture` shows it).
//!
//! Adding a provider kind:
//! 1. `tests/src/conformance/<kind>.rs`: `impl Wire for ...` (its request reader, answer/stream/error
//!    renderers, spec validator) and `pub fn <kind>() -> Arc<dyn Wire>`;
//! 2. `pub mod <kind>;` and a `pub use` in `conformance::kinds` (tests/src/conformance/mod.rs);
//! 3. its name in the `conformance!` line below.
//!
//! Adding a case: a variant in `cases!` (tests/src/conformance/cases.rs) with its request, expected
//! upstream view and reply, and its name in the case list of `conformance!` below
//! (`every_case_has_a_test` fails until the two lists agree).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use tollgate_tests::conformance::{driver, kinds, Case};

macro_rules! conformance {
    ($($kind:ident),* $(,)?) => {
        $(
            mod $kind {
                use super::*;

                for_each_case!($kind:
                    simple_chat, system_prompt, multi_turn, image_input, image_url, parallel_tools, tool_results,
                    reasoning_round_trip, json_schema, stream_text, stream_tools, stream_tool_no_args, stream_reasoning,
                    stream_reasoning_round_trip, stop_sequences, length_finish, content_filter, usage_cached, usage_reasoning, error_400, error_401,
                    error_429, error_500, error_529, error_html_503, stream_error_429, stream_error_event,
                    malformed_body, wrong_shape_body, malformed_stream, malformed_stream_mid, truncated_stream);

                #[tokio::test]
                async fn requests_conform_to_the_spec() {
                    driver::validate_spec(kinds::$kind()).await;
                }
            }
        )*
    };
}

macro_rules! for_each_case {
    ($kind:ident: $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let case = Case::from_name(stringify!($case)).expect("a case of that name");
                driver::run(kinds::$kind(), case).await;
            }
        )*

        #[test]
        fn every_case_has_a_test() {
            let listed = [$(stringify!($case)),*];
            let all: Vec<&str> = Case::ALL.iter().map(|c| c.name()).collect();
            assert_eq!(listed.as_slice(), all.as_slice());
        }
    };
}

conformance!(
    openai,
    azure,
    groq,
    anthropic,
    gemini,
    vertex,
    vertex_claude,
    bedrock,
    cohere
);
