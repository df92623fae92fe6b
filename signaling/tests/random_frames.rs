//! No frame a client sends can panic the engine or break another session:
//! thousands of random frames built from the protocol's own vocabulary
//! (methods, object ids, operations, parameter names, odd values) go in,
//! and a well-behaved session keeps working throughout.

use rkms_signaling::{Engine, EngineConfig};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const METHODS: &[&str] = &[
    "ping",
    "connect",
    "create",
    "invoke",
    "subscribe",
    "unsubscribe",
    "release",
    "describe",
    "transaction",
    "ref",
    "unref",
    "keepAlive",
    "closeSession",
    "nope",
];
const TYPES: &[&str] = &[
    "MediaPipeline",
    "PassThrough",
    "kurento.PassThrough",
    "WebRtcEndpoint",
    "MediaObject",
    "HubPort",
    "ServerManager",
    "core.MediaPipeline",
    "",
];
const OPERATIONS: &[&str] = &[
    "getName",
    "setName",
    "connect",
    "disconnect",
    "getSourceConnections",
    "getSinkConnections",
    "addTag",
    "getTag",
    "removeTag",
    "getTags",
    "getGstreamerDot",
    "getChildren",
    "getParent",
    "getInfo",
    "getKmd",
    "getUsedCpu",
    "getPipelines",
    "isMediaFlowingIn",
    "setSendTagsInEvents",
    "getStats",
    "setEncoderBitrate",
    "processOffer",
    "fly",
];
const KEYS: &[&str] = &[
    "name",
    "key",
    "value",
    "sink",
    "mediaType",
    "sourceMediaDescription",
    "moduleName",
    "interval",
    "sendTagsInEvents",
    "encoderBitrate",
    "description",
    "offer",
];

fn random_value(rng: &mut Rng, ids: &[String], depth: u32) -> Value {
    match rng.below(if depth > 2 { 8 } else { 10 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(-1.5e300),
        4 => json!(*rng.pick(&["AUDIO", "VIDEO", "DATA", "SMELL", "newref:0", "newref:99"])),
        5 | 6 if !ids.is_empty() => json!(rng.pick(ids)),
        5..=7 => json!("x".repeat(rng.below(40))),
        8 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, ids, depth + 1))
                .collect(),
        ),
        _ => {
            let mut map = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                map.insert((*rng.pick(KEYS)).into(), random_value(rng, ids, depth + 1));
            }
            Value::Object(map)
        }
    }
}

fn random_params(rng: &mut Rng, ids: &[String]) -> Value {
    let mut p = serde_json::Map::new();
    if rng.below(4) > 0 {
        p.insert("type".into(), json!(rng.pick(TYPES)));
    }
    if rng.below(3) > 0 && !ids.is_empty() {
        p.insert("object".into(), json!(rng.pick(ids)));
    }
    if rng.below(2) == 0 {
        p.insert("operation".into(), json!(rng.pick(OPERATIONS)));
    }
    if rng.below(2) == 0 {
        p.insert("operationParams".into(), random_value(rng, ids, 0));
    }
    if rng.below(2) == 0 && !ids.is_empty() {
        p.insert(
            "constructorParams".into(),
            json!({"mediaPipeline": rng.pick(ids)}),
        );
    }
    if rng.below(6) == 0 {
        p.insert("operations".into(), random_value(rng, ids, 0));
    }
    if rng.below(8) == 0 {
        p.insert("sessionId".into(), random_value(rng, ids, 2));
    }
    Value::Object(p)
}

#[tokio::test]
async fn random_frames_never_panic_nor_disturb_another_session() {
    let engine = Engine::new(EngineConfig::default());
    let (tx, _rx) = mpsc::channel(1 << 16);
    let mut good = engine.connect(tx.clone());
    let mut bad = engine.connect(tx);
    let mut ids = vec!["manager_ServerManager".to_owned()];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut answered = 0;
    for i in 0..5_000u64 {
        let frame = json!({
            "jsonrpc": "2.0",
            "id": i,
            "method": rng.pick(METHODS),
            "params": random_params(&mut rng, &ids),
        });
        let mut text = frame.to_string();
        if rng.below(20) == 0 {
            text.truncate(rng.below(text.len()));
        }
        if let Some(answer) = bad.handle_text(&text).await {
            answered += 1;
            let answer: Value = serde_json::from_str(&answer).expect("answers are JSON");
            if let Some(id) = answer["result"]["value"].as_str()
                && id.contains("_kurento.")
            {
                ids.push(id.to_owned());
            }
        }
    }
    assert_eq!(answered, 5_000, "every request gets an answer");
    assert!(ids.len() > 10, "the random client also made real objects");

    // The well-behaved session still creates, uses and releases objects.
    let create = r#"{"jsonrpc":"2.0","id":0,"method":"create","params":{"type":"MediaPipeline"}}"#;
    let created: Value = serde_json::from_str(&good.handle_text(create).await.unwrap()).unwrap();
    let pipeline = created["result"]["value"].as_str().unwrap().to_owned();
    let get = json!({"jsonrpc": "2.0", "id": 1, "method": "invoke",
                     "params": {"object": pipeline, "operation": "getName"}});
    let name: Value =
        serde_json::from_str(&good.handle_text(&get.to_string()).await.unwrap()).unwrap();
    assert_eq!(name["result"]["value"], json!(pipeline));
}
