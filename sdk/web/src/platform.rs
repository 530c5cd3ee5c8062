//! The browser behind the core's traits, reached through the loader's `seam_host` object:
//! localStorage, `document.cookie`, `crypto.getRandomValues`, fetch and sendBeacon are a line or
//! two of JavaScript each there, where web-sys bindings would cost far more glue and wasm (the
//! size budget); every host method catches its own exceptions.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use seam_sdk_core::delivery::Transport;
use seam_sdk_core::storage::Storage;
use seam_sdk_core::{Clock, Random};
use wasm_bindgen::prelude::*;

// Free functions on the loader's `seam_host` object (a variable in the loader's scope, which
// holds the glue): no JS object crosses into the wasm, so it needs no externref table.
#[wasm_bindgen(js_namespace = seam_host)]
extern "C" {
    fn get(key: &str) -> Option<String>;
    fn set(key: &str, value: &str) -> bool;
    fn remove(key: &str);
    /// Every localStorage key, joined with newlines.
    fn keys() -> String;
    fn cookies() -> String;
    fn set_cookie(cookie: &str);
    /// 32 random bits from `crypto.getRandomValues`.
    fn random() -> u32;
    fn send(request: f64, url: &str, body: &str, keepalive: bool);
    fn beacon(url: &str, body: &str) -> bool;
    /// Sets the one timer; it calls `tick`.
    pub fn wake(delay_ms: f64);
    pub fn warn(message: &str);
    /// Resolves the promise `seam.flush()` returned, numbered `id`.
    pub fn flushed(id: f64);
}

/// `window.localStorage`; a browser that blocks it (private mode, sandbox) stores nothing.
pub struct Local;

impl Storage for Local {
    fn get(&self, key: &str) -> Option<String> {
        get(key)
    }
    fn set(&self, key: &str, value: &str) -> bool {
        set(key, value)
    }
    fn remove(&self, key: &str) {
        remove(key)
    }
    fn keys(&self) -> Vec<String> {
        let all = keys();
        all.split('\n')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// `document.cookie`: the anonymousId cookie, first-party, a year, SameSite=Lax, on the
/// configured domain when given (so subdomains share it).
pub struct Cookies {
    pub domain: Option<String>,
}

impl Storage for Cookies {
    fn get(&self, name: &str) -> Option<String> {
        let all = cookies();
        all.split(';').find_map(|c| {
            let (k, v) = c.trim_start().split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }
    fn set(&self, name: &str, value: &str) -> bool {
        self.write(name, value, "31536000");
        true
    }
    fn remove(&self, name: &str) {
        self.write(name, "", "0");
    }
    fn keys(&self) -> Vec<String> {
        Vec::new()
    }
}

impl Cookies {
    fn write(&self, name: &str, value: &str, max_age: &str) {
        let mut c = String::from(name);
        c.push('=');
        c.push_str(value);
        c.push_str("; path=/; SameSite=Lax; max-age=");
        c.push_str(max_age);
        if let Some(d) = &self.domain {
            c.push_str("; domain=");
            c.push_str(d);
        }
        set_cookie(&c);
    }
}

/// `Date.now` and `crypto.getRandomValues`.
pub struct Browser;

impl Clock for Browser {
    fn now_ms(&self) -> u64 {
        now()
    }
}

pub fn now() -> u64 {
    js_sys::Date::now() as u64
}

impl Random for Browser {
    fn fill(&self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(4) {
            let r = random().to_le_bytes();
            for (b, r) in chunk.iter_mut().zip(r) {
                *b = r;
            }
        }
    }
}

/// Sends to `{endpoint}/v1/batch` through the host.
pub struct Fetch {
    pub url: String,
}

impl Transport for Fetch {
    fn send(&mut self, request: u64, body: String, keepalive: bool) {
        send(request as f64, &self.url, &body, keepalive);
    }

    fn beacon(&mut self, body: &str) -> bool {
        beacon(&self.url, body)
    }
}
