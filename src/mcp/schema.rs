//! Tool schemas taken from the served OpenAPI document, so that a tool's inputs carry the REST
//! names and its `outputSchema` is the REST response schema: one source of truth for both.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};

/// The OpenAPI document as JSON (built once; it is what `/openapi.json` serves).
static SPEC: LazyLock<Value> = LazyLock::new(|| {
    serde_json::to_value(crate::http::openapi()).expect("the OpenAPI document is JSON")
});

const COMPONENTS: &str = "#/components/schemas/";

fn operation(method: &str, path: &str) -> &'static Value {
    let op = &SPEC["paths"][path][method];
    assert!(
        op.is_object(),
        "{method} {path} is not in the OpenAPI document"
    );
    op
}

/// The query parameters of an operation as JSON-Schema properties (with their descriptions),
/// leaving out `skip`.
pub fn query_params(method: &str, path: &str, skip: &[&str]) -> Map<String, Value> {
    let mut properties = Map::new();
    for p in operation(method, path)["parameters"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = p["name"].as_str().unwrap_or_default();
        if p["in"] != "query" || skip.contains(&name) {
            continue;
        }
        let mut schema = p["schema"].clone();
        if let (Some(d), Some(s)) = (p["description"].as_str(), schema.as_object_mut()) {
            s.insert("description".into(), d.into());
        }
        properties.insert(name.to_string(), schema);
    }
    properties
}

/// The properties and required names of an operation's JSON request body (`allOf` parts merged,
/// references resolved at the top level).
pub fn body_properties(method: &str, path: &str) -> (Map<String, Value>, Vec<String>) {
    let schema = &operation(method, path)["requestBody"]["content"]["application/json"]["schema"];
    let mut properties = Map::new();
    let mut required = Vec::new();
    merge_object(schema, &mut properties, &mut required);
    (properties, required)
}

fn merge_object(schema: &Value, properties: &mut Map<String, Value>, required: &mut Vec<String>) {
    let schema = resolve(schema);
    for part in schema["allOf"].as_array().into_iter().flatten() {
        merge_object(part, properties, required);
    }
    if let Some(p) = schema["properties"].as_object() {
        properties.extend(p.clone());
    }
    for r in schema["required"].as_array().into_iter().flatten() {
        required.extend(r.as_str().map(String::from));
    }
}

fn resolve(schema: &Value) -> &Value {
    match schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix(COMPONENTS))
    {
        Some(name) => &SPEC["components"]["schemas"][name],
        None => schema,
    }
}

/// The self-contained output schema of an operation's JSON answer with `status`. MCP wants an
/// object: an array answer becomes `{"result": [...]}` (the wrapping MCP SDKs use).
pub fn response(method: &str, path: &str, status: u16) -> Value {
    let schema = &operation(method, path)["responses"][status.to_string()]["content"]["application/json"]
        ["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} has no JSON {status} answer"
    );
    let root = if schema["type"] == "array" {
        object(
            Map::from_iter([("result".to_string(), schema.clone())]),
            &["result"],
        )
    } else {
        object_root(resolve(schema).clone())
    };
    self_contained(root)
}

/// MCP wants `"type": "object"` at the root; the document leaves it out of `allOf` schemas
/// (flattened structs).
fn object_root(mut schema: Value) -> Value {
    if let Some(s) = schema.as_object_mut() {
        s.entry("type").or_insert_with(|| "object".into());
    }
    schema
}

/// A component schema of the document, self-contained. For answers the document cannot show:
/// an operation with a JSON and an SVG `200` lists only the last of the two.
pub fn component(name: &str) -> Value {
    let schema = &SPEC["components"]["schemas"][name];
    assert!(schema.is_object(), "no component schema {name}");
    self_contained(object_root(schema.clone()))
}

/// An object schema with these properties; unknown arguments are refused.
pub fn object(properties: Map<String, Value>, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// Rewrites `#/components/schemas/X` references to `#/$defs/X` and attaches every definition
/// they reach, so that a client resolves them within the schema itself.
pub fn self_contained(mut schema: Value) -> Value {
    let mut defs = Map::new();
    let mut pending: BTreeSet<String> = BTreeSet::new();
    rewrite_refs(&mut schema, &mut pending);
    while let Some(name) = pending.pop_first() {
        if defs.contains_key(&name) {
            continue;
        }
        let mut def = SPEC["components"]["schemas"][&name].clone();
        rewrite_refs(&mut def, &mut pending);
        defs.insert(name, def);
    }
    if let (false, Some(s)) = (defs.is_empty(), schema.as_object_mut()) {
        s.insert("$defs".into(), Value::Object(defs));
    }
    schema
}

fn rewrite_refs(value: &mut Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref")
                && let Some(name) = r.strip_prefix(COMPONENTS)
            {
                found.insert(name.to_string());
                *r = format!("#/$defs/{name}");
            }
            map.values_mut().for_each(|v| rewrite_refs(v, found));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_schemas_are_objects_with_every_reference_defined() {
        let page = response("get", "/v1/architectures", 200);
        assert_eq!(page["type"], "object");
        assert_eq!(
            page["properties"]["items"]["items"]["$ref"],
            "#/$defs/Architecture"
        );
        assert!(page["$defs"]["Architecture"].is_object());
        let listed = response("get", "/v1/benchmarks", 200);
        assert_eq!(listed["required"], json!(["result"]));
        assert_eq!(listed["properties"]["result"]["type"], "array");
        // No reference is left pointing outside the schema.
        let text = serde_json::to_string(&component("CalibrationReport")).unwrap();
        assert!(!text.contains(COMPONENTS), "{text}");
    }

    #[test]
    fn inputs_keep_the_rest_names_and_descriptions() {
        let q = query_params("get", "/v1/results", &["format"]);
        assert!(q.contains_key("only_best_accuracy") && !q.contains_key("format"));
        assert_eq!(q["dataset"]["type"], "array");
        assert!(
            q["max_rows"]["description"]
                .as_str()
                .unwrap()
                .contains("rows")
        );
        let (body, required) = body_properties("post", "/v1/calibration/compute");
        assert!(body.contains_key("probs") && body.contains_key("bins"));
        assert_eq!(required, vec!["labels".to_string()]);
    }
}
