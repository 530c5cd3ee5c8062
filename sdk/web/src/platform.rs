//! The browser behind the core's traits, reached through the loader's `host` object:
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

#[wasm_bindgen]
extern "C" {
    /// What the loader provides (see `host` in `js/seam.js`).
    #[derive(Clone)]
    pub type Host;
    #[wasm_bindgen(method)]
    fn get(this: &Host, key: &str) -> Option<String>;
    #[wasm_bindgen(method)]
    fn set(this: &Host, key: &str, value: &str) -> bool;
    #[wasm_bindgen(method)]
    fn remove(this: &Host, key: &str);
    /// Every localStorage key, joined with newlines.
    #[wasm_bindgen(method)]
    fn keys(this: &Host) -> String;
    #[wasm_bindgen(method)]
    fn cookies(this: &Host) -> String;
    #[wasm_bindgen(method)]
    fn set_cookie(this: &Host, cookie: &str);
    /// 32 random bits from `crypto.getRandomValues`.
    #[wasm_bindgen(method)]
    fn random(this: &Host) -> u32;
    #[wasm_bindgen(method)]
    fn send(this: &Host, request: f64, url: &str, body: &str, keepalive: bool);
    #[wasm_bindgen(method)]
    fn beacon(this: &Host, url: &str, body: &str) -> bool;
    /// Sets the one timer; it calls `tick`.
    #[wasm_bindgen(method)]
    pub fn wake(this: &Host, delay_ms: f64);
    #[wasm_bindgen(method)]
    pub fn warn(this: &Host, message: &str);
}

/// `window.localStorage`; a browser that blocks it (private mode, sandbox) stores nothing.
pub struct Local(pub Host);

impl Storage for Local {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key)
    }
    fn set(&self, key: &str, value: &str) -> bool {
        self.0.set(key, value)
    }
    fn remove(&self, key: &str) {
        self.0.remove(key)
    }
    fn keys(&self) -> Vec<String> {
        let all = self.0.keys();
        all.split('\n')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// `document.cookie`: the anonymousId cookie, first-party, a year, SameSite=Lax, on the
/// configured domain when given (so subdomains share it).
pub struct Cookies {
    pub host: Host,
    pub domain: Option<String>,
}

impl Storage for Cookies {
    fn get(&self, name: &str) -> Option<String> {
        let all = self.host.cookies();
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
        self.host.set_cookie(&c);
    }
}

/// `Date.now` and `crypto.getRandomValues`.
pub struct Browser(pub Host);

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
            let r = self.0.random().to_le_bytes();
            for (b, r) in chunk.iter_mut().zip(r) {
                *b = r;
            }
        }
    }
}

/// Sends to `{endpoint}/v1/batch` through the host.
pub struct Fetch {
    pub url: String,
    pub host: Host,
}

impl Transport for Fetch {
    fn send(&mut self, request: u64, body: String, keepalive: bool) {
        self.host.send(request as f64, &self.url, &body, keepalive);
    }

    fn beacon(&mut self, body: &str) -> bool {
        self.host.beacon(&self.url, body)
    }
}
