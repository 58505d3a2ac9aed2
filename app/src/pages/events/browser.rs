//! The browser shims of the explorer: time and local storage in the
//! browser, and their server-side stand-ins (the server renders no times).

#[cfg(feature = "hydrate")]
pub(crate) fn now_ms() -> f64 {
    js_sys::Date::now()
}

#[cfg(not(feature = "hydrate"))]
pub(crate) fn now_ms() -> f64 {
    0.0
}

#[cfg(feature = "hydrate")]
pub(super) fn iso(ms: f64) -> String {
    js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms)).to_iso_string().into()
}

#[cfg(not(feature = "hydrate"))]
pub(super) fn iso(ms: f64) -> String {
    format!("{ms}")
}

#[cfg(feature = "hydrate")]
pub(super) fn parse_ms(s: &str) -> f64 {
    js_sys::Date::parse(s)
}

#[cfg(not(feature = "hydrate"))]
pub(super) fn parse_ms(_: &str) -> f64 {
    0.0
}

/// An RFC 3339 time for people: in the viewer's time zone (or UTC).
#[cfg(feature = "hydrate")]
pub(super) fn show_time(s: &str, utc: bool) -> String {
    if utc {
        return s.replace('T', " ").trim_end_matches('Z').chars().take(23).collect::<String>() + " UTC";
    }
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(s));
    let opts = js_sys::Object::new();
    for (k, v) in [
        ("year", "numeric"),
        ("month", "2-digit"),
        ("day", "2-digit"),
        ("hour", "2-digit"),
        ("minute", "2-digit"),
        ("second", "2-digit"),
        ("timeZoneName", "short"),
    ] {
        let _ = js_sys::Reflect::set(&opts, &k.into(), &v.into());
    }
    d.to_locale_string("default", &opts).into()
}

/// A histogram bar's label in the browser's locale and zone: the date for
/// spans of days, the time of day (with AM/PM where the locale uses it)
/// otherwise.
#[cfg(feature = "hydrate")]
pub(super) fn chart_label(s: &str, days: bool) -> String {
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(s));
    let opts = js_sys::Object::new();
    let parts: &[(&str, &str)] =
        if days { &[("month", "2-digit"), ("day", "2-digit")] } else { &[("hour", "2-digit"), ("minute", "2-digit")] };
    for (k, v) in parts {
        let _ = js_sys::Reflect::set(&opts, &(*k).into(), &(*v).into());
    }
    d.to_locale_string("default", &opts).into()
}

#[cfg(not(feature = "hydrate"))]
pub(super) fn show_time(s: &str, _utc: bool) -> String {
    s.to_owned()
}

#[cfg(feature = "hydrate")]
pub(super) fn local_get(key: &str) -> Option<String> {
    web_sys::window()?.local_storage().ok()??.get_item(key).ok()?
}

#[cfg(not(feature = "hydrate"))]
pub(super) fn local_get(_: &str) -> Option<String> {
    None
}

#[cfg(feature = "hydrate")]
pub(super) fn local_set(key: &str, value: &str) {
    if let Some(s) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
        let _ = s.set_item(key, value);
    }
}

#[cfg(not(feature = "hydrate"))]
pub(super) fn local_set(_: &str, _: &str) {}
