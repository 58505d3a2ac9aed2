//! The browser's calls to the REST API (same origin, the session cookie).
//! Pages call these from effects and event handlers, which only run in the
//! browser; the server-side build has no HTTP client and says so.

use serde::de::DeserializeOwned;

/// A failed call: the HTTP status, the server's sentence, and the
/// operation id to quote when the server had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// HTTP status (0: the request did not complete).
    pub status: u16,
    /// What went wrong.
    pub message: String,
    /// The server's operation id, for a 5xx.
    pub operation_id: Option<String>,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(op) = &self.operation_id {
            write!(f, " (operation {op})")?;
        }
        Ok(())
    }
}

/// Percent-encodes a query value.
pub use custos_model::url::encode;

/// `GET` a JSON document.
pub async fn get_json<T: DeserializeOwned>(url: &str) -> Result<T, ClientError> {
    send_json("GET", url, None).await
}

/// Sends a request (with an optional JSON body) and reads a JSON answer.
pub async fn send_json<T: DeserializeOwned>(method: &str, url: &str, body: Option<String>) -> Result<T, ClientError> {
    let (status, text) = send(method, url, body).await?;
    if !(200..300).contains(&status) {
        return Err(error_of(status, &text));
    }
    serde_json::from_str(&text).map_err(|e| ClientError {
        status,
        message: format!("unexpected answer from the server: {e}"),
        operation_id: None,
    })
}

fn error_of(status: u16, text: &str) -> ClientError {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let mut message =
        v["message"].as_str().map(str::to_owned).unwrap_or_else(|| format!("the server answered {status}"));
    if let Some(fields) = v["fields"].as_array()
        && !fields.is_empty()
    {
        let list: Vec<String> = fields
            .iter()
            .map(|f| format!("{}: {}", f["path"].as_str().unwrap_or(""), f["reason"].as_str().unwrap_or("")))
            .collect();
        message = list.join("; ");
    }
    ClientError { status, message, operation_id: v["operation_id"].as_str().map(str::to_owned) }
}

#[cfg(feature = "hydrate")]
async fn send(method: &str, url: &str, body: Option<String>) -> Result<(u16, String), ClientError> {
    use wasm_bindgen::JsCast as _;
    use wasm_bindgen_futures::JsFuture;
    let failed = |what: &str| ClientError {
        status: 0,
        message: format!("{what}: is the server reachable?"),
        operation_id: None,
    };
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_credentials(web_sys::RequestCredentials::SameOrigin);
    if let Some(b) = &body {
        init.set_body(&wasm_bindgen::JsValue::from_str(b));
    }
    let req = web_sys::Request::new_with_str_and_init(url, &init).map_err(|_| failed("bad request"))?;
    let _ = req.headers().set("accept", "application/json");
    if body.is_some() {
        let _ = req.headers().set("content-type", "application/json");
    }
    let window = web_sys::window().ok_or_else(|| failed("no window"))?;
    let resp: web_sys::Response = JsFuture::from(window.fetch_with_request(&req))
        .await
        .map_err(|_| failed("the request did not complete"))?
        .dyn_into()
        .map_err(|_| failed("no response"))?;
    let text = match resp.text() {
        Ok(p) => JsFuture::from(p).await.ok().and_then(|v| v.as_string()).unwrap_or_default(),
        Err(_) => String::new(),
    };
    Ok((resp.status(), text))
}

#[cfg(not(feature = "hydrate"))]
async fn send(_method: &str, _url: &str, _body: Option<String>) -> Result<(u16, String), ClientError> {
    Err(ClientError { status: 0, message: "the REST client runs in the browser only".into(), operation_id: None })
}

/// Waits `ms` milliseconds (in the browser; at once on the server).
pub async fn sleep_ms(ms: u64) {
    #[cfg(feature = "hydrate")]
    {
        let p = js_sys::Promise::new(&mut |resolve, _| {
            if let Some(w) = web_sys::window() {
                let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(p).await;
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = ms;
}
