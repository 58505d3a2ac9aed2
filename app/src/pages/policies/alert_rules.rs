//! The alert rules editor: the rules in force as rows (on/off, edit,
//! remove), a form per rule type (immediate, threshold, distinct, sequence,
//! absence; no JSON needed), the dry-run on the last days beside it (how
//! many alerts each rule would have opened, by the evaluator that runs
//! live), a reason, and a proposal for review.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;
use serde_json::{Value, json};

use super::TestReportView;
use crate::client::{ClientError, get_json, send_json};
use crate::event::{PolicyKindView, Proposal, TestReport};

const TYPES: [(&str, &str); 5] = [
    ("immediate", "Immediate: every match"),
    ("threshold", "Threshold: N matches in a window"),
    ("distinct", "Distinct: N different values in a window"),
    ("sequence", "Sequence: a match, then another"),
    ("absence", "Absence: no match for a while"),
];
const SEVERITIES: [&str; 6] = ["info", "notice", "warning", "error", "critical", "alert"];

fn list(v: &Value) -> String {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

fn split(s: &str) -> Vec<String> {
    s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect()
}

/// One line for a rule.
fn describe(r: &Value) -> String {
    let c = &r["condition"];
    let window =
        |k: &str| c[k].as_u64().map(|w| if w % 60 == 0 { format!("{} min", w / 60) } else { format!("{w} s") });
    let what = {
        let a = list(&r["matcher"]["actions"]);
        let o = list(&r["matcher"]["outcomes"]);
        match (a.is_empty(), o.is_empty()) {
            (true, true) => "any event".to_owned(),
            (false, true) => a,
            (true, false) => format!("outcome {o}"),
            (false, false) => format!("{a} ({o})"),
        }
    };
    let per = list(&r["group_by"]);
    let per = if per.is_empty() { String::new() } else { format!(" per {per}") };
    match c["type"].as_str().unwrap_or_default() {
        "threshold" => format!("{} × {what} in {}{per}", c["count"], window("window_secs").unwrap_or_default()),
        "distinct" => format!(
            "{} different {} of {what} in {}{per}",
            c["count"],
            c["field"].as_str().unwrap_or_default(),
            window("window_secs").unwrap_or_default()
        ),
        "sequence" => format!(
            "{what}, then {} within {}{per}",
            list(&c["then"]["actions"]),
            window("window_secs").unwrap_or_default()
        ),
        "absence" => format!("no {what} for {}{per}", window("window_secs").unwrap_or_default()),
        _ => format!("every {what}{per}"),
    }
}

/// The form's fields for one rule.
#[derive(Clone, Copy)]
struct Form {
    id: RwSignal<String>,
    name: RwSignal<String>,
    severity: RwSignal<String>,
    kind: RwSignal<String>,
    actions: RwSignal<String>,
    outcomes: RwSignal<String>,
    categories: RwSignal<String>,
    applications: RwSignal<String>,
    detail_path: RwSignal<String>,
    detail_op: RwSignal<String>,
    detail_value: RwSignal<String>,
    count: RwSignal<String>,
    window_mins: RwSignal<String>,
    field: RwSignal<String>,
    then_actions: RwSignal<String>,
    then_outcomes: RwSignal<String>,
    group_by: RwSignal<String>,
    cooldown_mins: RwSignal<String>,
    /// `8-18`: only outside these UTC hours.
    off_hours: RwSignal<String>,
    /// The rule being edited (its index), or a new one.
    editing: RwSignal<Option<usize>>,
}

impl Form {
    fn clear(&self) {
        self.load(&json!({"severity": "warning", "condition": {"type": "threshold", "count": 5, "window_secs": 300},
            "group_by": ["actor"], "cooldown_secs": 900}));
        self.editing.set(None);
    }

    fn load(&self, r: &Value) {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let c = &r["condition"];
        self.id.set(s(&r["id"]));
        self.name.set(s(&r["name"]));
        self.severity.set(r["severity"].as_str().unwrap_or("warning").to_owned());
        self.kind.set(c["type"].as_str().unwrap_or("threshold").to_owned());
        self.actions.set(list(&r["matcher"]["actions"]));
        self.outcomes.set(list(&r["matcher"]["outcomes"]));
        self.categories.set(list(&r["matcher"]["categories"]));
        self.applications.set(list(&r["matcher"]["applications"]));
        let d = &r["matcher"]["details"][0];
        self.detail_path.set(s(&d["path"]));
        self.detail_op.set(d["op"].as_str().unwrap_or("equals").to_owned());
        self.detail_value.set(match &d["value"] {
            Value::Null => String::new(),
            Value::String(x) => x.clone(),
            other => other.to_string(),
        });
        self.count.set(c["count"].as_u64().map(|n| n.to_string()).unwrap_or_else(|| "5".into()));
        self.window_mins
            .set(c["window_secs"].as_u64().map(|w| (w as f64 / 60.0).to_string()).unwrap_or_else(|| "5".into()));
        self.field.set(c["field"].as_str().unwrap_or("actor").to_owned());
        self.then_actions.set(list(&c["then"]["actions"]));
        self.then_outcomes.set(list(&c["then"]["outcomes"]));
        self.group_by.set(list(&r["group_by"]));
        self.off_hours.set(match r["matcher"]["outside_hours"].as_array() {
            Some(h) if h.len() == 2 => format!("{}-{}", h[0], h[1]),
            _ => String::new(),
        });
        self.cooldown_mins
            .set(r["cooldown_secs"].as_u64().map(|w| (w as f64 / 60.0).to_string()).unwrap_or_else(|| "0".into()));
    }

    /// The rule as the server takes it (the server checks it and names
    /// what is wrong).
    fn rule(&self, enabled: bool) -> Value {
        let g = |s: RwSignal<String>| s.get_untracked();
        let secs = |s: RwSignal<String>| (g(s).trim().parse::<f64>().unwrap_or(0.0) * 60.0).round() as u64;
        let mut matcher = json!({
            "actions": split(&g(self.actions)), "outcomes": split(&g(self.outcomes)),
            "categories": split(&g(self.categories)), "applications": split(&g(self.applications)),
        });
        if let Some((a, b)) = g(self.off_hours).split_once('-') {
            matcher["outside_hours"] =
                json!([a.trim().parse::<u8>().unwrap_or(0), b.trim().parse::<u8>().unwrap_or(0)]);
        }
        if !g(self.detail_path).trim().is_empty() {
            let raw = g(self.detail_value);
            let value = match g(self.detail_op).as_str() {
                "greater_than" => raw.trim().parse::<f64>().map(Value::from).unwrap_or(Value::String(raw.clone())),
                "contains" => Value::String(raw.clone()),
                _ => serde_json::from_str::<Value>(&raw).unwrap_or(Value::String(raw.clone())),
            };
            matcher["details"] =
                json!([{ "path": g(self.detail_path).trim(), "op": g(self.detail_op), "value": value }]);
        }
        let count = g(self.count).trim().parse::<u64>().unwrap_or(0);
        let condition = match g(self.kind).as_str() {
            "threshold" => json!({"type": "threshold", "count": count, "window_secs": secs(self.window_mins)}),
            "distinct" => {
                json!({"type": "distinct", "count": count, "field": g(self.field).trim(), "window_secs": secs(self.window_mins)})
            }
            "sequence" => json!({"type": "sequence", "window_secs": secs(self.window_mins),
                "then": {"actions": split(&g(self.then_actions)), "outcomes": split(&g(self.then_outcomes))}}),
            "absence" => json!({"type": "absence", "window_secs": secs(self.window_mins)}),
            _ => json!({"type": "immediate"}),
        };
        json!({
            "id": g(self.id).trim(), "name": g(self.name).trim(), "enabled": enabled, "severity": g(self.severity),
            "matcher": matcher, "condition": condition, "group_by": split(&g(self.group_by)),
            "cooldown_secs": secs(self.cooldown_mins),
        })
    }
}

/// The editor page.
#[component]
pub fn AlertRulesEditorPage() -> impl IntoView {
    let navigate = use_navigate();
    let kind = RwSignal::new(None::<Result<PolicyKindView, ClientError>>);
    let rules = RwSignal::new(Vec::<Value>::new());
    let based_on = RwSignal::new(0u64);
    let form = Form {
        id: RwSignal::new(String::new()),
        name: RwSignal::new(String::new()),
        severity: RwSignal::new(String::new()),
        kind: RwSignal::new(String::new()),
        actions: RwSignal::new(String::new()),
        outcomes: RwSignal::new(String::new()),
        categories: RwSignal::new(String::new()),
        applications: RwSignal::new(String::new()),
        detail_path: RwSignal::new(String::new()),
        detail_op: RwSignal::new(String::new()),
        detail_value: RwSignal::new(String::new()),
        count: RwSignal::new(String::new()),
        window_mins: RwSignal::new(String::new()),
        field: RwSignal::new(String::new()),
        then_actions: RwSignal::new(String::new()),
        then_outcomes: RwSignal::new(String::new()),
        group_by: RwSignal::new(String::new()),
        cooldown_mins: RwSignal::new(String::new()),
        off_hours: RwSignal::new(String::new()),
        editing: RwSignal::new(None),
    };
    form.clear();
    Effect::new(move |_| {
        leptos::task::spawn_local(async move {
            let k = get_json::<PolicyKindView>("/api/policies/alert_rules").await;
            if let Ok(k) = &k {
                based_on.set(k.active.version);
                rules.set(k.active.content["rules"].as_array().cloned().unwrap_or_default());
            }
            kind.set(Some(k));
        });
    });
    let report = RwSignal::new(None::<Result<TestReport, ClientError>>);
    let testing = RwSignal::new(false);
    let run_test = move || {
        testing.set(true);
        let body = json!({ "content": { "rules": rules.get_untracked() } }).to_string();
        leptos::task::spawn_local(async move {
            report.set(Some(send_json::<TestReport>("POST", "/api/policies/alert_rules/test", Some(body)).await));
            testing.set(false);
        });
    };
    let reason = RwSignal::new(String::new());
    let submit_error = RwSignal::new(None::<String>);
    let submitting = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        submitting.set(true);
        submit_error.set(None);
        let body = json!({
            "content": { "rules": rules.get_untracked() }, "based_on": based_on.get_untracked(), "reason": reason.get_untracked(),
        })
        .to_string();
        let navigate = navigate.clone();
        leptos::task::spawn_local(async move {
            match send_json::<Proposal>("POST", "/api/policies/alert_rules/proposals", Some(body)).await {
                Ok(p) => navigate(&format!("/policies/proposals/{}", p.id), Default::default()),
                Err(e) => submit_error.set(Some(e.to_string())),
            }
            submitting.set(false);
        });
    };
    view! {
        <Title text="Alert rules"/>
        <p><a href="/policies">"← Policies"</a></p>
        <h1>"Alert rules"</h1>
        <p class="muted">"Evaluated on every event the ledger commits. Change the list, try it on the last 7 days, and submit it for review: a second person approves it before it is in force."</p>
        {move || match kind.get() {
            None => view! { <p class="muted">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            Some(Ok(k)) => view! { <p class="muted small">{format!("Version {} in force: {}", k.active.version, k.active.summary)}</p> }.into_any(),
        }}
        <div class="split">
            <section class="panel">
                <h2>"Rules"</h2>
                <RulesTable rules=rules form=form/>
                <RuleForm form=form rules=rules run_test=Callback::new(move |()| run_test())/>
            </section>
            <DryRun report=report testing=testing run_test=Callback::new(move |()| run_test())/>
        </div>
        <section class="panel">
            <h2>"Submit for review"</h2>
            <form class="stack narrow" on:submit=submit data-testid="propose-form">
                <label>"Reason (required; recorded in the ledger)"
                    <input type="text" data-testid="reason" prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))/>
                </label>
                <div><button type="submit" class="primary" data-testid="submit-proposal" disabled=move || submitting.get()>"Submit for review"</button></div>
                {move || submit_error.get().map(|e| view! { <p class="error" role="alert" data-testid="submit-error">{e}</p> })}
            </form>
        </section>
    }
}

fn text_field(label: &'static str, sig: RwSignal<String>, testid: &'static str, hint: &'static str) -> impl IntoView {
    view! {
        <label>{label}<input type="text" data-testid=testid placeholder=hint prop:value=move || sig.get() on:input=move |ev| sig.set(event_target_value(&ev))/></label>
    }
}

#[component]
fn RulesTable(rules: RwSignal<Vec<Value>>, form: Form) -> impl IntoView {
    let f2 = form;
    view! {
                <table class="data" data-testid="rules">
                    <thead><tr><th>"On"</th><th>"Rule"</th><th>"Looks for"</th><th>"Severity"</th><th></th></tr></thead>
                    <tbody>
                        {move || rules.get().into_iter().enumerate().map(|(i, r)| {
                            let on = r["enabled"].as_bool().unwrap_or(true);
                            let id = r["id"].as_str().unwrap_or_default().to_owned();
                            let f = f2;
                            let r2 = r.clone();
                            view! {
                                <tr data-testid="rule" data-rule=id.clone()>
                                    <td><input type="checkbox" data-testid="rule-enabled" prop:checked=on
                                        on:change=move |ev| { let v = event_target_checked(&ev); rules.update(|l| if let Some(x) = l.get_mut(i) { x["enabled"] = json!(v) }); }/></td>
                                    <td><strong>{r["name"].as_str().unwrap_or_default().to_owned()}</strong><br/><code class="small">{id.clone()}</code></td>
                                    <td class="small">{describe(&r)}</td>
                                    <td><span class=format!("tag sev-{}", r["severity"].as_str().unwrap_or_default())>{r["severity"].as_str().unwrap_or_default().to_owned()}</span></td>
                                    <td class="actions">
                                        <button type="button" class="small" data-testid="edit-rule" on:click=move |_| { f.load(&r2); f.editing.set(Some(i)); }>"Edit"</button>
                                        <button type="button" class="small danger" data-testid="remove-rule" on:click=move |_| rules.update(|l| { if i < l.len() { l.remove(i); } })>"Remove"</button>
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
    }
    .into_any()
}

#[component]
fn RuleForm(form: Form, rules: RwSignal<Vec<Value>>, run_test: Callback<()>) -> impl IntoView {
    let form_error = RwSignal::new(None::<String>);
    let f = form;
    let save_rule = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        form_error.set(None);
        let editing = f.editing.get_untracked();
        let enabled = editing
            .and_then(|i| rules.get_untracked().get(i).map(|r| r["enabled"].as_bool().unwrap_or(true)))
            .unwrap_or(true);
        let rule = f.rule(enabled);
        let id = rule["id"].as_str().unwrap_or_default().to_owned();
        if rules.get_untracked().iter().enumerate().any(|(i, r)| r["id"] == id.as_str() && Some(i) != editing) {
            form_error.set(Some(format!("id: `{id}` is used by another rule")));
            return;
        }
        rules.update(|list| match editing {
            Some(i) if i < list.len() => list[i] = rule,
            _ => list.push(rule),
        });
        f.clear();
        // The dry-run beside the form follows the list.
        run_test.run(());
    };
    let text = text_field;
    let fk = form.kind;
    let f3 = form;
    view! {
                <h2>{move || if form.editing.get().is_some() { "Edit the rule" } else { "Add a rule" }}</h2>
                <form class="stack narrow" on:submit=save_rule data-testid="rule-form">
                    {text("Id (a-z, 0-9, _)", form.id, "rule-id", "failed_logins_per_actor")}
                    {text("Name", form.name, "rule-name", "5 failed sign-ins per actor in 5 minutes")}
                    <label>"Severity"
                        <select data-testid="rule-severity" on:change=move |ev| form.severity.set(event_target_value(&ev)) prop:value=move || form.severity.get()>
                            {SEVERITIES.iter().map(|s| view! { <option value=*s>{*s}</option> }).collect_view()}
                        </select>
                    </label>
                    <label>"Type"
                        <select data-testid="rule-type" on:change=move |ev| fk.set(event_target_value(&ev)) prop:value=move || fk.get()>
                            {TYPES.iter().map(|(k, l)| view! { <option value=*k>{*l}</option> }).collect_view()}
                        </select>
                    </label>
                    <fieldset><legend>"Events it looks at (each list: any of; empty: any)"</legend>
                        {text("Actions (user.login, user.*)", form.actions, "rule-actions", "user.login")}
                        {text("Outcomes", form.outcomes, "rule-outcomes", "failure, denied")}
                        {text("Categories", form.categories, "rule-categories", "authentication")}
                        {text("Source applications", form.applications, "rule-applications", "")}
                        {text("Only outside these hours, UTC (e.g. 8-18)", form.off_hours, "rule-off-hours", "")}
                        <div class="inline">
                            {text("details.", form.detail_path, "rule-detail-path", "rows")}
                            <select data-testid="rule-detail-op" on:change=move |ev| form.detail_op.set(event_target_value(&ev)) prop:value=move || form.detail_op.get()>
                                <option value="equals">"equals"</option>
                                <option value="contains">"contains"</option>
                                <option value="greater_than">"greater than"</option>
                            </select>
                            {text("value", form.detail_value, "rule-detail-value", "")}
                        </div>
                    </fieldset>
                    {move || (fk.get() == "threshold" || fk.get() == "distinct").then(|| text("At least (count)", form.count, "rule-count", "5"))}
                    {move || (fk.get() == "distinct").then(|| text("Different values of (actor, actor.ip, details.<path>…)", form.field, "rule-field", "actor"))}
                    {move || (fk.get() == "sequence").then(|| view! {
                        {text("Then actions", form.then_actions, "rule-then-actions", "user.login")}
                        {text("Then outcomes", form.then_outcomes, "rule-then-outcomes", "success")}
                    })}
                    {move || (fk.get() != "immediate").then(|| text("Within (minutes)", form.window_mins, "rule-window", "5"))}
                    {text("Per (group by: actor, actor.ip, tenant, application, details.<path>…)", form.group_by, "rule-group-by", "actor")}
                    {text("Cooldown (minutes: a group does not fire again within it)", form.cooldown_mins, "rule-cooldown", "15")}
                    <div class="actions">
                        <button type="submit" class="primary" data-testid="save-rule">{move || if form.editing.get().is_some() { "Update the rule" } else { "Add the rule" }}</button>
                        <button type="button" on:click=move |_| f3.clear()>"Clear"</button>
                    </div>
                    {move || form_error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                </form>
    }
    .into_any()
}

#[component]
fn DryRun(
    report: RwSignal<Option<Result<TestReport, ClientError>>>,
    testing: RwSignal<bool>,
    run_test: Callback<()>,
) -> impl IntoView {
    view! {
            <section class="panel">
                <h2>"Dry-run: the last 7 days"</h2>
                <p class="muted small">"How many alerts each rule would have opened, by the evaluator that runs live, with the rules in force and with this list."</p>
                <button type="button" data-testid="run-test" disabled=move || testing.get() on:click=move |_| run_test.run(())>{move || if testing.get() { "Running…" } else { "Try on the last 7 days" }}</button>
                {move || report.get().map(|r| match r {
                    Ok(r) => view! { <TestReportView report=r/> }.into_any(),
                    Err(e) => view! { <p class="error" role="alert" data-testid="test-error">{e.to_string()}</p> }.into_any(),
                })}
            </section>
    }
    .into_any()
}
