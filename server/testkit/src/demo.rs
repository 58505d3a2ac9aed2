//! Demo and benchmark data: realistic, varied events as applications send
//! them (JSON, through the normal ingest path). Deterministic for a seed.
//!
//! Several applications, users and services; sign-ins with failures, MFA
//! and lockouts; admin and policy changes; data access; MCP connections and
//! requests; tool invocations with latencies; plugin status with metrics;
//! infrastructure and network changes; notifications sent and failed;
//! security findings. Times follow a working-day rhythm over a period.

use custos_engine::time::{DAY_US, HOUR_US, rfc3339};
use serde_json::{Value, json};

use crate::Rng;

/// Draws from the kit's seeded generator.
trait Draw {
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64;
    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize;
    /// One of `items`.
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T;
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool;
    /// Log-normal around `median` (spread `sigma`).
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64;
}

impl Draw for Rng {
    fn unit(&mut self) -> f64 {
        self.f64()
    }

    fn below(&mut self, n: usize) -> usize {
        self.usize(..n.max(1))
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        // Box-Muller.
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        median * (sigma * z).exp()
    }
}

const FIRST: [&str; 16] = [
    "alice", "bruno", "chloe", "dmitri", "elena", "farid", "grace", "hiro", "ines", "jonas", "kemal", "lena", "mateo",
    "nora", "oscar", "priya",
];
const LAST: [&str; 8] = ["martin", "okafor", "nguyen", "schmidt", "garcia", "kowalski", "tanaka", "dubois"];
const APPS: [&str; 6] = ["billing-api", "crm-web", "hr-portal", "payments", "data-platform", "support-desk"];
const SERVICES: [&str; 5] = ["svc-billing", "svc-reports", "ci-runner", "backup-agent", "svc-sync"];
const TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];
const TOOLS: [(&str, f64); 8] = [
    ("search_docs", 120.0),
    ("run_sql", 340.0),
    ("read_file", 18.0),
    ("write_file", 35.0),
    ("http_fetch", 450.0),
    ("send_email", 900.0),
    ("create_ticket", 260.0),
    ("summarise", 1800.0),
];
const MCP_SERVERS: [&str; 4] = ["mcp-github", "mcp-jira", "mcp-postgres", "mcp-filesystem"];
const PLUGINS: [&str; 5] = ["sso-okta", "scanner-trivy", "export-s3", "geoip", "slack-bridge"];
const CHANNELS: [&str; 4] = ["email", "slack", "sms", "webhook"];
const USER_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
];

/// Users of the demo organisation: 128 people.
fn user(rng: &mut Rng) -> (String, String, String) {
    let (f, l) = (rng.below(FIRST.len()), rng.below(LAST.len()));
    let (first, last) = (FIRST[f], LAST[l]);
    let id = format!("u-{:03}", f * LAST.len() + l);
    let name = format!("{}{} {}{}", first[..1].to_uppercase(), &first[1..], last[..1].to_uppercase(), &last[1..]);
    let email = format!("{first}.{last}@example.com");
    (id, name, email)
}

fn ip(rng: &mut Rng) -> String {
    if rng.chance(0.8) {
        format!("10.{}.{}.{}", rng.below(4), rng.below(250), 1 + rng.below(250))
    } else {
        format!("{}.{}.{}.{}", 80 + rng.below(100), rng.below(256), rng.below(256), 1 + rng.below(254))
    }
}

/// How busy an hour is: working hours (08:00-18:00 UTC) four times the
/// night, weekends at 40%.
fn hour_weight(hour_start_us: i64) -> f64 {
    let hour = hour_start_us.div_euclid(HOUR_US).rem_euclid(24);
    let weekday = hour_start_us.div_euclid(DAY_US).rem_euclid(7); // 0 = Thursday 1970-01-01
    let mut w = if (8..18).contains(&hour) { 1.0 } else { 0.25 };
    if weekday == 2 || weekday == 3 {
        w *= 0.4; // Saturday, Sunday
    }
    w
}

/// A demo data set: `n` events over `[end - span, end)`, in time order
/// (as a system records them), following the working-day rhythm.
#[derive(Debug, Clone)]
pub struct Demo {
    seed: u64,
    n: u64,
    start_us: i64,
    end_us: i64,
    /// Cumulative share of events at the end of each hour of the period.
    cdf: Vec<f64>,
}

impl Demo {
    /// The set for `seed`.
    pub fn new(seed: u64, n: u64, end_us: i64, span_us: i64) -> Demo {
        let start_us = end_us - span_us.max(1);
        let hours = (span_us.max(1) as u64).div_ceil(HOUR_US as u64) as usize;
        let mut cdf = Vec::with_capacity(hours);
        let mut acc = 0.0;
        for h in 0..hours {
            let at = start_us + h as i64 * HOUR_US;
            // The last hour may be partial.
            let len = (end_us - at).min(HOUR_US) as f64 / HOUR_US as f64;
            acc += hour_weight(at) * len;
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Demo { seed, n: n.max(1), start_us, end_us, cdf }
    }

    /// When event `i` happened: non-decreasing in `i`.
    fn when(&self, i: u64) -> i64 {
        let u = (i as f64 + 0.5) / self.n as f64;
        let h = self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1);
        let lo = if h == 0 { 0.0 } else { self.cdf[h - 1] };
        let frac = ((u - lo) / (self.cdf[h] - lo).max(1e-12)).clamp(0.0, 1.0);
        let t = self.start_us + h as i64 * HOUR_US + (frac * HOUR_US as f64) as i64;
        t.clamp(self.start_us, self.end_us - 1)
    }

    /// Event number `i`: the same `(seed, i)` always gives the same event.
    pub fn event(&self, i: u64) -> Value {
        event_at(self.seed, i, self.when(i))
    }
}

fn event_at(seed: u64, i: u64, at: i64) -> Value {
    let mut rng = crate::rng(seed.wrapping_mul(0x1000_0000_01B3) ^ i);
    let (uid, uname, email) = user(&mut rng);
    let app = *rng.pick(&APPS);
    let tenant = *rng.pick(&TENANTS);
    let request_id = format!("req-{:016x}", rng.u64(..));
    let person = json!({
        "id": uid, "kind": "user", "name": uname, "ip": ip(&mut rng),
        "user_agent": *rng.pick(&USER_AGENTS), "session_id": format!("s-{:08x}", rng.u64(..) as u32),
    });
    let service = |rng: &mut Rng| json!({ "id": *rng.pick(&SERVICES), "kind": "service" });
    let roll = rng.unit();
    let (category, action, outcome, severity, actor, resource, channel, reason, metrics, details): (
        &str,
        String,
        &str,
        &str,
        Value,
        Value,
        &str,
        Option<&str>,
        Value,
        Value,
    );
    if roll < 0.22 {
        // Sign-in: mostly fine, some bad passwords, MFA after most, a few lockouts.
        category = "authentication";
        channel = "ui";
        actor = person;
        resource = json!({ "type": "application", "id": app });
        metrics = Value::Null;
        let r = rng.unit();
        if r < 0.55 {
            action = "user.login".into();
            let ok = rng.chance(0.88);
            outcome = if ok { "success" } else { "failure" };
            severity = if ok { "info" } else { "warning" };
            reason = (!ok).then_some("invalid credentials");
            details = json!({ "method": "password", "email": email });
        } else if r < 0.85 {
            action = "mfa.verify".into();
            let ok = rng.chance(0.95);
            outcome = if ok { "success" } else { "failure" };
            severity = if ok { "info" } else { "warning" };
            reason = (!ok).then_some("wrong one-time code");
            details = json!({ "factor": *rng.pick(&["totp", "webauthn", "push"]) });
        } else if r < 0.88 {
            action = "user.lockout".into();
            outcome = "success";
            severity = "error";
            reason = Some("5 failed sign-ins in 10 minutes");
            details = json!({ "failed_attempts": 5, "email": email });
        } else {
            action = (*rng.pick(&["user.logout", "session.expire", "user.password.change"])).into();
            outcome = "success";
            severity = "info";
            reason = None;
            details = Value::Null;
        }
    } else if roll < 0.27 {
        category = "authorization";
        channel = "api";
        actor = person;
        action = "access.check".into();
        let ok = rng.chance(0.8);
        outcome = if ok { "success" } else { "denied" };
        severity = if ok { "info" } else { "warning" };
        reason = (!ok).then_some("missing permission");
        resource = json!({ "type": "record", "id": format!("rec-{}", rng.below(5000)) });
        metrics = Value::Null;
        details =
            json!({ "permission": *rng.pick(&["invoice:read", "payroll:read", "customer:write", "report:export"]) });
    } else if roll < 0.32 {
        category = "admin";
        channel = "ui";
        actor = person;
        action = (*rng.pick(&["user.create", "user.roles.update", "api_key.create", "api_key.revoke", "user.disable"]))
            .into();
        outcome = if rng.chance(0.97) { "success" } else { "denied" };
        severity = "notice";
        reason = (outcome == "denied").then_some("requires admin");
        let target = user(&mut rng);
        resource = json!({ "type": "user", "id": target.0, "name": target.1 });
        metrics = Value::Null;
        details = json!({ "roles": ["viewer"], "target_email": target.2 });
    } else if roll < 0.35 {
        category = "policy";
        channel = "ui";
        actor = person;
        action = (*rng.pick(&["policy.update", "policy.create", "policy.delete"])).into();
        outcome = "success";
        severity = "notice";
        reason = None;
        resource = json!({ "type": "policy", "id": *rng.pick(&["password-policy", "session-timeout", "data-retention", "ip-allowlist"]) });
        metrics = Value::Null;
        details = json!({ "version": 1 + rng.below(40), "change": "threshold updated" });
    } else if roll < 0.47 {
        category = "data_access";
        channel = "api";
        actor = if rng.chance(0.7) { person } else { service(&mut rng) };
        action = (*rng.pick(&["record.read", "record.update", "report.view", "record.export"])).into();
        outcome = if rng.chance(0.97) { "success" } else { "denied" };
        severity = "info";
        reason = (outcome == "denied").then_some("row-level policy");
        resource = json!({ "type": "record", "id": format!("rec-{}", rng.below(5000)) });
        metrics = json!({ "duration_ms": (rng.lognormal(25.0, 0.8) * 10.0).round() / 10.0, "bytes": 200 + rng.below(20_000) });
        details = json!({ "fields": ["name", "email", "iban"] });
    } else if roll < 0.50 {
        category = "configuration";
        channel = "cli";
        actor = person;
        action = "config.change".into();
        outcome = "success";
        severity = "notice";
        reason = None;
        resource =
            json!({ "type": "setting", "id": *rng.pick(&["smtp.relay", "feature.flags", "rate_limit", "log_level"]) });
        metrics = Value::Null;
        details = json!({ "from": "old", "to": "new" });
    } else if roll < 0.55 {
        let infra = rng.chance(0.5);
        category = if infra { "infrastructure" } else { "network" };
        channel = "api";
        actor = service(&mut rng);
        action = if infra {
            (*rng.pick(&["deploy.finish", "instance.scale", "instance.restart", "volume.snapshot"])).into()
        } else {
            (*rng.pick(&["firewall.rule.update", "vpn.connect", "dns.record.update", "loadbalancer.update"])).into()
        };
        outcome = if rng.chance(0.95) { "success" } else { "error" };
        severity = if outcome == "success" { "notice" } else { "error" };
        reason = (outcome == "error").then_some("provider API timeout");
        resource = json!({ "type": if infra { "instance" } else { "network" }, "id": format!("{}-{}", if infra { "i" } else { "net" }, rng.below(40)) });
        metrics = json!({ "duration_ms": (rng.lognormal(4000.0, 0.7)).round() });
        details = json!({ "region": *rng.pick(&["eu-west-1", "eu-central-1", "us-east-1"]) });
    } else if roll < 0.67 {
        category = "mcp";
        channel = "mcp";
        actor = if rng.chance(0.6) {
            person
        } else {
            json!({ "id": "agent-assistant", "kind": "service", "name": "Assistant" })
        };
        let server = *rng.pick(&MCP_SERVERS);
        let r = rng.unit();
        action = if r < 0.15 {
            "mcp.connect"
        } else if r < 0.25 {
            "mcp.disconnect"
        } else {
            "mcp.request"
        }
        .into();
        outcome = if rng.chance(0.96) {
            "success"
        } else if rng.chance(0.5) {
            "error"
        } else {
            "denied"
        };
        severity = if outcome == "success" { "info" } else { "warning" };
        reason = match outcome {
            "error" => Some("upstream closed the connection"),
            "denied" => Some("scope not granted"),
            _ => None,
        };
        resource = json!({ "type": "mcp_server", "id": server });
        metrics = json!({ "duration_ms": (rng.lognormal(80.0, 0.9) * 10.0).round() / 10.0 });
        details = json!({ "method": *rng.pick(&["tools/list", "tools/call", "resources/read", "prompts/get"]), "protocol": "2025-06-18" });
    } else if roll < 0.82 {
        category = "tool";
        channel = "mcp";
        actor = if rng.chance(0.5) {
            person
        } else {
            json!({ "id": "agent-assistant", "kind": "service", "name": "Assistant" })
        };
        let (tool, median) = *rng.pick(&TOOLS);
        action = "tool.invoke".into();
        outcome = if rng.chance(0.94) { "success" } else { "error" };
        severity = if outcome == "success" { "info" } else { "warning" };
        reason = (outcome == "error").then_some("tool returned an error");
        resource = json!({ "type": "tool", "id": tool });
        metrics = json!({ "duration_ms": (rng.lognormal(median, 0.6) * 10.0).round() / 10.0, "status_code": if outcome == "success" { 200 } else { 500 } });
        details = json!({ "arguments": { "query": "quarterly report" } });
    } else if roll < 0.86 {
        category = "plugin";
        channel = "system";
        actor = json!({ "id": "plugin-host", "kind": "system" });
        let plugin = *rng.pick(&PLUGINS);
        action = (*rng.pick(&["plugin.status", "plugin.status", "plugin.status", "plugin.reload"])).into();
        // One plugin is flaky.
        let bad = if plugin == "scanner-trivy" { 0.2 } else { 0.02 };
        outcome = if rng.chance(bad) { "error" } else { "success" };
        severity = if outcome == "success" { "info" } else { "error" };
        reason = (outcome == "error").then_some("health check failed");
        resource = json!({ "type": "plugin", "id": plugin });
        metrics = json!({ "duration_ms": (rng.lognormal(15.0, 0.5) * 10.0).round() / 10.0, "bytes": 1000 + rng.below(100_000) });
        details =
            json!({ "version": format!("1.{}.{}", rng.below(9), rng.below(20)), "memory_mb": 40 + rng.below(300) });
    } else if roll < 0.96 {
        category = "notification";
        channel = "api";
        actor = json!({ "id": "notifier", "kind": "service" });
        let ch = *rng.pick(&CHANNELS);
        action = "notification.send".into();
        let fail = if ch == "sms" { 0.08 } else { 0.02 };
        outcome = if rng.chance(fail) { "failure" } else { "success" };
        severity = if outcome == "success" { "info" } else { "warning" };
        reason = (outcome == "failure").then_some("recipient rejected");
        resource = json!({ "type": "channel", "id": ch });
        metrics = json!({ "duration_ms": (rng.lognormal(300.0, 0.8)).round() });
        details =
            json!({ "template": *rng.pick(&["password-reset", "invoice-ready", "alert-digest"]), "recipient": email });
    } else {
        category = "security";
        channel = "api";
        actor = json!({ "id": "scanner", "kind": "service" });
        action = (*rng.pick(&["threat.detected", "vulnerability.found", "secret.leak.detected"])).into();
        outcome = "success";
        severity = *rng.pick(&["warning", "error", "critical"]);
        reason = None;
        resource = json!({ "type": "host", "id": format!("host-{}", rng.below(60)) });
        metrics = Value::Null;
        details = json!({ "rule": format!("R{}", 100 + rng.below(50)) });
    }
    let mut e = json!({
        "id": format!("{:08x}-{:04x}-7{:03x}-8{:03x}-{:012x}", seed as u32, (i >> 48) as u16, (i >> 36) as u16 & 0xfff, (i >> 24) as u16 & 0xfff, i & 0xffff_ffff_ffff),
        "occurred_at": rfc3339(at),
        "category": category,
        "action": action,
        "outcome": outcome,
        "severity": severity,
        "actor": actor,
        "resource": resource,
        "tenant": tenant,
        "source": { "application": app, "host": format!("{app}-{}", rng.below(4)), "channel": channel },
        "correlation": { "request_id": request_id },
    });
    if let Some(r) = reason {
        e["reason"] = r.into();
    }
    if !metrics.is_null() {
        e["metrics"] = metrics;
    }
    if !details.is_null() {
        e["details"] = details;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_deterministic_varied_and_valid() {
        let end = 1_790_000_000_000_000;
        let span = 30 * 86_400_000_000;
        let demo = Demo::new(7, 2000, end, span);
        assert_eq!(demo.event(42), Demo::new(7, 2000, end, span).event(42));
        assert_ne!(demo.event(42), Demo::new(8, 2000, end, span).event(42));
        let items: Vec<Value> = (0..2000).map(|i| demo.event(i)).collect();
        let limits = custos_engine::events::validate::Limits { max_past_days: 400, ..Default::default() };
        let valid =
            custos_engine::events::validate::validate_batch(&items[..1000], end, &limits).expect("valid events");
        assert_eq!(valid.len(), 1000);
        let mut categories = std::collections::BTreeSet::new();
        let mut ids = std::collections::BTreeSet::new();
        let mut previous = i64::MIN;
        let mut working_hours = 0;
        for e in &items {
            categories.insert(e["category"].as_str().unwrap().to_owned());
            assert!(ids.insert(e["id"].as_str().unwrap().to_owned()), "ids are unique");
            let at =
                chrono::DateTime::parse_from_rfc3339(e["occurred_at"].as_str().unwrap()).unwrap().timestamp_micros();
            assert!(at < end && at >= end - span);
            assert!(at >= previous, "in time order");
            previous = at;
            if (8..18).contains(&at.div_euclid(3_600_000_000).rem_euclid(24)) {
                working_hours += 1;
            }
        }
        // 10 of 24 hours carry 4 times the weight: about 74% of the events.
        assert!((1300..1650).contains(&working_hours), "{working_hours}");
        assert_eq!(categories.len(), 13, "{categories:?}");
    }
}
