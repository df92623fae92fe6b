//! The ServerManager singleton: what the server is, what it holds and how
//! busy it is.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::dispatch::value;
use crate::engine::{Engine, Fields};
use crate::error::{ErrorCode, RpcError, RpcResult};
use crate::model::MODULES;
use crate::process_stats;
use crate::values::complex;

/// The Kurento API version rkms implements; clients check it.
pub const API_VERSION: &str = "7.3.0";

/// Longest `getUsedCpu` sampling interval, so one request cannot hold its
/// connection for long.
const MAX_CPU_SAMPLE: Duration = Duration::from_secs(10);

impl Engine {
    pub(crate) async fn server_manager_method(
        &self,
        operation: &str,
        args: &Map<String, Value>,
    ) -> RpcResult<Fields> {
        let v = match operation {
            "getInfo" => self.server_info(),
            "getPipelines" => json!(self.registry.pipelines()),
            "getSessions" => json!(self.sessions.ids()),
            "getMetadata" => json!(self.config.metadata),
            "getCpuCount" => json!(process_stats::cpu_count()),
            "getUsedMemory" => json!(process_stats::resident_kib()),
            "getUsedCpu" => {
                let interval = args.get("interval").and_then(Value::as_u64).unwrap_or(0);
                let interval = Duration::from_millis(interval).min(MAX_CPU_SAMPLE);
                json!(process_stats::used_cpu_percent(interval).await)
            }
            "getKmd" => {
                let name = args
                    .get("moduleName")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let module = MODULES.iter().find(|m| m.name == name).ok_or_else(|| {
                    RpcError::new(ErrorCode::KmdNotFound, format!("no module '{name}'"))
                })?;
                json!(module.json)
            }
            _ => {
                return Err(RpcError::new(
                    ErrorCode::NotImplemented,
                    format!("ServerManager.{operation} is not implemented in rkms yet"),
                ));
            }
        };
        Ok(value(v))
    }

    fn server_info(&self) -> Value {
        let modules: Vec<Value> = self
            .model
            .modules()
            .iter()
            .map(|(name, version, factories)| {
                let mut fields = Map::new();
                fields.insert("name".into(), json!(name));
                fields.insert("version".into(), json!(version));
                fields.insert("generationTime".into(), json!(env!("CARGO_PKG_VERSION")));
                fields.insert("factories".into(), json!(factories));
                complex("ModuleInfo", fields)
            })
            .collect();
        let mut fields = Map::new();
        fields.insert("version".into(), json!(API_VERSION));
        fields.insert("type".into(), json!("KMS"));
        fields.insert("capabilities".into(), json!(["transactions"]));
        fields.insert("modules".into(), Value::Array(modules));
        complex("ServerInfo", fields)
    }
}
