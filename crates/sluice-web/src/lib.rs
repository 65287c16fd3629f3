//! sluice's REST API: JSON over HTTP, every call authenticated by a sluice token
//! (`Authorization: Bearer …`) and acting as that token's identity. Reviews can be listed, read,
//! approved and denied; access grants requested, listed and revoked; and an agent may ask, with
//! its own token, what applies to it on a connection and whether a statement would pass. The web
//! console will be served from here on the same API.

mod error;
mod views;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use error::ApiError;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_approvals::Approvals;
use sluice_core::advice::{Explanation, Permissions};
use sluice_core::review::{Outcome, Status};
use sluice_core::span::Span;
use sluice_core::{AuthOutcome, Identity};
use sluice_engine::{Engine, ExplainError};
use sluice_store::{ReviewFilter, TokenStore};
use std::sync::Arc;
use views::{Now, review_view};

pub struct Api {
    /// Checks the tokens API callers present.
    pub tokens: Arc<dyn TokenStore>,
    pub approvals: Arc<Approvals>,
    /// Answers what an agent may ask before acting (its policy, explain), and records refused calls.
    pub engine: Arc<Engine>,
    /// The gateway's metrics in Prometheus's text format (`GET /metrics`, like `/healthz` open to
    /// anyone who can reach the API: counts and backlogs, nothing recorded).
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
}

type Shared = State<Arc<Api>>;

/// The largest request body accepted (a statement to explain is the largest thing sent).
const MAX_BODY_BYTES: usize = 256 * 1024;

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/reviews", get(list_reviews))
        .route("/api/v1/reviews/{id}", get(show_review))
        .route("/api/v1/reviews/{id}/approve", post(approve))
        .route("/api/v1/reviews/{id}/deny", post(deny))
        .route("/api/v1/reviews/{id}/revoke", post(revoke))
        .route("/api/v1/access", get(list_grants).post(request_access))
        .route("/api/v1/access/policies", get(access_policies))
        .route("/api/v1/connections/{name}/policy", get(connection_policy))
        .route("/api/v1/connections/{name}/explain", post(explain_statement))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<Api>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(api)).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(api): Shared) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], (api.metrics)())
}

/// The caller, proven by the bearer token.
struct Caller(Identity);

impl FromRequestParts<Arc<Api>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Caller, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return Err(ApiError::unauthorized("send a sluice token as `Authorization: Bearer <token>`"));
        };
        match api.tokens.identify(token.trim()).await {
            Ok(identity) => Ok(Caller(identity)),
            Err((AuthOutcome::StoreUnavailable, _)) => Err(ApiError::unavailable(
                "sluice cannot check tokens right now (its state store is failing)",
                "try again shortly; an operator should check sluice's state store",
            )),
            Err((outcome, token_id)) => {
                tracing::warn!(outcome = outcome.as_str(), "API call with a token that proves nothing");
                api.engine.record_api_refusal(token_id, &format!("{} {}", parts.method, parts.uri.path()), outcome);
                Err(ApiError::unauthorized(&format!("the token was not accepted ({})", outcome.as_str())))
            }
        }
    }
}

async fn whoami(Caller(who): Caller) -> Json<Value> {
    Json(json!({"identity": who.name, "groups": who.groups, "token": who.credential_id}))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
    /// Only the caller's own requests.
    #[serde(default)]
    mine: bool,
    limit: Option<i64>,
}

async fn list_reviews(
    State(api): Shared,
    Caller(who): Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("all") => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::bad_request(&format!(
                "status {s:?} is not one of pending, approved, denied, expired, consumed, revoked, all"
            ))
        })?),
    };
    if q.kind.as_deref().is_some_and(|k| k != "statement" && k != "access") {
        return Err(ApiError::bad_request("kind is `statement` or `access`"));
    }
    let filter = ReviewFilter {
        status,
        kind: q.kind,
        requester: q.mine.then(|| who.name.clone()),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let reviews = api.approvals.list(&filter).await?;
    let now = Now::get();
    Ok(Json(json!({"reviews": reviews.iter().map(|r| review_view(&api.approvals, &who, r, now)).collect::<Vec<_>>()})))
}

async fn show_review(State(api): Shared, Caller(who): Caller, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let (review, events) = api.approvals.show(id).await?;
    let mut view = review_view(&api.approvals, &who, &review, Now::get());
    view["events"] = json!(events);
    view["holding_sessions"] = json!(api.approvals.holding(id));
    Ok(Json(view))
}

#[derive(Default, Deserialize)]
struct Decide {
    comment: Option<String>,
    reason: Option<String>,
}

async fn approve(
    State(api): Shared,
    Caller(who): Caller,
    Path(id): Path<i64>,
    body: Option<Json<Decide>>,
) -> Result<Json<Value>, ApiError> {
    let comment = body.and_then(|Json(b)| b.comment).filter(|c| !c.trim().is_empty());
    let (outcome, review) = api.approvals.approve(&who, id, comment).await?;
    let outcome = match outcome {
        Outcome::Approved => json!({"result": "approved"}),
        Outcome::Counted { have, need } => {
            json!({"result": "counted", "approvals": have, "needed": need})
        }
        Outcome::Denied => json!({"result": "denied"}),
    };
    Ok(Json(json!({"outcome": outcome, "review": review_view(&api.approvals, &who, &review, Now::get())})))
}

async fn deny(
    State(api): Shared,
    Caller(who): Caller,
    Path(id): Path<i64>,
    body: Option<Json<Decide>>,
) -> Result<Json<Value>, ApiError> {
    let reason = body.and_then(|Json(b)| b.reason).unwrap_or_default();
    let review = api.approvals.deny(&who, id, &reason).await?;
    Ok(Json(json!({"outcome": {"result": "denied"}, "review": review_view(&api.approvals, &who, &review, Now::get())})))
}

async fn revoke(State(api): Shared, Caller(who): Caller, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let review = api.approvals.revoke(&who, id).await?;
    Ok(Json(
        json!({"outcome": {"result": "revoked"}, "review": review_view(&api.approvals, &who, &review, Now::get())}),
    ))
}

#[derive(Deserialize)]
struct AccessRequest {
    connection: String,
    policy: Option<String>,
    duration: String,
    reason: String,
}

async fn request_access(
    State(api): Shared,
    Caller(who): Caller,
    Json(req): Json<AccessRequest>,
) -> Result<Json<Value>, ApiError> {
    let duration = Span::parse(&req.duration).map_err(|e| ApiError::bad_request(&e))?;
    let review =
        api.approvals.request_access(&who, &req.connection, req.policy.as_deref(), duration, &req.reason).await?;
    Ok(Json(review_view(&api.approvals, &who, &review, Now::get())))
}

#[derive(Deserialize)]
struct GrantsQuery {
    #[serde(default)]
    all: bool,
}

/// Access grants in force (with `all=true`: every access request, whatever its state).
async fn list_grants(
    State(api): Shared,
    Caller(who): Caller,
    Query(q): Query<GrantsQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = ReviewFilter {
        status: (!q.all).then_some(Status::Approved),
        kind: Some("access".into()),
        requester: None,
        limit: 1000,
    };
    let grants = api.approvals.list(&filter).await?;
    let now = Now::get();
    Ok(Json(json!({"grants": grants.iter().map(|r| review_view(&api.approvals, &who, r, now)).collect::<Vec<_>>()})))
}

async fn access_policies(State(api): Shared, Caller(who): Caller) -> Json<Value> {
    let policies: Vec<Value> = api
        .approvals
        .access_policies()
        .iter()
        .map(|a| {
            json!({
                "name": a.name,
                "description": a.description,
                "connections": a.scope.connections,
                "max_duration": a.max_duration,
                "approvers": a.review.approvers,
                "approvals": a.review.approvals,
                "you_may_request": a.scope.covers_caller(&who),
            })
        })
        .collect();
    Json(json!({"policies": policies}))
}

fn no_such_connection(name: &str) -> ApiError {
    // The same answer whether the connection is missing or not the caller's: nothing to enumerate.
    ApiError::not_found(
        &format!("no connection {name:?} that this token may use"),
        "connections are named in sluice's configuration; an operator can add you to one",
    )
}

/// What applies to the caller on a connection: rules, masked columns, detectors, reviews.
async fn connection_policy(
    State(api): Shared,
    Caller(who): Caller,
    Path(name): Path<String>,
) -> Result<Json<Permissions>, ApiError> {
    api.engine.permissions(&who, &name).map(Json).ok_or_else(|| no_such_connection(&name))
}

#[derive(Deserialize)]
struct ExplainRequest {
    sql: String,
}

/// The decision a statement would get for the caller on a connection, without running it.
async fn explain_statement(
    State(api): Shared,
    Caller(who): Caller,
    Path(name): Path<String>,
    Json(req): Json<ExplainRequest>,
) -> Result<Json<Explanation>, ApiError> {
    match api.engine.explain_statement(&who, &name, &req.sql) {
        Ok(explanation) => Ok(Json(explanation)),
        Err(ExplainError::NotUsable) => Err(no_such_connection(&name)),
        Err(ExplainError::NotSql) => Err(ApiError::bad_request(&format!(
            "connection {name:?} does not take SQL: only statements for a SQL connection can be explained"
        ))),
    }
}
