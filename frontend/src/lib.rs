#![recursion_limit = "512"]
//! The browser bundle: hydrates the server-rendered Custos UI.

/// Entry point called by the generated JavaScript once the WASM is loaded.
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(custos_app::App);
}
