//! Shared by the browser tests: a host object like the loader's, recording what the SDK sends,
//! over the page's real localStorage and cookies. Each test file is its own page, so each gets
//! a fresh SDK.

use js_sys::{JSON, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
export function make_host() {
  const h = {
    sent: [], beacons: [], warnings: [],
    get: (k) => localStorage.getItem(k),
    set: (k, v) => { localStorage.setItem(k, v); return true; },
    remove: (k) => localStorage.removeItem(k),
    keys: () => Object.keys(localStorage).join("\n"),
    cookies: () => document.cookie,
    set_cookie: (c) => { document.cookie = c; },
    random: () => crypto.getRandomValues(new Uint32Array(1))[0],
    send: (request, url, body, keepalive) => h.sent.push({ request, url, body, keepalive }),
    beacon: (url, body) => { h.beacons.push(body); return true; },
    wake: () => {},
    warn: (m) => h.warnings.push(m),
    flushed: (id) => h.flushes.push(id),
  };
  h.flushes = [];
  globalThis.seam_host = h;
  return h;
}
export function clear_site() {
  localStorage.clear();
  for (const c of document.cookie.split(";")) {
    const name = c.split("=")[0].trim();
    if (name) document.cookie = name + "=; max-age=0; path=/";
  }
}
export function cookie() { return document.cookie; }
export function stored_keys() { return Object.keys(localStorage); }
"#)]
extern "C" {
    pub fn make_host() -> JsValue;
    pub fn clear_site();
    pub fn cookie() -> String;
    pub fn stored_keys() -> Vec<String>;
}

/// Loads the SDK with a fresh recording host; returns the host.
pub fn load(consent: &str) -> JsValue {
    clear_site();
    let host = make_host();
    let settings = format!(
        "test-key\nhttps://collector.example\n{consent}\nnecessary,analytics,marketing,personalization\n"
    );
    let failed = seam_sdk::load(&settings, 20, 2_000, false);
    assert_eq!(failed, "", "load");
    host
}

pub fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &key.into()).expect("property")
}

pub fn parse(text: &str) -> JsValue {
    JSON::parse(text).expect("JSON")
}

/// The events of every batch body in `host[list]` (`sent` requests or `beacons`).
pub fn events(host: &JsValue, list: &str) -> Vec<JsValue> {
    let items: js_sys::Array = get(host, list).unchecked_into();
    items
        .iter()
        .flat_map(|item| {
            let body = item
                .as_string()
                .unwrap_or_else(|| get(&item, "body").as_string().expect("body"));
            let batch: js_sys::Array = get(&parse(&body), "batch").unchecked_into();
            batch.iter().collect::<Vec<_>>()
        })
        .collect()
}

pub fn track(name: &str) {
    seam_sdk::record(
        "track",
        &format!(r#"{{"event":"{name}","properties":{{}}}}"#),
        r#"{"page":{"path":"/"}}"#,
        0.0,
    );
}

pub fn string(v: &JsValue) -> String {
    v.as_string().unwrap_or_default()
}
