//! The cases: for each, the OpenAI request a client sends, what the upstream must receive (asserted
//! on the canonical [`Seen`]), and what the fake provider replies.

use serde_json::{json, Value};

use super::{Answer, Finish, Part, Reasoning, Role, Seen, Tool, ToolCall, Turn, Usage};

macro_rules! cases {
    ($($variant:ident = $name:literal),* $(,)?) => {
        /// One conformance case; its name is also the upstream model the fake sees.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Case { $($variant),* }

        impl Case {
            pub const ALL: &'static [Case] = &[$(Case::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(Case::$variant => $name),* }
            }

            pub fn from_name(name: &str) -> Option<Case> {
                match name { $($name => Some(Case::$variant),)* _ => None }
            }
        }
    };
}

cases! {
    SimpleChat = "simple_chat",
    SystemPrompt = "system_prompt",
    MultiTurn = "multi_turn",
    ImageInput = "image_input",
    ImageUrl = "image_url",
    ParallelTools = "parallel_tools",
    ToolResults = "tool_results",
    ReasoningRoundTrip = "reasoning_round_trip",
    JsonSchema = "json_schema",
    StreamText = "stream_text",
    StreamTools = "stream_tools",
    StreamToolNoArgs = "stream_tool_no_args",
    StreamReasoning = "stream_reasoning",
    StreamReasoningRoundTrip = "stream_reasoning_round_trip",
    StopSequences = "stop_sequences",
    LengthFinish = "length_finish",
    ContentFilter = "content_filter",
    UsageCached = "usage_cached",
    UsageReasoning = "usage_reasoning",
    Error400 = "error_400",
    Error401 = "error_401",
    Error429 = "error_429",
    Error500 = "error_500",
    Error529 = "error_529",
    ErrorHtml503 = "error_html_503",
    StreamError429 = "stream_error_429",
    StreamErrorEvent = "stream_error_event",
    MalformedBody = "malformed_body",
    WrongShapeBody = "wrong_shape_body",
    MalformedStream = "malformed_stream",
    MalformedStreamMid = "malformed_stream_mid",
    TruncatedStream = "truncated_stream",
}

/// What the fake provider does for a case.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Answer(Answer),
    /// An error answer with this upstream status, in the provider's error shape.
    Error(u16),
    /// An error answer with this status and an HTML body, as a load balancer or CDN in front of
    /// the provider sends it.
    ErrorHtml(u16),
    /// 200 and a stream: [`STREAM_ERROR_TEXT`], then the provider's in-stream error event.
    StreamErrorEvent,
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 with JSON that is not an answer in any provider's shape.
    WrongShape,
    /// 200 with a stream whose first event is not valid.
    MalformedStream,
    /// 200 and a stream: [`STREAM_ERROR_TEXT`], then an event that is not valid.
    MalformedStreamMid,
    /// 200 and a stream: [`STREAM_ERROR_TEXT`], then the connection closes cleanly before the
    /// provider's end of stream (no finish, no end marker).
    TruncatedStream,
}

/// How the gateway must treat an upstream error status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The status the client sees.
    pub status: u16,
    /// The client's `error.type`.
    pub kind: &'static str,
    /// Another target is tried (retryable errors, and the provider rejecting its own credentials).
    pub falls_over: bool,
    /// The same target is tried again (with `retries` configured).
    pub retried: bool,
}

/// What a stream delivers before its error event ([`Reply::StreamErrorEvent`]).
pub const STREAM_ERROR_TEXT: &str = "Partial ans";

/// An image the provider must fetch itself.
pub const IMAGE_URL: &str = "https://example.com/images/red-pixel.png";

/// A 1x1 PNG.
pub const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

const STD_USAGE: Usage = Usage {
    prompt: 10,
    completion: 5,
    cached: 0,
    reasoning: 0,
};

/// The signed reasoning of the `reasoning_round_trip` answer.
pub const REASONING: Reasoning = Reasoning {
    text: "The user wants Paris weather; call get_weather.",
    signature: "RXFRQkNnSVlBaElNMWdiY0RhOUdKd1pBMmIzaEdneEJkanJr",
};

/// The tool result the client sends in the `reasoning_round_trip` follow-up.
const ROUND_TRIP_RESULT: &str = "{\"temp_c\":21}";

fn text(t: &'static str) -> Answer {
    Answer {
        reasoning: None,
        text: Some(t),
        tool_calls: Vec::new(),
        finish: Finish::Stop,
        usage: STD_USAGE,
    }
}

fn calls() -> Vec<ToolCall> {
    vec![
        ToolCall {
            id: "call_conf_paris",
            name: "get_weather",
            args: json!({"city": "Paris"}),
        },
        ToolCall {
            id: "call_conf_tokyo",
            name: "get_weather",
            args: json!({"city": "Tokyo", "unit": "celsius"}),
        },
    ]
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["city"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "get_time", "description": "Local time in a time zone",
            "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}},
                "required": ["timezone"]}}}
    ])
}

fn expected_tools() -> Vec<Tool> {
    tools()
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| Tool {
            name: t["function"]["name"].as_str().unwrap_or_default().to_string(),
            params: super::shape(&t["function"]["parameters"]),
        })
        .collect()
}

fn answer_schema() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}, "temp_c": {"type": "integer"}},
        "required": ["city", "temp_c"], "additionalProperties": false})
}

fn user(t: &str) -> Value {
    json!({"role": "user", "content": t})
}

fn text_turn(role: Role, t: &str) -> Turn {
    Turn {
        role,
        parts: vec![Part::Text(t.to_string())],
    }
}

/// The conversation of the tool-results case: question, two parallel calls, their results.
fn tool_round_trip() -> Value {
    json!([
        user("Weather in Paris and Tokyo?"),
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_conf_paris", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_conf_tokyo", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\",\"unit\":\"celsius\"}"}}]},
        {"role": "tool", "tool_call_id": "call_conf_paris", "content": "{\"temp_c\":21,\"sky\":\"clear\"}"},
        {"role": "tool", "tool_call_id": "call_conf_tokyo", "content": "18 °C, rain"}
    ])
}

impl Case {
    pub fn streams(self) -> bool {
        matches!(
            self,
            Case::StreamText
                | Case::StreamTools
                | Case::StreamToolNoArgs
                | Case::StreamReasoning
                | Case::StreamReasoningRoundTrip
                | Case::StreamError429
                | Case::StreamErrorEvent
                | Case::MalformedStream
                | Case::MalformedStreamMid
                | Case::TruncatedStream
        )
    }

    /// The OpenAI request the client sends; `model` is the gateway model to use.
    pub fn request(self, model: &str) -> Value {
        let mut body = match self {
            Case::SystemPrompt => json!({"messages": [
                {"role": "system", "content": "You are terse."}, user("Hi")]}),
            Case::MultiTurn => json!({"messages": [
                user("My name is Ada."),
                {"role": "assistant", "content": "Nice to meet you, Ada."},
                user("What is my name?")]}),
            Case::ImageInput => json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_B64}")}}]}]}),
            Case::ImageUrl => json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "And this one?"},
                {"type": "image_url", "image_url": {"url": IMAGE_URL}}]}]}),
            Case::ParallelTools => json!({
                "messages": [user("Weather in Paris and Tokyo?")], "tools": tools(), "tool_choice": "auto"}),
            Case::StreamTools => json!({
                "messages": [user("Weather in Paris and Tokyo?")], "tools": tools(), "tool_choice": "required"}),
            Case::StreamToolNoArgs => json!({"messages": [user("Which cities do you know?")],
                "tools": [{"type": "function", "function": {"name": "list_cities",
                    "description": "Every city with weather data",
                    "parameters": {"type": "object", "properties": {}}}}]}),
            Case::ToolResults => json!({"messages": tool_round_trip(), "tools": tools()}),
            Case::ReasoningRoundTrip | Case::StreamReasoningRoundTrip => json!({
                "messages": [user("Weather in Paris?")], "tools": tools(), "reasoning_effort": "low"}),
            Case::JsonSchema => json!({"messages": [user("Weather in Paris as JSON.")],
                "response_format": {"type": "json_schema",
                    "json_schema": {"name": "weather", "strict": true, "schema": answer_schema()}}}),
            Case::StreamText => json!({"messages": [user("Stream a sentence.")],
                "stream_options": {"include_usage": true}}),
            Case::StopSequences => json!({"messages": [user("Count to ten.")], "stop": ["END", "\n\n"]}),
            Case::LengthFinish => json!({"messages": [user("Write an essay.")], "max_completion_tokens": 5}),
            Case::UsageReasoning => json!({"messages": [user("Think, then answer.")],
                "reasoning_effort": "low"}),
            Case::StreamReasoning => json!({"messages": [user("Think, then answer.")],
                "reasoning_effort": "low", "stream_options": {"include_usage": true}}),
            _ => json!({"messages": [user("Say hello.")]}),
        };
        body["model"] = json!(model);
        if self.streams() {
            body["stream"] = json!(true);
        }
        body
    }

    /// The request a client sends after the case's answer, whose assistant `message` it sends back
    /// as it came (or as it rebuilt it from the stream), with the results of its tool calls; `None`
    /// for single-request cases. It streams when the case does.
    pub fn follow_up(self, model: &str, message: &Value) -> Option<Value> {
        if !matches!(self, Case::ReasoningRoundTrip | Case::StreamReasoningRoundTrip) {
            return None;
        }
        let mut messages = vec![user("Weather in Paris?"), message.clone()];
        for call in message["tool_calls"].as_array().into_iter().flatten() {
            messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": ROUND_TRIP_RESULT}));
        }
        let mut body = self.request(model);
        body["messages"] = Value::Array(messages);
        Some(body)
    }

    /// What the upstream must have received (after the gateway's translation); for a case with a
    /// [`Case::follow_up`], the follow-up, whose assistant turn starts with what
    /// [`super::Wire::replayed_reasoning`] says (the driver puts it there).
    pub fn expected_seen(self, tool_ids: bool, result_names: bool) -> Seen {
        let plain = |t: &str| Seen {
            turns: vec![text_turn(Role::User, t)],
            ..Seen::default()
        };
        match self {
            Case::SystemPrompt => Seen {
                system: Some("You are terse.".into()),
                ..plain("Hi")
            },
            Case::MultiTurn => Seen {
                turns: vec![
                    text_turn(Role::User, "My name is Ada."),
                    text_turn(Role::Assistant, "Nice to meet you, Ada."),
                    text_turn(Role::User, "What is my name?"),
                ],
                ..Seen::default()
            },
            Case::ImageInput => Seen {
                turns: vec![Turn {
                    role: Role::User,
                    parts: vec![
                        Part::Text("What is in this image?".into()),
                        Part::Image {
                            mime: "image/png".into(),
                            data: PNG_B64.into(),
                        },
                    ],
                }],
                ..Seen::default()
            },
            Case::ImageUrl => Seen {
                turns: vec![Turn {
                    role: Role::User,
                    parts: vec![
                        Part::Text("And this one?".into()),
                        Part::Image {
                            mime: "url".into(),
                            data: IMAGE_URL.into(),
                        },
                    ],
                }],
                ..Seen::default()
            },
            Case::ParallelTools => Seen {
                tools: expected_tools(),
                tool_choice: Some("auto".into()),
                ..plain("Weather in Paris and Tokyo?")
            },
            Case::StreamToolNoArgs => Seen {
                tools: vec![Tool {
                    name: "list_cities".into(),
                    params: Value::Null,
                }],
                tool_choice: Some("auto".into()),
                ..plain("Which cities do you know?")
            },
            Case::StreamTools => Seen {
                tools: expected_tools(),
                tool_choice: Some("required".into()),
                ..plain("Weather in Paris and Tokyo?")
            },
            Case::ToolResults => {
                let call = |c: ToolCall| Part::ToolCall {
                    id: tool_ids.then(|| c.id.to_string()),
                    name: c.name.into(),
                    args: c.args,
                };
                let result = |id: &str, content: Value| Part::ToolResult {
                    id: tool_ids.then(|| id.to_string()),
                    name: result_names.then(|| "get_weather".to_string()),
                    content,
                };
                Seen {
                    turns: vec![
                        text_turn(Role::User, "Weather in Paris and Tokyo?"),
                        Turn {
                            role: Role::Assistant,
                            parts: calls().into_iter().map(call).collect(),
                        },
                        Turn {
                            role: Role::User,
                            parts: vec![
                                result("call_conf_paris", json!({"temp_c": 21, "sky": "clear"})),
                                // A result that is plain text, not JSON.
                                result("call_conf_tokyo", json!("18 °C, rain")),
                            ],
                        },
                    ],
                    tools: expected_tools(),
                    tool_choice: Some("auto".into()),
                    ..Seen::default()
                }
            }
            Case::ReasoningRoundTrip | Case::StreamReasoningRoundTrip => {
                let paris = &calls()[0];
                Seen {
                    turns: vec![
                        text_turn(Role::User, "Weather in Paris?"),
                        Turn {
                            role: Role::Assistant,
                            parts: vec![Part::ToolCall {
                                id: tool_ids.then(|| paris.id.to_string()),
                                name: paris.name.into(),
                                args: paris.args.clone(),
                            }],
                        },
                        Turn {
                            role: Role::User,
                            parts: vec![Part::ToolResult {
                                id: tool_ids.then(|| paris.id.to_string()),
                                name: result_names.then(|| paris.name.to_string()),
                                content: json!({"temp_c": 21}),
                            }],
                        },
                    ],
                    tools: expected_tools(),
                    tool_choice: Some("auto".into()),
                    ..Seen::default()
                }
            }
            Case::JsonSchema => Seen {
                response_schema: Some(super::shape(&answer_schema())),
                ..plain("Weather in Paris as JSON.")
            },
            Case::StreamText => plain("Stream a sentence."),
            Case::StopSequences => Seen {
                stop: vec!["END".into(), "\n\n".into()],
                ..plain("Count to ten.")
            },
            Case::LengthFinish => Seen {
                max_tokens: Some(5),
                ..plain("Write an essay.")
            },
            Case::UsageReasoning | Case::StreamReasoning => plain("Think, then answer."),
            _ => plain("Say hello."),
        }
    }

    /// What the fake provider replies.
    pub fn reply(self) -> Reply {
        match self {
            Case::SimpleChat => Reply::Answer(text("Hello from the fake upstream.")),
            Case::SystemPrompt => Reply::Answer(text("Hi.")),
            Case::MultiTurn => Reply::Answer(text("Your name is Ada.")),
            Case::ImageInput => Reply::Answer(text("A single red pixel.")),
            Case::ImageUrl => Reply::Answer(text("The same red pixel, fetched.")),
            // Text before the calls: in block-indexed streams (Anthropic) the calls are blocks 1 and 2,
            // yet OpenAI tool-call indices must be 0 and 1.
            // A call without arguments: its streamed arguments must still add up to `{}`.
            Case::StreamToolNoArgs => Reply::Answer(Answer {
                reasoning: None,
                text: None,
                tool_calls: vec![ToolCall {
                    id: "call_conf_cities",
                    name: "list_cities",
                    args: json!({}),
                }],
                finish: Finish::ToolCalls,
                usage: STD_USAGE,
            }),
            Case::ParallelTools | Case::StreamTools => Reply::Answer(Answer {
                reasoning: None,
                text: Some("Let me check both cities."),
                tool_calls: calls(),
                finish: Finish::ToolCalls,
                usage: Usage {
                    prompt: 120,
                    completion: 40,
                    cached: 0,
                    reasoning: 0,
                },
            }),
            Case::ToolResults => Reply::Answer(text("Paris: 21 °C and clear; Tokyo: 18 °C with rain.")),
            // Thinking, then one call: the next turn must send the signed thinking back.
            Case::ReasoningRoundTrip | Case::StreamReasoningRoundTrip => Reply::Answer(Answer {
                reasoning: Some(REASONING),
                text: None,
                tool_calls: vec![calls().swap_remove(0)],
                finish: Finish::ToolCalls,
                usage: Usage {
                    prompt: 140,
                    completion: 60,
                    cached: 0,
                    reasoning: 0,
                },
            }),
            Case::JsonSchema => Reply::Answer(text("{\"city\":\"Paris\",\"temp_c\":21}")),
            Case::StreamText => Reply::Answer(Answer {
                usage: Usage {
                    prompt: 12,
                    completion: 9,
                    cached: 4,
                    reasoning: 0,
                },
                ..text("Streaming works, one small piece at a time — ünïcödé too.")
            }),
            Case::StopSequences => Reply::Answer(Answer {
                finish: Finish::StopSequence("END"),
                ..text("1, 2, 3, 4, 5, 6, 7, 8, 9, 10")
            }),
            Case::LengthFinish => Reply::Answer(Answer {
                finish: Finish::Length,
                ..text("Essays are a")
            }),
            Case::ContentFilter => Reply::Answer(Answer {
                finish: Finish::ContentFilter,
                ..text("I can't help with")
            }),
            Case::StreamReasoning => Reply::Answer(Answer {
                usage: Usage {
                    prompt: 30,
                    completion: 100,
                    cached: 0,
                    reasoning: 64,
                },
                ..text("Thought it through: 42.")
            }),
            Case::UsageCached => Reply::Answer(Answer {
                usage: Usage {
                    prompt: 2006,
                    completion: 300,
                    cached: 1920,
                    reasoning: 0,
                },
                ..text("Cached prompt answer.")
            }),
            Case::UsageReasoning => Reply::Answer(Answer {
                usage: Usage {
                    prompt: 50,
                    completion: 320,
                    cached: 0,
                    reasoning: 256,
                },
                ..text("42.")
            }),
            Case::Error400 => Reply::Error(400),
            Case::Error401 => Reply::Error(401),
            Case::Error429 => Reply::Error(429),
            Case::Error500 => Reply::Error(500),
            Case::Error529 => Reply::Error(529),
            Case::StreamError429 => Reply::Error(429),
            Case::ErrorHtml503 => Reply::ErrorHtml(503),
            Case::StreamErrorEvent => Reply::StreamErrorEvent,
            Case::MalformedBody => Reply::Malformed,
            Case::WrongShapeBody => Reply::WrongShape,
            Case::MalformedStream => Reply::MalformedStream,
            Case::MalformedStreamMid => Reply::MalformedStreamMid,
            Case::TruncatedStream => Reply::TruncatedStream,
        }
    }

    /// For error cases: what the client must see and how routing must react.
    pub fn fault(self) -> Option<Fault> {
        let f = |status, kind, falls_over, retried| {
            Some(Fault {
                status,
                kind,
                falls_over,
                retried,
            })
        };
        match self {
            Case::Error400 => f(400, "invalid_request_error", false, false),
            // The provider refused the gateway's own credential: the client is not at fault (502),
            // and another target (another account) may work, but this one will not on a retry.
            Case::Error401 => f(502, "upstream_error", true, false),
            Case::Error429 | Case::StreamError429 => f(429, "rate_limit_error", true, true),
            Case::Error500 | Case::Error529 | Case::ErrorHtml503 => f(502, "upstream_error", true, true),
            _ => None,
        }
    }
}
