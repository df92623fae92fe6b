//! Protocol errors: JSON-RPC's own codes and Kurento's, with the names the
//! Kurento clients expect in `error.data.type`.

use serde_json::{Value, json};

/// Every error code rkms answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    ParseError,
    InvalidRequest,
    MethodNotFound,
    InvalidParams,
    InternalError,
    MarshallError,
    UnexpectedError,
    NotImplemented,
    InvalidSession,
    MalformedTransaction,
    NotEnoughResources,
    TypeNotFound,
    ObjectNotFound,
    ConstructorNotFound,
    OperationNotFound,
    EventNotSupported,
    IllegalParam,
    NotAvailable,
    TagKeyNotFound,
    OperationNotSupported,
    KmdNotFound,
    SdpParse,
    NoLocalSdp,
    NoRemoteSdp,
    GenerateOffer,
    ProcessOffer,
    ProcessAnswer,
    AlreadyNegotiated,
    NotOfferGenerated,
    AnswerAlreadyProcessed,
    IceGather,
    IceAddCandidate,
}

impl ErrorCode {
    pub fn code(self) -> i64 {
        match self {
            ErrorCode::ParseError => -32700,
            ErrorCode::InvalidRequest => -32600,
            ErrorCode::MethodNotFound => -32601,
            ErrorCode::InvalidParams => -32602,
            ErrorCode::InternalError => -32603,
            ErrorCode::MarshallError => 40001,
            ErrorCode::UnexpectedError => 40003,
            ErrorCode::NotImplemented => 40006,
            ErrorCode::InvalidSession => 40007,
            ErrorCode::MalformedTransaction => 40008,
            ErrorCode::NotEnoughResources => 40009,
            ErrorCode::TypeNotFound => 40100,
            ErrorCode::ObjectNotFound => 40101,
            ErrorCode::ConstructorNotFound => 40104,
            ErrorCode::OperationNotFound => 40105,
            ErrorCode::EventNotSupported => 40106,
            ErrorCode::IllegalParam => 40107,
            ErrorCode::NotAvailable => 40108,
            ErrorCode::TagKeyNotFound => 40110,
            ErrorCode::OperationNotSupported => 40111,
            ErrorCode::KmdNotFound => 40500,
            ErrorCode::SdpParse => 40201,
            ErrorCode::NoLocalSdp => 40202,
            ErrorCode::NoRemoteSdp => 40203,
            ErrorCode::GenerateOffer => 40204,
            ErrorCode::ProcessOffer => 40205,
            ErrorCode::ProcessAnswer => 40206,
            ErrorCode::AlreadyNegotiated => 40208,
            ErrorCode::NotOfferGenerated => 40209,
            ErrorCode::AnswerAlreadyProcessed => 40210,
            ErrorCode::IceGather => 40400,
            ErrorCode::IceAddCandidate => 40401,
        }
    }

    /// The name carried in `error.data.type`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::MethodNotFound => "METHOD_NOT_FOUND",
            ErrorCode::InvalidParams => "INVALID_PARAMS",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::MarshallError => "MARSHALL_ERROR",
            ErrorCode::UnexpectedError => "UNEXPECTED_ERROR",
            ErrorCode::NotImplemented => "NOT_IMPLEMENTED",
            ErrorCode::InvalidSession => "INVALID_SESSION",
            ErrorCode::MalformedTransaction => "MALFORMED_TRANSACTION",
            ErrorCode::NotEnoughResources => "NOT_ENOUGH_RESOURCES",
            ErrorCode::TypeNotFound => "MEDIA_OBJECT_TYPE_NOT_FOUND",
            ErrorCode::ObjectNotFound => "MEDIA_OBJECT_NOT_FOUND",
            ErrorCode::ConstructorNotFound => "MEDIA_OBJECT_CONSTRUCTOR_NOT_FOUND",
            ErrorCode::OperationNotFound => "MEDIA_OBJECT_METHOD_NOT_FOUND",
            ErrorCode::EventNotSupported => "MEDIA_OBJECT_EVENT_NOT_SUPPORTED",
            ErrorCode::IllegalParam => "MEDIA_OBJECT_ILLEGAL_PARAM_ERROR",
            ErrorCode::NotAvailable => "MEDIA_OBJECT_NOT_AVAILABLE",
            ErrorCode::TagKeyNotFound => "MEDIA_OBJECT_TAG_KEY_NOT_FOUND",
            ErrorCode::OperationNotSupported => "MEDIA_OBJECT_OPERATION_NOT_SUPPORTED",
            ErrorCode::KmdNotFound => "SERVER_MANAGER_ERROR_KMD_NOT_FOUND",
            ErrorCode::SdpParse => "SDP_PARSE_ERROR",
            ErrorCode::NoLocalSdp => "SDP_END_POINT_NO_LOCAL_SDP_ERROR",
            ErrorCode::NoRemoteSdp => "SDP_END_POINT_NO_REMOTE_SDP_ERROR",
            ErrorCode::GenerateOffer => "SDP_END_POINT_GENERATE_OFFER_ERROR",
            ErrorCode::ProcessOffer => "SDP_END_POINT_PROCESS_OFFER_ERROR",
            ErrorCode::ProcessAnswer => "SDP_END_POINT_PROCESS_ANSWER_ERROR",
            ErrorCode::AlreadyNegotiated => "SDP_END_POINT_ALREADY_NEGOTIATED",
            ErrorCode::NotOfferGenerated => "SDP_END_POINT_NOT_OFFER_GENERATED",
            ErrorCode::AnswerAlreadyProcessed => "SDP_END_POINT_ANSWER_ALREADY_PROCCESED",
            ErrorCode::IceGather => "ICE_GATHER_CANDIDATES_ERROR",
            ErrorCode::IceAddCandidate => "ICE_ADD_CANDIDATE_ERROR",
        }
    }
}

/// An error answer to one request.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{} ({}): {message}", .code.name(), .code.code())]
pub struct RpcError {
    pub code: ErrorCode,
    pub message: String,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn object_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::ObjectNotFound,
            format!("object '{id}' not found"),
        )
    }

    pub fn illegal_param(name: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorCode::IllegalParam,
            format!("parameter '{name}': {why}"),
        )
    }

    pub fn invalid_params(why: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParams, why)
    }

    /// The JSON-RPC `error` member.
    pub fn to_json(&self) -> Value {
        json!({
            "code": self.code.code(),
            "message": self.message,
            "data": { "type": self.code.name() },
        })
    }
}

pub type RpcResult<T> = Result<T, RpcError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_code_message_and_type() {
        let e = RpcError::object_not_found("abc");
        assert_eq!(
            e.to_json(),
            json!({"code": 40101, "message": "object 'abc' not found",
                   "data": {"type": "MEDIA_OBJECT_NOT_FOUND"}})
        );
    }
}
