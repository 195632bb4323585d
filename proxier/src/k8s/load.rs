//! Reading Kubernetes manifests: YAML or JSON, single documents, multi-document
//! streams and `kind: List` (what `kubectl get … -o yaml|json` prints).
//!
//! The loader splits the input into objects, dispatches on `apiVersion`/`kind`
//! and hands each object to [`super::validate`]. Kinds kube-proxy does not
//! watch are returned in [`Manifests::skipped`] so the caller can say so; the
//! loader itself never prints. Errors name the source (file), the object and
//! the field.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::model::{EndpointSlice, Node, Service, ServiceCidr};
use super::raw;
use super::validate::{self, FieldError};

/// Everything kube-proxy reads out of a set of manifests, in input order.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub nodes: Vec<Node>,
    pub service_cidrs: Vec<ServiceCidr>,
    /// Objects of kinds kube-proxy does not watch: `(source, "Kind ns/name")`.
    pub skipped: Vec<(String, String)>,
}

impl Manifests {
    /// Appends another set (e.g. the next file on the command line).
    pub fn extend(&mut self, other: Manifests) {
        self.services.extend(other.services);
        self.endpoint_slices.extend(other.endpoint_slices);
        self.nodes.extend(other.nodes);
        self.service_cidrs.extend(other.service_cidrs);
        self.skipped.extend(other.skipped);
    }
}

/// Why a manifest could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("{source_name}: {message}")]
    Syntax {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: {error}")]
    Field {
        source_name: String,
        error: FieldError,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// Loads every object in `text`; `source_name` (usually the file path) is
/// used in errors.
pub fn load_str(source_name: &str, text: &str) -> Result<Manifests, LoadError> {
    let syntax = |message: String| LoadError::Syntax {
        source_name: source_name.to_string(),
        message,
    };
    let mut documents = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // JSON: one value (kubectl prints a single object or a List).
        let value: serde_yaml::Value =
            serde_json::from_str(text).map_err(|e| syntax(format!("invalid JSON: {e}")))?;
        documents.push(value);
    } else {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value = serde_yaml::Value::deserialize(doc)
                .map_err(|e| syntax(format!("invalid YAML in document {}: {e}", i + 1)))?;
            documents.push(value);
        }
    }

    let mut out = Manifests::default();
    for (i, doc) in documents.into_iter().enumerate() {
        let at = format!("document {}", i + 1);
        add_object(source_name, &at, doc, None, &mut out)?;
    }
    Ok(out)
}

fn add_object(
    source_name: &str,
    at: &str,
    value: serde_yaml::Value,
    inherited_kind: Option<&str>,
    out: &mut Manifests,
) -> Result<(), LoadError> {
    let syntax = |message: String| LoadError::Syntax {
        source_name: source_name.to_string(),
        message,
    };
    if value.is_null() {
        return Ok(()); // an empty document, e.g. a trailing `---`
    }
    if !value.is_mapping() {
        return Err(syntax(format!(
            "{at}: expected a Kubernetes object (a mapping with apiVersion and kind)"
        )));
    }
    let type_meta: TypeMeta = serde_yaml::from_value(value.clone())
        .map_err(|e| syntax(format!("{at}: apiVersion/kind: {e}")))?;
    let kind = if type_meta.kind.is_empty() {
        inherited_kind.unwrap_or("").to_string()
    } else {
        type_meta.kind.clone()
    };
    let api_version = type_meta.api_version.as_str();

    if kind == "List" || (kind.ends_with("List") && kind.len() > 4) {
        let items = value
            .get("items")
            .and_then(|v| v.as_sequence())
            .cloned()
            .unwrap_or_default();
        let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
        for (i, item) in items.into_iter().enumerate() {
            add_object(
                source_name,
                &format!("{at} items[{i}]"),
                item,
                item_kind,
                out,
            )?;
        }
        return Ok(());
    }

    let name = describe(&value);
    let field = |error: FieldError| LoadError::Field {
        source_name: source_name.to_string(),
        error,
    };
    let check_version = |expected: &str, kind: &str| -> Result<(), LoadError> {
        if api_version.is_empty() || api_version == expected {
            Ok(())
        } else {
            Err(syntax(format!(
                "{at}: {kind} {name}: apiVersion {api_version:?} is not supported; use {expected}"
            )))
        }
    };
    match kind.as_str() {
        "Service" => {
            check_version("v1", "Service")?;
            let raw: raw::Service = typed(source_name, at, "Service", &name, value)?;
            out.services.push(validate::service(&raw).map_err(field)?);
        }
        "EndpointSlice" => {
            check_version("discovery.k8s.io/v1", "EndpointSlice")?;
            let raw: raw::EndpointSlice = typed(source_name, at, "EndpointSlice", &name, value)?;
            out.endpoint_slices
                .push(validate::endpoint_slice(&raw).map_err(field)?);
        }
        "Node" => {
            check_version("v1", "Node")?;
            let raw: raw::Node = typed(source_name, at, "Node", &name, value)?;
            out.nodes.push(validate::node(&raw).map_err(field)?);
        }
        "ServiceCIDR" => {
            check_version("networking.k8s.io/v1", "ServiceCIDR")?;
            let raw: raw::ServiceCidr = typed(source_name, at, "ServiceCIDR", &name, value)?;
            out.service_cidrs
                .push(validate::service_cidr(&raw).map_err(field)?);
        }
        "" => {
            return Err(syntax(format!(
                "{at}: object {name} has no kind; add `kind:` (e.g. Service, EndpointSlice, Node)"
            )))
        }
        other => out
            .skipped
            .push((source_name.to_string(), format!("{other} {name}"))),
    }
    Ok(())
}

/// Deserialises one object, naming the field path on a type error.
fn typed<T: DeserializeOwned>(
    source_name: &str,
    at: &str,
    kind: &str,
    name: &str,
    value: serde_yaml::Value,
) -> Result<T, LoadError> {
    serde_path_to_error::deserialize(value).map_err(|e| LoadError::Syntax {
        source_name: source_name.to_string(),
        message: format!("{at}: {kind} {name}: {}: {}", e.path(), e.inner()),
    })
}

/// `ns/name` (or `name`) of an object, for messages.
fn describe(value: &serde_yaml::Value) -> String {
    let meta = value.get("metadata");
    let get = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let (ns, name) = (get("namespace"), get("name"));
    match (ns.is_empty(), name.is_empty()) {
        (_, true) => "<unnamed>".to_string(),
        (true, false) => name,
        (false, false) => format!("{ns}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: shop, managedFields: [{manager: kubectl}]}
  spec: {clusterIP: 10.96.0.10, ports: [{port: 80, targetPort: http}]}
  status: {loadBalancer: {}, conditions: []}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: cfg, namespace: shop}
"#;

    #[test]
    fn kubectl_list_loads_and_skips_other_kinds() {
        let m = load_str("list.yaml", LIST).unwrap();
        assert_eq!(m.services.len(), 1);
        assert_eq!(m.services[0].name.to_string(), "shop/web");
        assert_eq!(
            m.skipped,
            vec![("list.yaml".to_string(), "ConfigMap shop/cfg".to_string())]
        );
    }

    #[test]
    fn multi_document_stream_with_empty_documents() {
        let text = "---\napiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1}\naddressType: IPv4\nendpoints: []\n";
        let m = load_str("s.yaml", text).unwrap();
        assert_eq!(m.nodes.len(), 1);
        assert_eq!(m.endpoint_slices.len(), 1);
    }

    #[test]
    fn json_list_loads() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"b"},"spec":{"clusterIP":"10.0.0.1","ports":[{"port":53,"protocol":"UDP"}]}}]}"#;
        let m = load_str("x.json", text).unwrap();
        assert_eq!(m.services[0].ports[0].port, 53);
    }

    #[test]
    fn type_errors_name_file_object_and_path() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: b}\nspec: {ports: [{port: eighty}]}\n";
        let e = load_str("bad.yaml", text).unwrap_err().to_string();
        assert!(
            e.starts_with("bad.yaml: document 1: Service b/a: spec.ports[0].port"),
            "{e}"
        );
    }

    #[test]
    fn field_errors_name_file() {
        let text =
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {externalIPs: [nope]}\n";
        let e = load_str("f.yaml", text).unwrap_err().to_string();
        assert_eq!(
            e,
            "f.yaml: Service default/a: spec.externalIPs[0]: \"nope\" is not an IP address; write it like 10.96.0.10 or fd00::10"
        );
    }

    #[test]
    fn old_endpointslice_api_is_refused_with_the_fix() {
        let text = "apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\n";
        let e = load_str("o.yaml", text).unwrap_err().to_string();
        assert!(e.contains("use discovery.k8s.io/v1"), "{e}");
    }

    #[test]
    fn malformed_yaml_is_a_syntax_error() {
        let e = load_str("m.yaml", "kind: [unclosed").unwrap_err();
        assert!(matches!(e, LoadError::Syntax { .. }));
    }
}
