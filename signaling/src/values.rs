//! Checking request arguments against the API model, and building the
//! tagged complex values Kurento clients expect.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::error::{ErrorCode, RpcError, RpcResult};
use crate::model::{Model, NAMESPACE, ParamDef, TypeKind};
use crate::registry::Registry;

/// A complex value tagged with its Kurento type.
pub fn complex(type_name: &str, mut fields: Map<String, Value>) -> Value {
    fields.insert("__module__".into(), json!(NAMESPACE));
    fields.insert("__type__".into(), json!(type_name));
    Value::Object(fields)
}

/// A `Tag` value.
pub fn tag(key: &str, value: &str) -> Value {
    let mut fields = Map::new();
    fields.insert("key".into(), json!(key));
    fields.insert("value".into(), json!(value));
    complex("Tag", fields)
}

/// The arguments with object references given as objects (`{"id": ...}`)
/// turned into plain ids. The npm kurento-client sends some references
/// that way: its `DispatcherOneToMany.setSource(port)` serializes the port
/// object itself.
/// The arguments are borrowed as they are unless one needs rewriting.
pub fn object_refs_as_ids<'a>(
    model: &Model,
    declared: &[ParamDef],
    params: &'a Map<String, Value>,
) -> Cow<'a, Map<String, Value>> {
    let mut params = Cow::Borrowed(params);
    for p in declared {
        if let TypeKind::RemoteClass(_) = model.type_kind(&p.ty)
            && let Some(id) = params
                .get(&p.name)
                .and_then(|v| v.get("id"))
                .and_then(Value::as_str)
        {
            let id = Value::String(id.to_owned());
            params.to_mut().insert(p.name.clone(), id);
        }
    }
    params
}

/// Checks `params` against the declared parameters: each required one is
/// present and each present one has the declared type. Object references
/// must name live objects of the right class.
pub fn check_params(
    model: &Model,
    registry: &Registry,
    declared: &[ParamDef],
    params: &Map<String, Value>,
) -> RpcResult<()> {
    for p in declared {
        match params.get(&p.name) {
            None | Some(Value::Null) if p.optional => {}
            None | Some(Value::Null) => {
                return Err(RpcError::illegal_param(&p.name, "is required"));
            }
            Some(v) => check_value(model, registry, &p.name, &p.ty, v)?,
        }
    }
    Ok(())
}

fn check_value(
    model: &Model,
    registry: &Registry,
    name: &str,
    ty: &str,
    value: &Value,
) -> RpcResult<()> {
    let ok = match model.type_kind(ty) {
        TypeKind::String => value.is_string(),
        TypeKind::Int => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        TypeKind::Int64 => value.is_i64() || value.is_u64(),
        TypeKind::Float => value.is_number(),
        TypeKind::Boolean => value.is_boolean(),
        TypeKind::Enum(values) => value
            .as_str()
            .is_some_and(|s| values.iter().any(|v| v == s)),
        TypeKind::Complex | TypeKind::Map => value.is_object(),
        TypeKind::Array(inner) => {
            let Some(items) = value.as_array() else {
                return Err(RpcError::illegal_param(name, format!("expected {ty}")));
            };
            for item in items {
                check_value(model, registry, name, inner, item)?;
            }
            true
        }
        TypeKind::RemoteClass(class) => {
            let Some(id) = value.as_str() else {
                return Err(RpcError::illegal_param(
                    name,
                    format!("expected the id of a {}", class.name),
                ));
            };
            let Some(object) = registry.get(id) else {
                return Err(RpcError::new(
                    ErrorCode::ObjectNotFound,
                    format!("parameter '{name}': object '{id}' not found"),
                ));
            };
            if !model.is_a(object.class, &class.name) {
                return Err(RpcError::illegal_param(
                    name,
                    format!("'{id}' is a {}, not a {}", object.class.name, class.name),
                ));
            }
            true
        }
        TypeKind::Unknown => true,
    };
    if ok {
        Ok(())
    } else {
        Err(RpcError::illegal_param(
            name,
            format!("expected {ty}, got {value}"),
        ))
    }
}

/// The value a plain-setting property has until a client sets it.
pub fn default_value(model: &Model, ty: &str) -> Value {
    match model.type_kind(ty) {
        TypeKind::Int | TypeKind::Int64 => json!(0),
        TypeKind::Float => json!(0.0),
        TypeKind::Boolean => json!(false),
        TypeKind::String => json!(""),
        TypeKind::Array(_) => json!([]),
        // Kurento's state enums list their resting state first.
        TypeKind::Enum(values) => values.first().map_or(Value::Null, |v| json!(v)),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn missing_and_wrong_arguments_name_the_parameter() {
        let m = Model::get();
        let reg = Registry::default();
        let class = m.class("MediaObject").unwrap();
        let add_tag = &class
            .methods
            .iter()
            .find(|x| x.name == "addTag")
            .unwrap()
            .params;

        let err = check_params(m, &reg, add_tag, &params(json!({"key": "k"}))).unwrap_err();
        assert_eq!(err.code, ErrorCode::IllegalParam);
        assert!(err.message.contains("'value'"), "{}", err.message);

        let err =
            check_params(m, &reg, add_tag, &params(json!({"key": 1, "value": "v"}))).unwrap_err();
        assert!(err.message.contains("'key'"), "{}", err.message);

        check_params(m, &reg, add_tag, &params(json!({"key": "k", "value": "v"}))).unwrap();
    }

    #[test]
    fn object_references_given_as_objects_become_ids() {
        let m = Model::get();
        let one_to_many = m.class("DispatcherOneToMany").unwrap();
        let set_source = &one_to_many
            .methods
            .iter()
            .find(|x| x.name == "setSource")
            .unwrap()
            .params;
        let args = params(json!({"source": {"_events": {}, "id": "p/port_kurento.HubPort"}}));
        let fixed = object_refs_as_ids(m, set_source, &args);
        assert_eq!(fixed["source"], "p/port_kurento.HubPort");
        let plain = params(json!({"source": "already-an-id"}));
        assert!(
            matches!(object_refs_as_ids(m, set_source, &plain), Cow::Borrowed(p) if *p == plain)
        );
    }

    #[test]
    fn enums_ints_and_object_references_are_checked() {
        let m = Model::get();
        let reg = Registry::default();
        let element = m.class("MediaElement").unwrap();
        let connect = &element
            .methods
            .iter()
            .find(|x| x.name == "connect")
            .unwrap()
            .params;
        let err = check_params(m, &reg, connect, &params(json!({"sink": "nope"}))).unwrap_err();
        assert_eq!(err.code, ErrorCode::ObjectNotFound);

        let flowing = &element
            .methods
            .iter()
            .find(|x| x.name == "isMediaFlowingIn")
            .unwrap()
            .params;
        let err =
            check_params(m, &reg, flowing, &params(json!({"mediaType": "SMELL"}))).unwrap_err();
        assert_eq!(err.code, ErrorCode::IllegalParam);
        check_params(m, &reg, flowing, &params(json!({"mediaType": "VIDEO"}))).unwrap();

        let usage = &m.class("ServerManager").unwrap().methods;
        let cpu = &usage
            .iter()
            .find(|x| x.name == "getUsedCpu")
            .unwrap()
            .params;
        assert!(check_params(m, &reg, cpu, &params(json!({"interval": 1.5}))).is_err());
        assert!(check_params(m, &reg, cpu, &params(json!({"interval": 1u64 << 40}))).is_err());
        check_params(m, &reg, cpu, &params(json!({"interval": 100}))).unwrap();
    }
}
