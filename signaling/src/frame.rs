//! JSON-RPC 2.0 frames.

use serde_json::{Map, Value, json};

use crate::error::{ErrorCode, RpcError};

/// A parsed request (or notification, when `id` is absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Option<Value>,
    pub method: String,
    pub params: Map<String, Value>,
}

/// A frame that could not be parsed, with the id to answer to (null when
/// the frame carried none that could be read).
#[derive(Debug)]
pub struct BadFrame {
    pub id: Value,
    pub error: RpcError,
}

/// Parses one text frame.
pub fn parse_request(text: &str) -> Result<Request, BadFrame> {
    let value: Value = serde_json::from_str(text).map_err(|e| BadFrame {
        id: Value::Null,
        error: RpcError::new(ErrorCode::ParseError, format!("parse error: {e}")),
    })?;
    let Value::Object(mut frame) = value else {
        return Err(invalid(Value::Null, "a request must be a JSON object"));
    };
    let id = frame.remove("id");
    let answer_id = id.clone().unwrap_or(Value::Null);
    if let Some(id) = &id
        && !(id.is_number() || id.is_string() || id.is_null())
    {
        return Err(invalid(Value::Null, "'id' must be a number or a string"));
    }
    let Some(Value::String(method)) = frame.remove("method") else {
        return Err(invalid(answer_id, "'method' must be a string"));
    };
    let params = match frame.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => {
            return Err(BadFrame {
                id: answer_id,
                error: RpcError::invalid_params("'params' must be an object"),
            });
        }
    };
    Ok(Request { id, method, params })
}

fn invalid(id: Value, why: &str) -> BadFrame {
    BadFrame {
        id,
        error: RpcError::new(ErrorCode::InvalidRequest, why),
    }
}

/// The answer frame to request `id`.
pub fn response_frame(id: &Value, result: Result<&Value, &RpcError>) -> String {
    match result {
        Ok(value) => json!({"jsonrpc": "2.0", "id": id, "result": value}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()}),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request() {
        let r =
            parse_request(r#"{"jsonrpc":"2.0","id":3,"method":"ping","params":{"interval":5000}}"#)
                .unwrap();
        assert_eq!(r.id, Some(json!(3)));
        assert_eq!(r.method, "ping");
        assert_eq!(r.params["interval"], 5000);
    }

    #[test]
    fn malformed_json_is_a_parse_error_with_null_id() {
        let e = parse_request("{\"id\":1,").unwrap_err();
        assert_eq!(e.error.code, ErrorCode::ParseError);
        assert_eq!(e.id, Value::Null);
    }

    #[test]
    fn missing_method_is_an_invalid_request_with_the_id() {
        let e = parse_request(r#"{"jsonrpc":"2.0","id":7}"#).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::InvalidRequest);
        assert_eq!(e.id, json!(7));
        let e = parse_request("[1,2]").unwrap_err();
        assert_eq!(e.error.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn params_must_be_an_object() {
        let e = parse_request(r#"{"id":1,"method":"create","params":[1]}"#).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::InvalidParams);
    }

    #[test]
    fn response_frames() {
        assert_eq!(
            response_frame(&json!(1), Ok(&json!({"value": "pong"}))),
            r#"{"id":1,"jsonrpc":"2.0","result":{"value":"pong"}}"#
        );
        let e = RpcError::new(ErrorCode::MethodNotFound, "no");
        assert!(response_frame(&json!(2), Err(&e)).contains("-32601"));
    }
}
