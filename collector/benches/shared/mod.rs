//! What the ingest and handler benches both send.

use serde_json::{Value, json};

/// Message `i` of a batch of typical browser track and page events, with the given messageId.
pub fn browser_message(i: usize, message_id: &str) -> Value {
    json!({
        "type": if i.is_multiple_of(5) { "page" } else { "track" },
        "event": "Product Viewed",
        "messageId": message_id,
        "anonymousId": format!("anon-{:08}", i * 7919 % 1000),
        "userId": if i.is_multiple_of(3) { json!(format!("user-{}", i % 17)) } else { Value::Null },
        "timestamp": "2026-11-23T10:00:00.123Z",
        "properties": {"sku": format!("SKU-{i:05}"), "price": 19.99, "currency": "EUR"},
        "context": {
            "page": {"url": "https://shop.example/products/trail-runner", "path": "/products/trail-runner"},
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36",
            "library": {"name": "seam", "version": "0.1.0"},
            "consent": {"categoryPreferences": {"analytics": true, "marketing": false}}
        }
    })
}
