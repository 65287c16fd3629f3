//! `sluice review …` and `sluice access …`: clients of a running sluice's REST API, acting as the
//! identity of the token in `SLUICE_TOKEN`.

use crate::display::{one_line, out, print_json, table, timestamp};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::Path;

#[derive(Args)]
pub struct ApiArgs {
    /// The API of the running sluice (default: `api.public_url`, or `api.listen`, from the config).
    #[arg(long, env = "SLUICE_URL")]
    url: Option<String>,
    /// The token to act with (its identity approves, denies, requests).
    #[arg(long = "token", env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a summary.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum ReviewCommand {
    /// Reviews, newest first (pending ones by default).
    List {
        /// pending, approved, denied, expired, consumed, revoked or all.
        #[arg(long, default_value = "pending")]
        status: String,
        /// Only reviews you asked for.
        #[arg(long)]
        mine: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One review: the exact statement, who asked, the votes and its history.
    Show {
        /// The review's number (#N in notices and listings).
        id: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Approve a review (a held statement is released once enough approvers agree).
    Approve {
        /// The review's number (#N in notices and listings).
        id: i64,
        /// A note kept in the review's history.
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Deny a review; the reason is shown to the requester.
    Deny {
        /// The review's number (#N in notices and listings).
        id: i64,
        /// Why: shown to the requester in their refusal.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
pub enum AccessCommand {
    /// Ask for time-boxed access under an access policy; an approver decides it like any review.
    Request {
        /// The connection to get access to.
        #[arg(long)]
        connection: String,
        /// The access policy (needed only when more than one could apply).
        #[arg(long)]
        policy: Option<String>,
        /// How long, e.g. 30m or 2h.
        #[arg(long)]
        duration: String,
        /// Why: shown to the approvers.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Access grants in force (with --all: every access request).
    List {
        /// Every access request, whatever its state, not only grants in force.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// End a grant early (the requester or an approver).
    Revoke {
        /// The grant's number (its review's #N).
        id: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The access policies one can ask for.
    Policies {
        #[command(flatten)]
        api: ApiArgs,
    },
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(config_path: &Path, args: &ApiArgs) -> Result<Client> {
        // The running instance of this configuration knows its API's real address (its port may
        // have been chosen by the system); otherwise the configuration says where it listens.
        let base = match (&args.url, crate::instance::of_config(config_path).and_then(|i| i.api)) {
            (Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, Some(api)) => api,
            (None, None) => crate::targets::load_config(config_path)
                .map(|c| c.api.base_url())
                .with_context(|| "cannot tell where the API is: pass --url or SLUICE_URL, or a readable --config")?,
        };
        let token = args
            .token
            .clone()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| anyhow!("set SLUICE_TOKEN (or --token) to a sluice token; its identity is who acts"))?;
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
        Ok(Client { http, base, token })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(self.token.trim());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("cannot reach sluice's API at {}", self.base))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value["error"].as_str().unwrap_or("no details");
            match value["hint"].as_str() {
                Some(hint) => bail!("{message} ({status})\nhint: {hint}"),
                None => bail!("{message} ({status})"),
            }
        }
        Ok(value)
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

pub async fn review(config_path: &Path, cmd: ReviewCommand) -> Result<()> {
    match cmd {
        ReviewCommand::List { status, mine, api } => {
            let client = Client::new(config_path, &api)?;
            let value = client.get(&format!("/api/v1/reviews?status={status}&mine={mine}")).await?;
            if api.json {
                return print_json(&value);
            }
            print_reviews(value["reviews"].as_array().map(Vec::as_slice).unwrap_or_default());
        }
        ReviewCommand::Show { id, api } => {
            let value = Client::new(config_path, &api)?.get(&format!("/api/v1/reviews/{id}")).await?;
            if api.json {
                return print_json(&value);
            }
            print_review(&value);
        }
        ReviewCommand::Approve { id, comment, api } => {
            let client = Client::new(config_path, &api)?;
            let value = client.post(&format!("/api/v1/reviews/{id}/approve"), json!({"comment": comment})).await?;
            if api.json {
                return print_json(&value);
            }
            match value["outcome"]["result"].as_str() {
                Some("counted") => out!(
                    "review #{id}: approval counted ({} of {} needed)",
                    value["outcome"]["approvals"],
                    value["outcome"]["needed"]
                ),
                _ => out!("review #{id}: approved"),
            }
        }
        ReviewCommand::Deny { id, reason, api } => {
            let client = Client::new(config_path, &api)?;
            let value = client.post(&format!("/api/v1/reviews/{id}/deny"), json!({"reason": reason})).await?;
            if api.json {
                return print_json(&value);
            }
            out!("review #{id}: denied");
        }
    }
    Ok(())
}

pub async fn access(config_path: &Path, cmd: AccessCommand) -> Result<()> {
    match cmd {
        AccessCommand::Request { connection, policy, duration, reason, api } => {
            let client = Client::new(config_path, &api)?;
            let body = json!({"connection": connection, "policy": policy, "duration": duration, "reason": reason});
            let value = client.post("/api/v1/access", body).await?;
            if api.json {
                return print_json(&value);
            }
            out!(
                "access request #{} for policy {} on {} ({}) is pending; an approver runs `sluice review approve {}`",
                value["id"],
                value["subject"]["policy"].as_str().unwrap_or("?"),
                connection,
                value["subject"]["duration"].as_str().unwrap_or("?"),
                value["id"]
            );
        }
        AccessCommand::List { all, api } => {
            let value = Client::new(config_path, &api)?.get(&format!("/api/v1/access?all={all}")).await?;
            if api.json {
                return print_json(&value);
            }
            print_reviews(value["grants"].as_array().map(Vec::as_slice).unwrap_or_default());
        }
        AccessCommand::Revoke { id, api } => {
            let client = Client::new(config_path, &api)?;
            let value = client.post(&format!("/api/v1/reviews/{id}/revoke"), json!({})).await?;
            if api.json {
                return print_json(&value);
            }
            out!("access grant #{id}: revoked");
        }
        AccessCommand::Policies { api } => {
            let value = Client::new(config_path, &api)?.get("/api/v1/access/policies").await?;
            if api.json {
                return print_json(&value);
            }
            let rows: Vec<Vec<String>> = value["policies"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    vec![
                        text(&p["name"]),
                        list(&p["connections"]),
                        text(&p["max_duration"]),
                        list(&p["approvers"]),
                        text(&p["you_may_request"]),
                        text(&p["description"]),
                    ]
                })
                .collect();
            table(&["POLICY", "CONNECTIONS", "MAX", "APPROVERS", "YOU MAY ASK", "DESCRIPTION"], &rows);
        }
    }
    Ok(())
}

fn print_reviews(reviews: &[Value]) {
    let rows: Vec<Vec<String>> = reviews
        .iter()
        .map(|r| {
            vec![
                format!("#{}", r["id"]),
                text(&r["status"]),
                text(&r["requester"]),
                text(&r["connection"]),
                text(&r["rule"]),
                r["created_at_us"].as_i64().map(timestamp).unwrap_or_default(),
                one_line(&subject(r), 60),
            ]
        })
        .collect();
    table(&["ID", "STATUS", "REQUESTER", "CONNECTION", "RULE", "CREATED", "WHAT"], &rows);
}

fn print_review(r: &Value) {
    out!("review #{} ({})", r["id"], text(&r["status"]));
    out!("  requester:  {} on connection {}", text(&r["requester"]), text(&r["connection"]));
    out!("  rule:       {} — {}", text(&r["rule"]), text(&r["reason"]));
    match r["subject"]["kind"].as_str() {
        Some("statement") => {
            out!("  statement ({}):", text(&r["subject"]["hash"]));
            for line in text(&r["subject"]["text"]).lines() {
                out!("    {line}");
            }
        }
        _ => out!("  access:     policy {} for {}", text(&r["subject"]["policy"]), text(&r["subject"]["duration"])),
    }
    out!(
        "  approvers:  {} of groups {} ({} so far)",
        r["approvals_needed"],
        list(&r["approvers"]),
        r["votes"].as_array().map_or(0, Vec::len)
    );
    if let Some(at) = r["expires_at_us"].as_i64() {
        out!("  expires:    {}", timestamp(at));
    }
    if let Some(until) = r["valid_until_us"].as_i64() {
        out!("  valid until {}", timestamp(until));
    }
    if let Some(reason) = r["denial_reason"].as_str() {
        out!("  denied by {}: {reason}", text(&r["denied_by"]));
    }
    out!("  link:       {}", text(&r["url"]));
    out!("  history:");
    for e in r["events"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let comment = e["comment"].as_str().map(|c| format!(" — {c}")).unwrap_or_default();
        out!(
            "    {}  {:<16} {}{comment}",
            e["at"].as_i64().map(timestamp).unwrap_or_default(),
            text(&e["action"]),
            text(&e["actor"])
        );
    }
}

fn subject(r: &Value) -> String {
    match r["subject"]["kind"].as_str() {
        Some("statement") => text(&r["subject"]["text"]),
        _ => format!("access: {} for {}", text(&r["subject"]["policy"]), text(&r["subject"]["duration"])),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> String {
    v.as_array().map(|a| a.iter().map(text).collect::<Vec<_>>().join(",")).unwrap_or_default()
}
