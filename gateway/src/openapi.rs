//! The OpenAPI 3 document, generated from the handlers' annotations, and a
//! readable page of it at `/docs` that loads nothing from the network.

use axum::Json;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::auth::{Access, ROUTES};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "AgentCRM API",
        description = "Webhooks (Standard Webhooks signatures) and the REST API of AgentCRM. \
            Errors are RFC 9457 problem documents. Authenticate with `Authorization: Bearer <key>`.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::webhooks::seed_webhook,
        crate::webhooks::source_webhook,
        crate::customers::create_customer,
        crate::customers::list_customers,
        crate::customers::get_customer,
        crate::customers::update_customer,
        crate::customers::customer_interactions,
        crate::customers::customer_activities,
        crate::customers::customer_360,
        crate::customers::forget_customer,
        crate::admin::list_sources,
        crate::admin::create_source,
        crate::admin::list_keys,
        crate::admin::create_key,
        crate::admin::revoke_key,
        crate::admin::read_models,
    ),
    components(schemas(crate::problem::Problem, crate::problem::FieldError)),
    modifiers(&Security),
    tags(
        (name = "webhooks", description = "Inbound events from other systems"),
        (name = "customers", description = "Customers, their interactions and activities"),
        (name = "admin", description = "Sources, keys and read models"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

/// The OpenAPI document.
pub async fn openapi_json() -> Response {
    let mut response = Json(ApiDoc::openapi()).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The API as one self-contained HTML page.
pub async fn docs_page() -> Html<String> {
    let document = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>AgentCRM API</title><style>\
         body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
         h2{border-bottom:1px solid #ddd;padding-bottom:.3rem;margin-top:2.5rem}\
         .op{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}\
         .m{font-weight:bold;font-family:monospace;padding:.1rem .4rem;border-radius:4px;background:#eef}\
         code,pre{background:#f6f6f6;border-radius:4px}pre{padding:.6rem;overflow:auto;font-size:.85rem}\
         table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}\
         </style></head><body><h1>AgentCRM API</h1>\
         <p>Machine-readable: <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>. \
         Errors are <code>application/problem+json</code> (RFC 9457). \
         Authenticate with <code>Authorization: Bearer &lt;key&gt;</code>.</p>",
    );
    html.push_str(
        "<h2>Routes and roles</h2><table><tr><th>Method</th><th>Route</th><th>Who</th></tr>",
    );
    for rule in ROUTES {
        let who = match rule.access {
            Access::Public => "anyone".to_owned(),
            Access::Signature => "source signature".to_owned(),
            Access::Roles(roles) => {
                roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(", ")
            }
        };
        html.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            rule.method,
            escape(rule.path),
            escape(&who)
        ));
    }
    html.push_str("</table>");
    if let Some(paths) = document.get("paths").and_then(Value::as_object) {
        html.push_str("<h2>Operations</h2>");
        for (path, operations) in paths {
            let Some(operations) = operations.as_object() else { continue };
            for (method, operation) in operations {
                let text = |key: &str| operation.get(key).and_then(Value::as_str).unwrap_or("");
                html.push_str(&format!(
                    "<div class=\"op\"><p><span class=\"m\">{}</span> <code>{}</code> {}</p>",
                    escape(&method.to_uppercase()),
                    escape(path),
                    escape(text("summary"))
                ));
                if !text("description").is_empty() {
                    html.push_str(&format!("<p>{}</p>", escape(text("description"))));
                }
                if let Some(parameters) = operation.get("parameters").and_then(Value::as_array) {
                    html.push_str("<p>Parameters: ");
                    let names: Vec<String> = parameters
                        .iter()
                        .map(|parameter| {
                            let field = |key: &str| {
                                parameter.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
                            };
                            format!(
                                "<code>{}</code> ({})",
                                escape(&field("name")),
                                escape(&field("in"))
                            )
                        })
                        .collect();
                    html.push_str(&names.join(", "));
                    html.push_str("</p>");
                }
                if let Some(responses) = operation.get("responses").and_then(Value::as_object) {
                    let codes: Vec<String> = responses
                        .iter()
                        .map(|(code, response)| {
                            let description =
                                response.get("description").and_then(Value::as_str).unwrap_or("");
                            format!("<b>{}</b> {}", escape(code), escape(description))
                        })
                        .collect();
                    html.push_str(&format!("<p>Responses: {}</p>", codes.join("; ")));
                }
                html.push_str("</div>");
            }
        }
    }
    if let Some(schemas) = document.pointer("/components/schemas").and_then(Value::as_object) {
        html.push_str("<h2>Schemas</h2>");
        for (name, schema) in schemas {
            let pretty = serde_json::to_string_pretty(schema).unwrap_or_default();
            html.push_str(&format!(
                "<h3 id=\"{0}\">{0}</h3><pre>{1}</pre>",
                escape(name),
                escape(&pretty)
            ));
        }
    }
    html.push_str("</body></html>");
    Html(html)
}
