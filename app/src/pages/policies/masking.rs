//! The masking editor: the rules as rows (detector, action, keep last N,
//! keep the original, on/off), reordered, added and removed; a live preview
//! on typed text; a dry-run on recent events; a reason; submitted as a
//! proposal for review.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;

use super::TestReportView;
use crate::client::{ClientError, get_json, send_json};
use crate::event::{Detector, MaskAction, MaskRule, PolicyKindView, Proposal, TestReport};

const DETECTORS: [(Detector, &str); 7] = [
    (Detector::SecretKey, "Secret keys (details keys named like secrets)"),
    (Detector::PaymentCard, "Payment card numbers"),
    (Detector::Iban, "IBANs"),
    (Detector::UsSsn, "US social security numbers"),
    (Detector::Email, "E-mail addresses"),
    (Detector::Phone, "Phone numbers"),
    (Detector::IpAddress, "IP addresses"),
];

fn detector_of(s: &str) -> Option<Detector> {
    DETECTORS.iter().map(|(d, _)| *d).find(|d| d.as_str() == s)
}

fn action_name(a: MaskAction) -> &'static str {
    match a {
        MaskAction::Redact => "redact",
        MaskAction::Partial { .. } => "partial",
        MaskAction::Pseudonymize => "pseudonymize",
    }
}

/// The masking editor page.
#[component]
pub fn MaskingEditorPage() -> impl IntoView {
    let navigate = use_navigate();
    let kind = RwSignal::new(None::<Result<PolicyKindView, ClientError>>);
    let rules = RwSignal::new(Vec::<MaskRule>::new());
    let based_on = RwSignal::new(0u64);
    Effect::new(move |_| {
        leptos::task::spawn_local(async move {
            let k = get_json::<PolicyKindView>("/api/policies/masking").await;
            if let Ok(k) = &k {
                based_on.set(k.active.version);
                if let Ok(list) = serde_json::from_value::<Vec<MaskRule>>(k.active.content["rules"].clone()) {
                    rules.set(list);
                }
            }
            kind.set(Some(k));
        });
    });

    // Live preview of typed text with the rules on screen.
    let sample = RwSignal::new(
        "Contact ada@example.org or +44 20 7946 0958, card 4111 1111 1111 1111, from 203.0.113.7".to_owned(),
    );
    let preview = RwSignal::new(None::<Result<String, ClientError>>);
    Effect::new(move |_| {
        let text = sample.get();
        let list = rules.get();
        if list.is_empty() {
            return;
        }
        leptos::task::spawn_local(async move {
            #[derive(serde::Deserialize)]
            struct Masked {
                masked: String,
            }
            let body = serde_json::json!({ "text": text, "rules": list }).to_string();
            let r = send_json::<Masked>("POST", "/api/policies/masking/preview", Some(body)).await.map(|m| m.masked);
            preview.set(Some(r));
        });
    });

    // The dry-run.
    let testing = RwSignal::new(false);
    let report = RwSignal::new(None::<Result<TestReport, ClientError>>);
    let run_test = move |_| {
        testing.set(true);
        let body = serde_json::json!({ "content": { "rules": rules.get_untracked() } }).to_string();
        leptos::task::spawn_local(async move {
            report.set(Some(send_json::<TestReport>("POST", "/api/policies/masking/test", Some(body)).await));
            testing.set(false);
        });
    };

    // Submitting.
    let reason = RwSignal::new(String::new());
    let submit_error = RwSignal::new(None::<String>);
    let submitting = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        submitting.set(true);
        submit_error.set(None);
        let body = serde_json::json!({
            "content": { "rules": rules.get_untracked() },
            "based_on": based_on.get_untracked(),
            "reason": reason.get_untracked(),
        })
        .to_string();
        let navigate = navigate.clone();
        leptos::task::spawn_local(async move {
            match send_json::<Proposal>("POST", "/api/policies/masking/proposals", Some(body)).await {
                Ok(p) => navigate(&format!("/policies/proposals/{}", p.id), Default::default()),
                Err(e) => submit_error.set(Some(e.to_string())),
            }
            submitting.set(false);
        });
    };

    let set = move |i: usize, f: Box<dyn Fn(&mut MaskRule)>| {
        rules.update(|r| {
            if let Some(x) = r.get_mut(i) {
                f(x)
            }
        })
    };
    let add = move |_| {
        rules.update(|r| {
            if let Some((d, _)) = DETECTORS.iter().find(|(d, _)| !r.iter().any(|x| x.detector == *d)) {
                r.push(MaskRule { detector: *d, action: MaskAction::Redact, keep_original: false, enabled: true });
            }
        })
    };

    view! {
        <Title text="Masking policy"/>
        <p><a href="/policies">"← Policies"</a></p>
        <h1>"Masking of personal data"</h1>
        <p class="lead">"Values the rules find are masked before an event is sealed. A change applies to events stored after it takes effect; stored events keep the masking they were sealed with. The secret-key rule always applies."</p>
        {move || match kind.get() {
            None => view! { <p class="muted">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            Some(Ok(k)) => view! {
                <p class="muted" data-testid="based-on">{format!("Editing on top of version {} ({}).", k.active.version, k.active.summary)}</p>
                {(!k.pending.is_empty()).then(|| view! { <p class="banner">{format!("{} proposal(s) already wait for review; yours will be reviewed separately.", k.pending.len())}</p> })}
            }.into_any(),
        }}
        <section class="panel">
            <h2>"Rules"</h2>
            <table class="data rules-editor" data-testid="rules">
                <thead><tr><th>"Detector"</th><th>"Action"</th><th>"Keep last"</th><th>"Keep original (for unmasking)"</th><th>"On"</th><th></th></tr></thead>
                <tbody>
                    {move || {
                        let list = rules.get();
                        let n = list.len();
                        list.into_iter().enumerate().map(|(i, r)| {
                            let secret = r.detector == Detector::SecretKey;
                            let partial = matches!(r.action, MaskAction::Partial { .. });
                            let keep = match r.action { MaskAction::Partial { keep_last } => keep_last.to_string(), _ => String::new() };
                            view! {
                                <tr data-testid=format!("rule-{}", r.detector.as_str())>
                                    <td>
                                        <select aria-label="Detector" disabled=secret on:change=move |ev| {
                                            if let Some(d) = detector_of(&event_target_value(&ev)) {
                                                set(i, Box::new(move |x| x.detector = d));
                                            }
                                        }>
                                            {DETECTORS.iter().map(|(d, label)| view! {
                                                <option value=d.as_str() selected=*d == r.detector>{*label}</option>
                                            }).collect_view()}
                                        </select>
                                    </td>
                                    <td>
                                        <select aria-label="Action" data-testid="rule-action" disabled=secret on:change=move |ev| {
                                            let a = match event_target_value(&ev).as_str() {
                                                "partial" => MaskAction::Partial { keep_last: 4 },
                                                "pseudonymize" => MaskAction::Pseudonymize,
                                                _ => MaskAction::Redact,
                                            };
                                            set(i, Box::new(move |x| x.action = a));
                                        }>
                                            {["redact", "partial", "pseudonymize"].into_iter().map(|a| view! {
                                                <option value=a selected=a == action_name(r.action)>{a}</option>
                                            }).collect_view()}
                                        </select>
                                    </td>
                                    <td>
                                        <input type="number" min="0" max="16" aria-label="Keep last" class="narrow" disabled=!partial prop:value=keep
                                            on:change=move |ev| {
                                                let n: u8 = event_target_value(&ev).parse().unwrap_or(0).min(16);
                                                set(i, Box::new(move |x| if let MaskAction::Partial { keep_last } = &mut x.action { *keep_last = n }));
                                            }/>
                                    </td>
                                    <td><input type="checkbox" aria-label="Keep original" disabled=secret prop:checked=r.keep_original
                                        on:change=move |ev| { let on = event_target_checked(&ev); set(i, Box::new(move |x| x.keep_original = on)) }/></td>
                                    <td><input type="checkbox" aria-label="On" data-testid="rule-enabled" disabled=secret prop:checked=r.enabled
                                        on:change=move |ev| { let on = event_target_checked(&ev); set(i, Box::new(move |x| x.enabled = on)) }/></td>
                                    <td class="row-actions">
                                        <button type="button" class="small" aria-label="Move up" disabled=i == 0 on:click=move |_| rules.update(|r| r.swap(i, i - 1))>"↑"</button>
                                        <button type="button" class="small" aria-label="Move down" disabled=i + 1 == n on:click=move |_| rules.update(|r| r.swap(i, i + 1))>"↓"</button>
                                        <button type="button" class="small danger" aria-label="Remove" disabled=secret on:click=move |_| rules.update(|r| { r.remove(i); })>"Remove"</button>
                                    </td>
                                </tr>
                            }
                        }).collect_view()
                    }}
                </tbody>
            </table>
            <button type="button" on:click=add disabled=move || rules.with(|r| r.len() >= DETECTORS.len())>"Add a rule"</button>
        </section>
        <section class="panel">
            <h2>"Preview"</h2>
            <label>"Text to try (not stored)"
                <textarea rows="2" data-testid="preview-input" prop:value=move || sample.get() on:input=move |ev| sample.set(event_target_value(&ev))></textarea>
            </label>
            <p data-testid="preview-output">{move || match preview.get() {
                None => view! { <span class="muted">"…"</span> }.into_any(),
                Some(Ok(m)) => view! { <code>{m}</code> }.into_any(),
                Some(Err(e)) => view! { <span class="error">{e.to_string()}</span> }.into_any(),
            }}</p>
        </section>
        <section class="panel">
            <h2>"Test on recent events"</h2>
            <p class="muted small">"Runs these rules over up to 1,000 events of the last 7 days with the same code ingest uses. Examples are shown masked by the policy in force; nothing it hides is shown."</p>
            <button type="button" data-testid="run-test" on:click=run_test disabled=move || testing.get()>{move || if testing.get() { "Testing…" } else { "Test on recent events" }}</button>
            {move || report.get().map(|r| match r {
                Ok(r) => view! { <TestReportView report=r/> }.into_any(),
                Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </section>
        <section class="panel">
            <h2>"Submit for review"</h2>
            <form class="stack" on:submit=submit data-testid="propose-form">
                <label>"Reason (recorded in the ledger)"
                    <textarea rows="2" required data-testid="reason" prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))></textarea>
                </label>
                <div><button type="submit" class="primary" data-testid="submit-proposal" disabled=move || submitting.get()>"Submit for review"</button></div>
                {move || submit_error.get().map(|e| view! { <p class="error" role="alert" data-testid="submit-error">{e}</p> })}
            </form>
        </section>
    }
}
