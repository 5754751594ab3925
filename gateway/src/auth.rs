//! Who may call what: roles, the route table, and the middleware that enforces
//! it.
//!
//! [`ROUTES`] is the single source of truth: the middleware looks every request
//! up in it (a served route missing from it is refused), `docs/API.md` prints
//! it, and a test walks all of it with a key of every role.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bus_schema::{Actor, ActorKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::Problem;
use crate::state::AppState;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including keys and sources.
    Admin,
    /// Customers: create, update, read with personal data.
    Sales,
    /// Customers: update and read with personal data.
    Support,
    /// Read everything, never personal data; the log's read models.
    Auditor,
    /// Another system: create, update and read customers, without personal data.
    Integration,
}

impl Role {
    pub const ALL: [Role; 5] =
        [Self::Admin, Self::Sales, Self::Support, Self::Auditor, Self::Integration];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Sales => "sales",
            Self::Support => "support",
            Self::Auditor => "auditor",
            Self::Integration => "integration",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// Whether this role may see personal data in the clear (`?reveal=true`).
    pub fn may_reveal(self) -> bool {
        matches!(self, Self::Admin | Self::Sales | Self::Support)
    }
}

/// The caller of an authenticated route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// The actor recorded on the events this principal causes: a person for
    /// human roles, an integration for integration keys.
    pub fn actor(&self) -> Actor {
        match self.role {
            Role::Integration => Actor::new(ActorKind::Integration, self.name.clone()),
            _ => Actor::new(ActorKind::Human, self.name.clone()),
        }
    }
}

/// How a route authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, the API description).
    Public,
    /// A Standard Webhooks signature of the source (no API key).
    Signature,
    /// An API key of one of these roles.
    Roles(&'static [Role]),
}

/// One served route.
#[derive(Debug, Clone, Copy)]
pub struct RouteRule {
    pub method: &'static str,
    /// The route as the router spells it (`{name}` for parameters).
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
}

const ALL_ROLES: &[Role] = &Role::ALL;
const ADMIN: &[Role] = &[Role::Admin];
const ADMIN_AUDITOR: &[Role] = &[Role::Admin, Role::Auditor];
const CUSTOMER_CREATORS: &[Role] = &[Role::Admin, Role::Sales, Role::Integration];
const CUSTOMER_EDITORS: &[Role] = &[Role::Admin, Role::Sales, Role::Support, Role::Integration];

/// Every route the gateway serves, and who may call it.
pub const ROUTES: &[RouteRule] = &[
    RouteRule { method: "GET", path: "/healthz", access: Access::Public, summary: "Liveness" },
    RouteRule {
        method: "GET",
        path: "/api/v1/openapi.json",
        access: Access::Public,
        summary: "The OpenAPI 3 document",
    },
    RouteRule {
        method: "GET",
        path: "/docs",
        access: Access::Public,
        summary: "The API, readable",
    },
    RouteRule {
        method: "POST",
        path: "/crm/webhooks/interaction",
        access: Access::Signature,
        summary: "The seed's webhook (source `default`)",
    },
    RouteRule {
        method: "POST",
        path: "/api/v1/webhooks/{source}",
        access: Access::Signature,
        summary: "A webhook of a named source",
    },
    RouteRule {
        method: "POST",
        path: "/api/v1/customers",
        access: Access::Roles(CUSTOMER_CREATORS),
        summary: "Create a customer",
    },
    RouteRule {
        method: "GET",
        path: "/api/v1/customers",
        access: Access::Roles(ALL_ROLES),
        summary: "List customers (cursor pagination, filters)",
    },
    RouteRule {
        method: "GET",
        path: "/api/v1/customers/{customer_id}",
        access: Access::Roles(ALL_ROLES),
        summary: "One customer, with its ETag",
    },
    RouteRule {
        method: "PATCH",
        path: "/api/v1/customers/{customer_id}",
        access: Access::Roles(CUSTOMER_EDITORS),
        summary: "Update a customer (If-Match required)",
    },
    RouteRule {
        method: "GET",
        path: "/api/v1/customers/{customer_id}/interactions",
        access: Access::Roles(ALL_ROLES),
        summary: "A customer's interactions",
    },
    RouteRule {
        method: "GET",
        path: "/api/v1/customers/{customer_id}/activities",
        access: Access::Roles(ALL_ROLES),
        summary: "A customer's activity counts",
    },
    RouteRule {
        method: "GET",
        path: "/api/v1/customers/{customer_id}/360",
        access: Access::Roles(ALL_ROLES),
        summary: "The customer 360 view",
    },
    RouteRule {
        method: "POST",
        path: "/api/v1/customers/{customer_id}/forget",
        access: Access::Roles(ADMIN),
        summary: "Forget a customer: destroy their vault key, record CustomerForgotten",
    },
    RouteRule {
        method: "GET",
        path: "/api/v1/read-models",
        access: Access::Roles(ADMIN_AUDITOR),
        summary: "Read model checkpoints and digests",
    },
    RouteRule {
        method: "GET",
        path: "/api/v1/sources",
        access: Access::Roles(ADMIN),
        summary: "List webhook sources",
    },
    RouteRule {
        method: "POST",
        path: "/api/v1/sources",
        access: Access::Roles(ADMIN),
        summary: "Create a webhook source (answers its secret once)",
    },
    RouteRule {
        method: "GET",
        path: "/api/v1/keys",
        access: Access::Roles(ADMIN),
        summary: "List API keys",
    },
    RouteRule {
        method: "POST",
        path: "/api/v1/keys",
        access: Access::Roles(ADMIN),
        summary: "Create an API key (answers it once)",
    },
    RouteRule {
        method: "DELETE",
        path: "/api/v1/keys/{name}",
        access: Access::Roles(ADMIN),
        summary: "Revoke an API key",
    },
];

/// The rule of a route, if it is in the table.
pub fn rule_for(method: &Method, path: &str) -> Option<&'static RouteRule> {
    ROUTES.iter().find(|rule| rule.method == method.as_str() && rule.path == path)
}

/// The route table as the Markdown table in `docs/API.md`.
pub fn route_table_markdown() -> String {
    let mut table = String::from("| Method | Route | Who | What |\n| --- | --- | --- | --- |\n");
    for rule in ROUTES {
        let who = match rule.access {
            Access::Public => "anyone".to_owned(),
            Access::Signature => "source signature".to_owned(),
            Access::Roles(roles) if roles.len() == Role::ALL.len() => "every role".to_owned(),
            Access::Roles(roles) => {
                roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(", ")
            }
        };
        table.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            rule.method, rule.path, who, rule.summary
        ));
    }
    table
}

/// The API key of a request: `Authorization: Bearer <key>` or `X-Api-Key`.
fn presented_key(request: &Request) -> Option<&str> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let text = value.to_str().ok()?;
        let (scheme, key) = text.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| key.trim());
    }
    request.headers().get("x-api-key").and_then(|value| value.to_str().ok()).map(str::trim)
}

/// Enforces [`ROUTES`]; puts the [`Principal`] into the request's extensions.
pub async fn authorize(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(path) = matched.as_ref().map(MatchedPath::as_str) else {
        return next.run(request).await;
    };
    let Some(rule) = rule_for(request.method(), path) else {
        // A route without a rule is a mistake; refuse rather than guess.
        tracing::error!(method = %request.method(), path, "Route missing from the route table");
        return Problem::forbidden("this route has no access rule").into_response();
    };
    let roles = match rule.access {
        Access::Public | Access::Signature => return next.run(request).await,
        Access::Roles(roles) => roles,
    };
    let Some(key) = presented_key(&request) else {
        return Problem::unauthorized("an API key is required (Authorization: Bearer <key>)")
            .into_response();
    };
    let record = match state.keys.verify(key) {
        Ok(Some(record)) => record,
        Ok(None) => return Problem::unauthorized("the API key is not valid").into_response(),
        Err(error) => {
            tracing::error!(error = %error, "Key store failure");
            return Problem::unavailable("key store unavailable").into_response();
        }
    };
    if !roles.contains(&record.role) {
        return Problem::forbidden(format!(
            "role `{}` may not call {} {path}",
            record.role.as_str(),
            request.method()
        ))
        .into_response();
    }
    request.extensions_mut().insert(Principal { name: record.name, role: record.role });
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/API.md` prints the route table the middleware enforces; they must
    /// not drift apart. `UPDATE_DOCS=1` rewrites the table in place.
    #[test]
    fn the_documented_route_table_is_the_enforced_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/API.md");
        let docs = std::fs::read_to_string(path).unwrap_or_default();
        let (start, end) = ("<!-- routes:begin -->\n", "<!-- routes:end -->");
        let table = route_table_markdown();
        let current = docs
            .split_once(start)
            .and_then(|(_, rest)| rest.split_once(end))
            .map(|(table, _)| table.to_owned());
        if std::env::var_os("UPDATE_DOCS").is_some()
            && let (Some((head, rest)), Some(_)) = (docs.split_once(start), &current)
        {
            let tail = rest.split_once(end).map_or("", |(_, tail)| tail);
            std::fs::write(path, format!("{head}{start}{table}{end}{tail}")).unwrap();
            return;
        }
        assert_eq!(current.as_deref(), Some(table.as_str()), "run with UPDATE_DOCS=1");
    }

    #[test]
    fn every_rule_is_unique_and_roles_parse() {
        for (index, rule) in ROUTES.iter().enumerate() {
            assert!(
                ROUTES[..index]
                    .iter()
                    .all(|other| (other.method, other.path) != (rule.method, rule.path)),
                "{} {} twice",
                rule.method,
                rule.path
            );
        }
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
    }
}
