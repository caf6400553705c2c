//! The OpenAPI 3.1 document served at `/v1/openapi.json`.

use serde_json::{json, Value};

/// The API's description.
pub(super) fn document() -> Value {
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let errors = |codes: &[(&str, &str)]| {
        let mut out = serde_json::Map::new();
        for (code, why) in codes {
            out.insert(
                code.to_string(),
                json!({ "description": why, "content": { "application/json": { "schema": error } } }),
            );
        }
        Value::Object(out)
    };
    let mut predict_responses = errors(&[
        ("400", "the body is not a usable example"),
        ("401", "missing or wrong token"),
        ("404", "no model of that name"),
        ("413", "body over the size limit"),
        ("415", "not the kind of file the model takes"),
        ("503", "queue full: retry after the Retry-After seconds"),
        ("504", "no answer within the time limit"),
    ]);
    predict_responses["200"] = json!({
        "description": "the answer (one example), or one answer per file (multipart)",
        "content": { "application/json": { "schema": { "type": "object" } } }
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "graft serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Predictions from graft recognizers and KNN indexes."
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": { "type": "string" } }
                }
            },
            "securitySchemes": { "token": { "type": "http", "scheme": "bearer" } }
        },
        "paths": {
            "/healthz": { "get": { "summary": "the process answers", "responses": { "200": { "description": "ok" } } } },
            "/readyz": { "get": { "summary": "models are loaded and the server is not stopping",
                "responses": { "200": { "description": "ready" }, "503": { "description": "not ready" } } } },
            "/metrics": { "get": { "summary": "Prometheus text: requests, latencies, batch sizes, queue depth",
                "responses": { "200": { "description": "metrics", "content": { "text/plain": {} } } } } },
            "/v1/models": { "get": { "summary": "the models served",
                "responses": { "200": { "description": "models", "content": { "application/json": { "schema": { "type": "object" } } } } } } },
            "/v1/models/{name}": { "get": {
                "summary": "a model: labels, base, input, metrics",
                "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "the model", "content": { "application/json": { "schema": { "type": "object" } } } },
                               "404": { "description": "no model of that name", "content": { "application/json": { "schema": error } } } } } },
            "/v1/models/{name}/predict": { "post": {
                "summary": "classify one image or WAV (the body), or several (multipart/form-data)",
                "parameters": [
                    { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "top_k", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "default": 3 } }
                ],
                "requestBody": { "required": true, "content": {
                    "image/png": {}, "image/jpeg": {}, "audio/wav": {}, "application/octet-stream": {},
                    "multipart/form-data": { "schema": { "type": "object" } } } },
                "responses": predict_responses
            } }
        },
        "security": [{ "token": [] }]
    })
}
