#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The REST API over real HTTP against `agentcrm up`: the whole route/role
//! table, optimistic concurrency with `If-Match`, and who is recorded as the
//! actor of a write.

mod common;

use common::Node;
use gateway::auth::{Access, ROUTES, Role};
use reqwest::Method;
use serde_json::json;

fn path_for(template: &str) -> String {
    // Forgetting is tried on a customer that does not exist (404 for admin):
    // the reveal checks below still need `cus_roles`' personal data.
    let customer = if template.ends_with("/forget") { "cus_never_created" } else { "cus_roles" };
    template
        .replace("{customer_id}", customer)
        .replace("{name}", "nobody")
        .replace("{source}", "default")
}

fn body_for(method: &str, path: &str, role: Role) -> Option<serde_json::Value> {
    match (method, path) {
        ("POST", "/api/v1/customers") => {
            Some(json!({"customer_id": format!("cus_by_{}", role.as_str()), "name": "Role Test"}))
        }
        ("PATCH", _) => Some(json!({"stage": "qualified"})),
        ("POST", "/api/v1/sources") => Some(json!({"name": format!("src_{}", role.as_str())})),
        ("POST", "/api/v1/keys") => {
            Some(json!({"name": format!("made_by_{}", role.as_str()), "role": "auditor"}))
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_admits_exactly_its_roles() {
    let mut node = Node::start();
    let client = reqwest::Client::new();
    let created = client
        .post(node.url("/api/v1/customers"))
        .bearer_auth(&node.admin_key)
        .json(&json!({"customer_id": "cus_roles", "name": "Ann Lee", "email": "ann@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let mut keys = Vec::new();
    for role in Role::ALL {
        keys.push((
            role,
            node.key(&client, &format!("user_{}", role.as_str()), role.as_str()).await,
        ));
    }
    let mut checked = 0;
    for rule in ROUTES {
        let path = path_for(rule.path);
        let method = Method::from_bytes(rule.method.as_bytes()).unwrap();
        match rule.access {
            Access::Public => {
                let response = client.request(method, node.url(&path)).send().await.unwrap();
                assert_eq!(response.status(), 200, "{} {}", rule.method, rule.path);
                checked += 1;
            }
            // Covered by the webhook tests: signatures, not keys.
            Access::Signature => {}
            Access::Roles(allowed) => {
                let response =
                    client.request(method.clone(), node.url(&path)).send().await.unwrap();
                assert_eq!(response.status(), 401, "{} {} without a key", rule.method, rule.path);
                let response = client
                    .request(method.clone(), node.url(&path))
                    .bearer_auth("acrm_not_a_key")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 401, "{} {} with a bad key", rule.method, rule.path);
                for (role, key) in &keys {
                    let mut request =
                        client.request(method.clone(), node.url(&path)).bearer_auth(key);
                    if let Some(body) = body_for(rule.method, rule.path, *role) {
                        request = request.json(&body);
                    }
                    if rule.method == "PATCH" {
                        request = request.header("if-match", "\"1\"");
                    }
                    let status = request.send().await.unwrap().status().as_u16();
                    if allowed.contains(role) {
                        assert!(
                            ![401, 403].contains(&status) && status < 500,
                            "{} {} as {}: {status}",
                            rule.method,
                            rule.path,
                            role.as_str()
                        );
                    } else {
                        assert_eq!(
                            status,
                            403,
                            "{} {} as {}",
                            rule.method,
                            rule.path,
                            role.as_str()
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 60, "only {checked} checks");

    // Personal data in the clear only for admin, sales and support.
    for (role, key) in &keys {
        let response = client
            .get(node.url("/api/v1/customers/cus_roles?reveal=true"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        if role.may_reveal() {
            assert_eq!(response.status(), 200);
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["name"], "Ann Lee");
        } else {
            assert_eq!(response.status(), 403, "{}", role.as_str());
        }
    }
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_with_one_etag_one_wins_one_gets_412() {
    let mut node = Node::start();
    let client = reqwest::Client::new();
    let alice = node.key(&client, "alice", "sales").await;
    let bob = node.key(&client, "bob", "support").await;
    let created = client
        .post(node.url("/api/v1/customers"))
        .bearer_auth(&alice)
        .json(&json!({"customer_id": "cus_occ", "name": "Wang Fang", "phone": "+86 138 1234 5678"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let etag = created.headers()["etag"].to_str().unwrap().to_owned();
    let body: serde_json::Value = created.json().await.unwrap();
    assert_eq!(body["name"], "<PERSON_1>", "the read model holds tokens, not names");

    // Missing If-Match: 428.
    let response = client
        .patch(node.url("/api/v1/customers/cus_occ"))
        .bearer_auth(&alice)
        .json(&json!({"stage": "won"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 428);

    let update = |key: String, body: serde_json::Value| {
        let (client, url, etag) =
            (client.clone(), node.url("/api/v1/customers/cus_occ"), etag.clone());
        async move {
            let response = client
                .patch(url)
                .bearer_auth(key)
                .header("if-match", etag)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (first, second) = tokio::join!(
        update(alice.clone(), json!({"owner": "alice"})),
        update(bob.clone(), json!({"stage": "qualified"}))
    );
    let mut statuses = [first.0, second.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 412], "{first:?} {second:?}");
    let (winner, loser) = if first.0 == 200 { (&first, &second) } else { (&second, &first) };
    let (won_field, lost_field) =
        if first.0 == 200 { ("owner", "stage") } else { ("stage", "owner") };
    assert_eq!(loser.1["changed_fields"], json!([won_field]));
    assert_eq!(loser.1["current"][won_field], winner.1[won_field]);

    // No lost update: the loser retries on the new ETag and both changes stay.
    let current =
        client.get(node.url("/api/v1/customers/cus_occ")).bearer_auth(&alice).send().await.unwrap();
    let etag = current.headers()["etag"].to_str().unwrap().to_owned();
    let retry = client
        .patch(node.url("/api/v1/customers/cus_occ"))
        .bearer_auth(&bob)
        .header("if-match", etag)
        .json(&json!({lost_field: if lost_field == "owner" { "alice" } else { "qualified" }}))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 200);
    let last: serde_json::Value = retry.json().await.unwrap();
    assert_eq!(last["owner"], "alice");
    assert_eq!(last["stage"], "qualified");
    node.stop();

    // Every write names the human who made it; no raw personal data in the log.
    let export = common::agentcrm(&["export", "--jsonl", "--data-dir", &node.data_str()]);
    assert!(!export.contains("Wang Fang") && !export.contains("1234 5678"), "{export}");
    let actors: Vec<serde_json::Value> = export
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["event"]["actor"].clone()
        })
        .collect();
    assert_eq!(actors[0], json!({"kind": "human", "id": "alice"}));
    assert!(actors.contains(&json!({"kind": "human", "id": "bob"})));
}
