//! The browser binding of the seam SDK: wasm-bindgen exports over `seam_sdk_core::tracker`.
//! The loader (`js/seam.js`) owns the JavaScript API's argument forms, reads the page, and
//! hosts the browser calls (storage, cookie, randomness, fetch, sendBeacon, one timer, the
//! page-exit listeners) that `platform` puts behind the core's traits; events arrive as JSON
//! text made by `JSON.stringify`.

#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod platform;

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use platform::{Browser, Cookies, Fetch, Local, flushed, now, wake, warn};
use seam_sdk_core::backoff::Outcome;
use seam_sdk_core::consent::Mode;
use seam_sdk_core::delivery::{Config, Warning};
use seam_sdk_core::tracker::{Settings, Tracker};
use wasm_bindgen::prelude::*;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
// SAFETY: wasm32-unknown-unknown without the atomics feature is single-threaded.
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

/// Without std a panic traps; the loader catches the resulting error at the boundary.
#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

struct Sdk {
    t: Tracker<Local, Cookies, Fetch, Browser>,
    /// `seam.flush()` promises: the keys each waits for, and its number.
    flush_waiters: Vec<(Vec<String>, f64)>,
    /// When the host's timer fires next (0: not set).
    timer_at: u64,
    /// The page context (JSON) last given; the loader sends it again only when it changed.
    context: String,
}

impl Sdk {
    fn context(&mut self, context: &str) {
        if !context.is_empty() {
            context.clone_into(&mut self.context);
        }
    }
}

/// The page's one SDK instance.
struct Global(RefCell<Option<Sdk>>);

// SAFETY: the SDK runs on the page's one thread (wasm32 without atomics); nothing else can
// reach this static.
unsafe impl Sync for Global {}

static SDK: Global = Global(RefCell::new(None));

/// Runs `f` on the loaded SDK; `None` when it is not loaded or already busy (re-entered).
fn with_sdk<R>(f: impl FnOnce(&mut Sdk) -> R) -> Option<R> {
    SDK.0.try_borrow_mut().ok()?.as_mut().map(f)
}

fn ms(at: f64) -> u64 {
    if at > 0.0 { at as u64 } else { now() }
}

/// Starts the SDK. `settings` is the write key, endpoint, consent mode, comma-separated
/// categories and cookie domain, one a line (one string crosses the boundary, not five). The
/// loader has checked the argument types and that the write key is non-empty; what only Rust
/// can judge comes back as a message naming the argument (empty when loaded), which the loader
/// throws.
#[wasm_bindgen]
pub fn load(settings: &str, flush_at: u32, flush_interval_ms: u32, gpc: bool) -> String {
    let mut lines = settings.split('\n');
    let mut next = || lines.next().unwrap_or("");
    let (write_key, endpoint, consent, categories, cookie_domain) =
        (next(), next(), next(), next(), next());
    let Some(mode) = Mode::parse(consent) else {
        return "seam.load: `options.consent` must be \"opt-in\" or \"opt-out\"".into();
    };
    if SDK.0.try_borrow().map_or(true, |s| s.is_some()) {
        return String::new();
    }
    let mut delivery = Config::default();
    if flush_at > 0 {
        delivery.flush_at = flush_at as usize;
    }
    if flush_interval_ms > 0 {
        delivery.flush_interval_ms = u64::from(flush_interval_ms);
    }
    let mut url = String::from(endpoint);
    url.push_str("/v1/batch");
    let transport = Fetch { url };
    let settings = Settings {
        write_key: write_key.into(),
        mode,
        categories: categories
            .split(',')
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect(),
        gpc,
        delivery,
    };
    let t = Tracker::new(
        settings,
        Local,
        Cookies {
            domain: Some(cookie_domain.into()).filter(|d: &String| !d.is_empty()),
        },
        transport,
        Browser,
        now(),
    );
    if let Ok(mut sdk) = SDK.0.try_borrow_mut() {
        *sdk = Some(Sdk {
            t,
            flush_waiters: Vec::new(),
            timer_at: 0,
            context: String::new(),
        });
    }
    // Events an earlier page (or a closed tab) left in storage.
    pump();
    String::new()
}

/// Queues an event of type `kind`: `fields` and `context` are JSON objects (see
/// `Tracker::record`), `context` empty when it is the one given last; `at` is when the page
/// called (ms since epoch).
#[wasm_bindgen]
pub fn record(kind: &str, fields: &str, context: &str, at: f64) {
    with_sdk(|s| {
        s.context(context);
        let due = s.t.record(kind, fields, &s.context, ms(at));
        s.report();
        match due {
            Some(true) => s.poll(),
            Some(false) => s.arm(),
            None => {}
        }
    });
}

/// Sets the user (unless `user_id` is empty) and their merged traits (JSON).
#[wasm_bindgen]
pub fn set_user(user_id: String, traits: String) {
    with_sdk(|s| {
        s.t.set_user(Some(user_id).filter(|u| !u.is_empty()), Some(traits))
    });
}

#[wasm_bindgen]
pub fn reset(at: f64) {
    with_sdk(|s| s.t.reset(ms(at)));
}

/// Calls the host's `flushed(id)` once everything queued so far has been acknowledged (or
/// dropped).
#[wasm_bindgen]
pub fn flush(id: f64) {
    let waiting = with_sdk(|s| {
        let keys = s.t.delivery.outstanding();
        s.t.delivery.request_flush();
        s.flush_waiters.push((keys, id));
        s.poll();
    });
    if waiting.is_none() {
        flushed(id);
    }
}

/// Applies `choices` (`name=1,name=0`; empty to only read) and returns the preferences as JSON.
#[wasm_bindgen]
pub fn consent(choices: &str, context: &str, at: f64) -> String {
    with_sdk(|s| {
        if !choices.is_empty() {
            let parsed: Vec<(String, bool)> = choices
                .split(',')
                .filter_map(|c| c.split_once('='))
                .map(|(k, v)| (String::from(k), v == "1"))
                .collect();
            s.context(context);
            for unknown in s.t.set_consent(&parsed, &s.context, ms(at)) {
                let mut m = String::from("seam.consent: unknown category `");
                m.push_str(&unknown);
                m.push('`');
                warn(&m);
            }
            s.poll();
        }
        s.t.preferences()
    })
    .unwrap_or_default()
}

/// `{"anonymousId":…,"userId":…,"traits":{…}}` as JSON.
#[wasm_bindgen]
pub fn user() -> String {
    with_sdk(|s| s.t.user_json()).unwrap_or_default()
}

/// The host's answer to request `request`: the HTTP status (0 for a network error) and the
/// `Retry-After` header (empty when absent).
#[wasm_bindgen]
pub fn on_response(request: f64, status: u16, retry_after: &str) {
    with_sdk(|s| {
        let outcome = Outcome::from_status(status, Some(retry_after).filter(|r| !r.is_empty()));
        s.t.delivery
            .on_outcome(now(), request as u64, outcome, &Browser);
        s.poll();
    });
}

/// The host's timer fired.
#[wasm_bindgen]
pub fn tick() {
    with_sdk(|s| {
        s.timer_at = 0;
        s.poll();
    });
}

/// The page is being hidden (`pagehide`: `unloading`; `visibilitychange` to hidden: not).
#[wasm_bindgen]
pub fn page_hide(unloading: bool) {
    with_sdk(|s| {
        s.t.page_hide(now(), unloading);
        s.report();
    });
}

/// Another tab stored (`present`) or removed `key` in localStorage; an empty key means it was
/// cleared. An event another tab stored is this tab's to send too, should that tab close
/// before it does (leases keep them from both sending it).
#[wasm_bindgen]
pub fn stored(key: &str, present: bool) {
    with_sdk(|s| {
        if key.is_empty() {
            s.t.delivery.reload();
        } else {
            s.t.delivery.note(key, present);
        }
        if present {
            s.arm();
        }
    });
}

fn pump() {
    with_sdk(Sdk::poll);
}

impl Sdk {
    fn poll(&mut self) {
        let wake = self.t.delivery.poll(now());
        self.report();
        if let Some(at) = wake {
            self.wake_at(at);
        }
        if !self.flush_waiters.is_empty() {
            let outstanding = self.t.delivery.outstanding();
            self.flush_waiters.retain(|(keys, id)| {
                let done = !keys.iter().any(|k| outstanding.contains(k));
                if done {
                    flushed(*id);
                }
                !done
            });
        }
    }

    /// A new event is queued: sets the timer to the flush interval unless one is set already.
    fn arm(&mut self) {
        if self.timer_at == 0 && self.t.delivery.enabled {
            let wake = now() + self.t.delivery.config.flush_interval_ms;
            self.wake_at(wake);
        }
    }

    /// Asks the host to call `tick` at `at`, unless it will already call by then.
    fn wake_at(&mut self, at: u64) {
        if self.timer_at != 0 && self.timer_at <= at {
            return;
        }
        self.timer_at = at;
        let delay = at.saturating_sub(now());
        wake(delay as f64);
    }

    /// Logs the core's warnings, one console line each.
    fn report(&mut self) {
        for w in self.t.delivery.take_warnings() {
            warn(match w {
                Warning::EventTooLarge(_) => "seam: an event over 32 KB was dropped",
                Warning::QueueFull => {
                    "seam: the event queue is full; the oldest events are dropped"
                }
                Warning::StorageRefused => "seam: storage refused an event; it was dropped",
                Warning::Rejected(..) => {
                    "seam: the collector rejected a batch (4xx); it was dropped"
                }
            });
        }
    }
}
